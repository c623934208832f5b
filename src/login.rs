//! The login: one use case behind every entry point.
//!
//! The provisioning API, both Kratos web hooks, `kratos-jit check` and `kratos-jit map` describe
//! a login as a [`Login`] — the provider, the claims, the subject, and how to find the identity
//! Kratos holds ([`Current`]) — and call [`Logins::run`], which:
//!
//! 1. finds what Kratos holds: the identity with the OIDC credential `<provider>:<subject>`, or
//!    nothing yet (a registration Kratos is about to persist);
//! 2. runs the provider's mapper **once** with the claims and that identity
//!    (`std.extVar('identity')`), and checks Kratos's output contract and the policy (tenant,
//!    domains, schema: [`crate::domain::policy`]);
//! 3. where no identity holds the credential, looks up the identity that holds the mapped e-mail,
//!    so that the linking rule ([`crate::domain::decision::may_link`]) is applied the same way
//!    at every entry point;
//! 4. decides ([`crate::domain::decision`]) and writes at most once, through the Kratos port.
//!
//! The result is an [`Outcome`] that keeps the [`Denial`] as a type; each protocol turns it into
//! its own answer in one place. The login is logged here, once, with the entry point, the
//! provider, the subject's tag, the action, the identity id and the denial's code — never a
//! claim, a trait or a denial's reason.
//!
//! Concurrency and faults are resolved by Kratos's own uniqueness rather than by locks, so the
//! guarantees hold across any number of kratos-jit processes: two logins of a new subject both
//! try to create; Kratos accepts one and answers 409 to the other, which re-reads and continues
//! as an update of the identity that now exists. A create whose answer was lost to a timeout is
//! retried and ends the same way. Updates are JSON Patches of the owned fields only, applied
//! atomically by Kratos, so an update is never half-applied and never clobbers a field written
//! concurrently by the application. A unique value (e-mail, verifiable or recovery address)
//! that Kratos reports as held by another identity is a denial ([`Denial::ValueTaken`]), never a
//! gateway failure.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::time::Instant;

use crate::domain::decision::{self, Decision, Found, Provenance};
use crate::domain::mapped::{InvalidOutput, MappedIdentity, identity_ext_var};
use crate::domain::policy::{self, EMAIL_TRAIT};
use crate::domain::{Denial, IdentityId, Subject};
use crate::kratos::{Identity, KratosAdmin, KratosError, NewIdentity, OidcCredential, PatchOp};
use crate::mapper::{Claims, MapperEngine, MapperError};
use crate::provider::{Provider, Providers};
use crate::schema::IdentitySchemas;

/// Where a login came in: for logs, and for what the use case may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryPoint {
    /// `POST /v1/provision`.
    Api,
    /// Kratos's registration web hook (pre-persist).
    RegistrationHook,
    /// Kratos's login web hook (after sign-in).
    LoginHook,
    /// `kratos-jit check` and `kratos-jit map`: nothing is written.
    Check,
}

impl EntryPoint {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryPoint::Api => "api",
            EntryPoint::RegistrationHook => "registration_hook",
            EntryPoint::LoginHook => "login_hook",
            EntryPoint::Check => "check",
        }
    }
}

impl fmt::Display for EntryPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the use case finds the identity Kratos holds for this login.
#[derive(Debug, Clone)]
pub enum Current {
    /// By the OIDC credential `<provider>:<subject>` (the API, `check`).
    ByCredential,
    /// A sign-in Kratos is completing (the login hook): found by the OIDC credential like the
    /// API does, so that the same rules apply (an identity without this credential is a first
    /// login: `jit.create`, the e-mail holder, the linking rule). `view` is what the hook itself
    /// was shown of the identity (`traits`, `metadata_public`; never `metadata_admin`): when
    /// Kratos does not answer the lookup, the mapper and the policy run on `view`, so that a
    /// refusal still refuses, and nothing is written.
    Session { view: Value },
    /// Kratos is about to create the identity (the registration hook, pre-persist): nothing
    /// holds the credential yet, and Kratos itself persists what the use case decides. Only a
    /// link to an existing identity is written here.
    Registering,
}

/// One login, as an entry point describes it.
pub struct Login<'a> {
    pub entry: EntryPoint,
    pub provider: &'a Provider,
    pub subject: Subject,
    pub claims: Claims<'a>,
    pub current: Current,
    /// The time every Kratos call of this login must end within.
    pub kratos_budget: Duration,
    /// Operations the entry point needs in the same write (the login hook removes the claims it
    /// was carried), applied only to an identity that holds the paths they remove.
    pub cleanup: Vec<PatchOp>,
}

/// What a login did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Created in Kratos — or, for the registration hook, to be created by Kratos itself.
    Created,
    Updated,
    /// An identity holding the e-mail got this login's OIDC credential (and its owned fields).
    Linked,
    Unchanged,
    Denied,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Linked => "linked",
            Action::Unchanged => "unchanged",
            Action::Denied => "denied",
        }
    }
}

/// The result of a login.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub action: Action,
    pub identity_id: Option<IdentityId>,
    /// The owned fields that changed (`traits.role`, …; `credentials.oidc` first for a link).
    pub changed: Vec<String>,
    /// Why the login was refused (exactly when `action` is [`Action::Denied`]).
    pub denial: Option<Denial>,
    /// The identity to create, when Kratos creates it ([`Current::Registering`]) or nothing is
    /// written ([`EntryPoint::Check`]).
    pub to_create: Option<NewIdentity>,
    /// The mapper's output as it produced it (absent when the mapper did not finish).
    pub output: Option<Value>,
    /// The policy-checked mapper output.
    pub mapped: Option<MappedIdentity>,
}

impl Outcome {
    fn denied(denial: Denial, output: Option<Value>) -> Self {
        Outcome {
            action: Action::Denied,
            identity_id: None,
            changed: vec![],
            denial: Some(denial),
            to_create: None,
            output,
            mapped: None,
        }
    }
}

/// Why a login could not be carried out (as opposed to being refused).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    Kratos(#[from] KratosError),
    #[error("the mapper engine could not evaluate: {0}")]
    Engine(MapperError),
}

/// How many times a decision is re-taken after Kratos reported a concurrent change.
const MAX_ROUNDS: usize = 3;

/// The login use case, over any Kratos adapter.
pub struct Logins<K> {
    kratos: K,
    engine: MapperEngine,
    providers: Arc<Providers>,
    schemas: Arc<IdentitySchemas>,
}

impl<K: KratosAdmin> Logins<K> {
    pub fn new(
        kratos: K,
        engine: MapperEngine,
        providers: Arc<Providers>,
        schemas: Arc<IdentitySchemas>,
    ) -> Self {
        Logins {
            kratos,
            engine,
            providers,
            schemas,
        }
    }

    pub fn providers(&self) -> &Providers {
        &self.providers
    }

    pub fn schemas(&self) -> &IdentitySchemas {
        &self.schemas
    }

    /// The port, for a caller that must set up what it holds (`check`'s fixtures): entry points
    /// never write through it themselves.
    pub(crate) fn kratos(&self) -> &K {
        &self.kratos
    }

    pub fn engine(&self) -> &MapperEngine {
        &self.engine
    }

    /// Runs one login to its end and logs it once.
    pub async fn run(&self, login: Login<'_>) -> Result<Outcome, LoginError> {
        let tag = login.subject.tag(&login.provider.id);
        let (entry, provider) = (login.entry, login.provider.id.clone());
        let result = Run {
            logins: self,
            until: Instant::now() + login.kratos_budget,
            login,
        }
        .run()
        .await;
        match &result {
            Ok(outcome) => tracing::info!(
                message = "Login processed.",
                entry_point = entry.as_str(),
                provider = provider.as_str(),
                subject = %tag,
                action = %outcome.action.as_str(),
                identity_id = %outcome.identity_id.map(|id| id.to_string()).unwrap_or_default(),
                changed = ?outcome.changed,
                denial = %outcome.denial.as_ref().map_or("", Denial::code),
            ),
            Err(error) => tracing::warn!(
                message = "Could not process a login.",
                entry_point = entry.as_str(),
                provider = provider.as_str(),
                subject = %tag,
                error = error_kind(error),
            ),
        }
        result
    }

    /// The policy over an identity as Kratos holds it, without a mapper: for a login whose
    /// claims are stale or absent (Kratos v26.2.0's login hook), so that an identity the
    /// provider could no longer provision — its tenant unbound, its domain removed — is refused.
    pub fn recheck(&self, provider: &Provider, traits: &Value) -> Result<(), Denial> {
        let Some(traits) = traits.as_object() else {
            return Ok(());
        };
        let mapped = MappedIdentity {
            traits: traits.clone(),
            metadata_public: None,
            metadata_admin: None,
            verified_addresses: vec![],
        };
        policy::admit(&provider.rules(), &mapped, &self.schemas).map(|_| ())
    }
}

/// A log-safe word for a failure: Kratos errors and mapper texts may quote request data.
fn error_kind(error: &LoginError) -> &'static str {
    match error {
        LoginError::Kratos(KratosError::Unavailable { .. }) => "kratos_unavailable",
        LoginError::Kratos(KratosError::Conflict { .. }) => "kratos_conflict",
        LoginError::Kratos(KratosError::NotFound { .. }) => "kratos_not_found",
        LoginError::Kratos(KratosError::Rejected { .. }) => "kratos_rejected",
        LoginError::Kratos(KratosError::Protocol { .. }) => "kratos_protocol",
        LoginError::Engine(_) => "mapper_engine",
    }
}

/// The result of mapping: usable, or refused with the output the mapper produced.
enum Mapped {
    Admitted(MappedIdentity, Value),
    Refused(Denial, Option<Value>),
}

/// One login in progress.
struct Run<'l, 'a, K> {
    logins: &'l Logins<K>,
    login: Login<'a>,
    until: Instant,
}

impl<K: KratosAdmin> Run<'_, '_, K> {
    fn credential(&self) -> OidcCredential {
        OidcCredential {
            provider: self.login.provider.id.clone(),
            subject: self.login.subject.clone(),
        }
    }

    /// A Kratos call, cut off at the login's budget.
    async fn kratos<T>(
        &self,
        call: impl Future<Output = Result<T, KratosError>>,
    ) -> Result<T, KratosError> {
        match tokio::time::timeout_at(self.until, call).await {
            Ok(result) => result,
            Err(_) => Err(KratosError::Unavailable {
                detail: format!(
                    "no answer within {}",
                    humantime::format_duration(self.login.kratos_budget)
                ),
            }),
        }
    }

    async fn by_credential(&self) -> Result<Option<Identity>, KratosError> {
        let identifier = self.credential().identifier();
        self.kratos(
            self.logins
                .kratos
                .find_by_credential_identifier(&identifier),
        )
        .await
    }

    /// The identity holding the mapped e-mail as a credential identifier, if any. Kratos keeps
    /// password and code identifiers trimmed and lower-cased (`NormalizeIdentifier`).
    async fn email_holder(&self, mapped: &MappedIdentity) -> Result<Option<Identity>, KratosError> {
        let Some(email) = mapped.traits.get(EMAIL_TRAIT).and_then(Value::as_str) else {
            return Ok(None);
        };
        let identifier = email.trim().to_lowercase();
        self.kratos(
            self.logins
                .kratos
                .find_by_credential_identifier(&identifier),
        )
        .await
    }

    async fn map(&self, current: Option<&Value>) -> Result<Mapped, LoginError> {
        let provider = self.login.provider;
        let output = match self
            .logins
            .engine
            .evaluate(
                provider.id.as_str(),
                self.login.claims,
                &identity_ext_var(current),
            )
            .await
        {
            Ok(output) => output,
            // The evaluator itself failed, not the mapper's judgement: an error the caller may
            // retry, never a denial it would take for a refusal.
            Err(
                e @ (MapperError::EngineStopped
                | MapperError::WorkerCrashed(_)
                | MapperError::UnknownProvider(_)),
            ) => return Err(LoginError::Engine(e)),
            Err(MapperError::Denied { message, .. }) => {
                return Ok(Mapped::Refused(Denial::MapperRefused { message }, None));
            }
            Err(e) => {
                let denial = Denial::MapperFailed {
                    provider: provider.id.clone(),
                    detail: e.to_string(),
                };
                return Ok(Mapped::Refused(denial, None));
            }
        };
        let mapped = match MappedIdentity::from_output(&output) {
            Ok(mapped) => mapped,
            Err(InvalidOutput(detail)) => {
                let denial = Denial::InvalidOutput {
                    provider: provider.id.clone(),
                    detail: format!("output is invalid: {detail}"),
                };
                return Ok(Mapped::Refused(denial, Some(output)));
            }
        };
        Ok(
            match policy::admit(&provider.rules(), &mapped, &self.logins.schemas) {
                Ok(_) => Mapped::Admitted(mapped, output),
                Err(denial) => Mapped::Refused(denial, Some(output)),
            },
        )
    }

    fn provenance(&self) -> Provenance {
        Provenance {
            provider: self.login.provider.id.clone(),
            subject: self.login.subject.clone(),
            synced_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            mapper_sha256: self.login.provider.mapper.sha256.clone(),
        }
    }

    /// The identity Kratos holds before the first decision (`Ok(None)`: none yet), or, for a
    /// session Kratos cannot read in time, the refusal or the error to answer.
    async fn current(&self) -> Result<Result<Option<Identity>, Outcome>, LoginError> {
        match &self.login.current {
            Current::ByCredential => Ok(Ok(self.by_credential().await?)),
            Current::Registering => Ok(Ok(None)),
            Current::Session { view } => match self.by_credential().await {
                Ok(existing) => Ok(Ok(existing)),
                Err(error) => {
                    // Kratos is slow or down: refuse what the policy refuses all the same, and
                    // let the rest wait for a login where Kratos answers.
                    match self.map(Some(view)).await? {
                        Mapped::Refused(denial, output) => Ok(Err(Outcome::denied(denial, output))),
                        Mapped::Admitted(..) => Err(error.into()),
                    }
                }
            },
        }
    }

    async fn run(self) -> Result<Outcome, LoginError> {
        let mut existing = match self.current().await? {
            Ok(existing) => existing,
            Err(refused) => return Ok(refused),
        };
        let mut mapping: Option<(Option<Identity>, MappedIdentity, Value)> = None;
        let mut holder: Option<Identity> = None;
        for _ in 0..MAX_ROUNDS {
            // Map again only when the identity the mapper sees has changed (a concurrent login).
            let stale = mapping.as_ref().is_none_or(|(seen, ..)| {
                seen.as_ref().map(|i| i.id) != existing.as_ref().map(|i| i.id)
            });
            if stale {
                let current = existing.as_ref().map(mapper_view);
                match self.map(current.as_ref()).await? {
                    Mapped::Refused(denial, output) => return Ok(Outcome::denied(denial, output)),
                    Mapped::Admitted(mapped, output) => {
                        mapping = Some((existing.clone(), mapped, output));
                    }
                }
            }
            let (_, mapped, output) = mapping.as_ref().expect("mapped above");
            if existing.is_none() && holder.is_none() && self.login.provider.settings.jit.create {
                holder = self.email_holder(mapped).await?;
            }
            let found = match (&existing, &holder) {
                (Some(identity), _) => Found::Credential(identity),
                (None, Some(holder)) => Found::EmailHolder(holder),
                (None, None) => Found::Nothing,
            };
            let decision = decision::decide(
                &self.login.provider.rules(),
                mapped,
                found,
                &self.provenance(),
            );
            let done = |action, identity_id, changed| Outcome {
                action,
                identity_id,
                changed,
                denial: None,
                to_create: None,
                output: Some(output.clone()),
                mapped: Some(mapped.clone()),
            };
            match self.execute(decision, existing.as_ref()).await? {
                Step::Done {
                    action,
                    id,
                    changed,
                } => return Ok(done(action, id, changed)),
                Step::ToCreate(new) => {
                    let mut outcome = done(Action::Created, None, vec![]);
                    outcome.to_create = Some(new);
                    return Ok(outcome);
                }
                Step::Denied(denial) => {
                    let mut outcome = Outcome::denied(denial, Some(output.clone()));
                    outcome.mapped = Some(mapped.clone());
                    return Ok(outcome);
                }
                Step::Gone => {
                    existing = self.by_credential().await?;
                    holder = None;
                }
                Step::CreateConflict => {
                    // Either this subject was just created by a concurrent login (or by our own
                    // attempt whose answer was lost), or a unique value belongs to an identity
                    // the e-mail lookup did not find. The credential lookup tells which.
                    existing = self.by_credential().await?;
                    if existing.is_none() {
                        holder = self.email_holder(mapped).await?;
                        if holder.is_none() {
                            return Ok(self.value_taken(output, mapped));
                        }
                    }
                }
            }
        }
        Err(LoginError::Kratos(KratosError::Unavailable {
            detail: "the identity kept changing concurrently; try again".into(),
        }))
    }

    fn value_taken(&self, output: &Value, mapped: &MappedIdentity) -> Outcome {
        let mut outcome = Outcome::denied(
            Denial::ValueTaken {
                provider: self.login.provider.id.clone(),
            },
            Some(output.clone()),
        );
        outcome.mapped = Some(mapped.clone());
        outcome
    }

    /// The cleanup operations that apply to `identity` (a `remove` only where the path exists).
    fn cleanup_for(&self, identity: &Identity) -> Vec<PatchOp> {
        self.login
            .cleanup
            .iter()
            .filter(|op| match op {
                PatchOp::Remove { path } => holds(identity, path),
                _ => true,
            })
            .cloned()
            .collect()
    }

    /// Carries out a decision: at most one write.
    async fn execute(
        &self,
        decision: Decision,
        existing: Option<&Identity>,
    ) -> Result<Step, LoginError> {
        let dry_run = self.login.entry == EntryPoint::Check;
        Ok(match decision {
            Decision::Denied(denial) => Step::Denied(denial),
            Decision::Unchanged { id } => {
                let cleanup = existing.map(|i| self.cleanup_for(i)).unwrap_or_default();
                if !cleanup.is_empty() && !dry_run {
                    match self.kratos(self.logins.kratos.patch(&id, &cleanup)).await {
                        Ok(_) | Err(KratosError::NotFound { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Step::done(Action::Unchanged, id, vec![])
            }
            Decision::Update {
                id,
                mut ops,
                changed,
            } => {
                if dry_run {
                    return Ok(Step::done(Action::Updated, id, changed));
                }
                if let Some(existing) = existing {
                    ops.extend(self.cleanup_for(existing));
                }
                match self.kratos(self.logins.kratos.patch(&id, &ops)).await {
                    Ok(identity) => Step::done(Action::Updated, identity.id, changed),
                    // Deleted meanwhile: decide again from what Kratos holds now.
                    Err(KratosError::NotFound { .. }) => Step::Gone,
                    Err(KratosError::Conflict { .. }) => Step::Denied(Denial::ValueTaken {
                        provider: self.login.provider.id.clone(),
                    }),
                    Err(e) => return Err(e.into()),
                }
            }
            Decision::Link {
                identity,
                credential,
                changed,
            } => {
                if dry_run {
                    return Ok(Step::done(Action::Linked, identity.id, changed));
                }
                match self
                    .kratos(self.logins.kratos.link_oidc(&identity, &credential))
                    .await
                {
                    Ok(linked) => Step::done(Action::Linked, linked.id, changed),
                    Err(KratosError::NotFound { .. }) => Step::Gone,
                    Err(KratosError::Conflict { .. }) => Step::Denied(Denial::ValueTaken {
                        provider: self.login.provider.id.clone(),
                    }),
                    Err(e) => return Err(e.into()),
                }
            }
            Decision::Create(new) => {
                if dry_run || matches!(self.login.current, Current::Registering) {
                    return Ok(Step::ToCreate(new));
                }
                match self.kratos(self.logins.kratos.create(&new)).await {
                    Ok(identity) => Step::done(Action::Created, identity.id, vec![]),
                    Err(KratosError::Conflict { .. }) => Step::CreateConflict,
                    Err(e) => return Err(e.into()),
                }
            }
        })
    }
}

/// What carrying out a decision led to.
enum Step {
    Done {
        action: Action,
        id: Option<IdentityId>,
        changed: Vec<String>,
    },
    /// Kratos creates it (registration) or nothing is written (check).
    ToCreate(NewIdentity),
    Denied(Denial),
    /// The identity disappeared between the read and the write.
    Gone,
    /// Kratos refused the create: something already holds a unique value.
    CreateConflict,
}

impl Step {
    fn done(action: Action, id: IdentityId, changed: Vec<String>) -> Step {
        Step::Done {
            action,
            id: Some(id),
            changed,
        }
    }
}

/// The identity as the mapper sees it (`{traits, metadata_public, metadata_admin}`).
fn mapper_view(identity: &Identity) -> Value {
    serde_json::json!({
        "traits": identity.traits,
        "metadata_public": identity.metadata_public,
        "metadata_admin": identity.metadata_admin,
    })
}

/// Whether `identity` holds the JSON Pointer `path` (`/section/key`).
fn holds(identity: &Identity, path: &str) -> bool {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let section = match parts.next() {
        Some("traits") => Some(&identity.traits),
        Some("metadata_public") => identity.metadata_public.as_ref(),
        Some("metadata_admin") => identity.metadata_admin.as_ref(),
        _ => None,
    };
    match (section, parts.next()) {
        (Some(section), Some(key)) => section.get(key).is_some(),
        _ => false,
    }
}
