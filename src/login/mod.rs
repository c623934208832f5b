//! The login: one use case behind every entry point.
//!
//! The provisioning API, both Kratos web hooks, the claims hop, `kratos-jit check` and `kratos-jit map` describe
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
//! 4. decides ([`crate::domain::decision`]) and writes at most once, through the Kratos port;
//! 5. when that write changes a field the provider's `[sessions] revoke_when_changed` lists (the
//!    role, the tenant: [`crate::domain::sessions`]), revokes the identity's Kratos sessions
//!    first, in the same run ([`Outcome::sessions_revoked`]).
//!
//! A SCIM provisioning is a login too ([`Login::scim`], [`EntryPoint::Scim`]): its input is the
//! SCIM input ([`ScimInput`]) and its mapper the provider's SCIM mapper; the subject of its OIDC
//! credential is the SCIM attribute `[scim] subject` names, so the user's first SSO login finds
//! the identity SCIM created, and an identity an earlier SSO login created is adopted (found by
//! that credential). It goes through the same mapper contract, policy, decision and single write,
//! with two differences, both because the IdP's SCIM push is an explicit instruction of the
//! provider's administrator, configured by `[scim] enabled`: it creates and updates identities whatever
//! `[jit] create` and `[jit] update` say (linking to an identity found by e-mail still follows
//! `jit.link_by_verified_email`); and a `PUT`/`PATCH /Users/{id}` names the identity by id
//! ([`Current::ById`]), which is found only when it holds this provider's credential for the
//! same subject — another provider's identity is [`Action::NotFound`], never read or written.
//! `active` (the identity's `state`) and the HTTP answer are the SCIM service's business.
//!
//! The result is an [`Outcome`] that keeps the [`Denial`] as a type; each protocol turns it into
//! its own answer in one place. The login is logged here, once, with the entry point, the
//! provider, the subject's tag, the action, the identity id and the denial's code — never a
//! claim, a trait or a denial's reason. It is counted here too ([`crate::metrics`]: by
//! provider, entry point, action and denial code, with its duration), and so is its mapper
//! evaluation.
//!
//! Sessions are revoked **before** the write, never after it: if the revocation fails, nothing
//! is written and the login fails as unavailable, so its retry still sees the change and
//! revokes again; if the write fails after the revocation, the user merely signs in again, and
//! the retry revokes (idempotently: no session left is not an error) and writes. Revoking after
//! the write would leave a demoted user's old sessions alive for good whenever the revocation
//! failed, because the retry finds the identity already demoted and writes nothing. The new
//! session of this very login does not exist yet at that point: the hop issues its code after
//! the use case returns, and Kratos v26.2.0 persists a login's session only after its after-login
//! web hooks have answered (`docs/kratos.md`, sessions follow the IdP). Kratos sessions embed no
//! copy of the traits (a session's identity is read when the session is checked), so a session
//! created between the revocation and the write sees the written traits.
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

mod run;
#[cfg(test)]
mod scim_tests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::audit::{Audit, AuditAction, Record};
use crate::domain::mapped::MappedIdentity;
use crate::domain::policy;
use crate::domain::scim::ScimSubjectError;
use crate::domain::{Denial, IdentityId, ScimInput, Subject};
use crate::kratos::{KratosAdmin, KratosError, NewIdentity, PatchOp};
use crate::mapper::{Claims, MapperEngine, MapperError, MapperKind};
use crate::metrics::Metrics;
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
    /// The claims hop's callback (`GET /hop/<provider>/callback`), before Kratos gets a code.
    Hop,
    /// A SCIM provisioning (`POST`/`PUT`/`PATCH /scim/v2/<provider>/Users…`, or a group change
    /// that re-maps its members).
    Scim,
}

impl EntryPoint {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryPoint::Api => "api",
            EntryPoint::RegistrationHook => "registration_hook",
            EntryPoint::LoginHook => "login_hook",
            EntryPoint::Check => "check",
            EntryPoint::Hop => "hop",
            EntryPoint::Scim => "scim",
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
    /// The identity with this id (SCIM `PUT`/`PATCH /Users/{id}`: the SCIM id is the Kratos
    /// identity id). Found only when it holds this login's OIDC credential
    /// `<provider>:<subject>`; otherwise the outcome is [`Action::NotFound`] (no such identity,
    /// or one this provider does not own) or [`Action::SubjectChanged`], and nothing is written.
    /// Never creates.
    ById(IdentityId),
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

impl<'a> Login<'a> {
    /// A SCIM provisioning of `input` for `provider` ([`EntryPoint::Scim`]): the subject is the
    /// attribute `[scim] subject` names. `current` is [`Current::ByCredential`] for a `POST
    /// /Users` (or a re-mapping by credential) and [`Current::ById`] for `PUT`/`PATCH
    /// /Users/{id}`. The caller checks that the provider has SCIM enabled.
    pub fn scim(
        provider: &'a Provider,
        input: &'a ScimInput,
        current: Current,
        kratos_budget: Duration,
    ) -> Result<Login<'a>, ScimSubjectError> {
        Ok(Login {
            entry: EntryPoint::Scim,
            provider,
            subject: input.subject(provider.settings.scim.subject)?,
            claims: Claims::Scim(input),
            current,
            kratos_budget,
            cleanup: vec![],
        })
    }

    /// Whether this login maps a SCIM input (with the SCIM mapper), wherever it came from.
    pub fn is_provisioning(&self) -> bool {
        self.claims.kind() == MapperKind::Scim
    }
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
    /// [`Current::ById`] named no identity of this provider: none with that id, or one without
    /// this provider's OIDC credential. Nothing was read of it and nothing written (SCIM: 404).
    NotFound,
    /// [`Current::ById`] named an identity of this provider whose OIDC credential holds another
    /// subject: the `[scim] subject` attribute's value changed. Nothing was written (SCIM: 400
    /// `mutability`); the Kratos port cannot replace a credential's subject.
    SubjectChanged,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Linked => "linked",
            Action::Unchanged => "unchanged",
            Action::Denied => "denied",
            Action::NotFound => "not_found",
            Action::SubjectChanged => "subject_changed",
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
    /// The identity's earlier Kratos sessions were revoked by this login, because a field of
    /// `[sessions] revoke_when_changed` changed (never for [`EntryPoint::Check`]).
    pub sessions_revoked: bool,
    /// Kratos held the identity as `inactive` when this login read it. A provisioning entry
    /// point (SCIM) that finds the user active at the IdP reactivates it from this, Kratos's
    /// own state, so a deactivation that stopped half-way is never stuck.
    pub found_inactive: bool,
}

impl Outcome {
    /// Nothing was done, for a reason that is not a refusal of the mapped identity.
    pub(crate) fn nothing(action: Action) -> Self {
        Outcome {
            action,
            identity_id: None,
            changed: vec![],
            denial: None,
            to_create: None,
            output: None,
            mapped: None,
            sessions_revoked: false,
            found_inactive: false,
        }
    }

    pub(crate) fn denied(denial: Denial, output: Option<Value>) -> Self {
        Outcome {
            action: Action::Denied,
            identity_id: None,
            changed: vec![],
            denial: Some(denial),
            to_create: None,
            output,
            mapped: None,
            sessions_revoked: false,
            found_inactive: false,
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
    /// The change's audit event could not be written (`audit.on_failure = "refuse"`): nothing
    /// was written to Kratos.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

/// The login use case, over any Kratos adapter.
pub struct Logins<K> {
    kratos: K,
    engine: MapperEngine,
    providers: Arc<Providers>,
    schemas: Arc<IdentitySchemas>,
    audit: Audit,
    /// Where each login and mapper evaluation is counted ([`Logins::with_metrics`]).
    metrics: Metrics,
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
            audit: Audit::off(),
            metrics: Metrics::default(),
        }
    }

    /// The use case writing its changes and refusals to `audit` (off by default).
    pub fn with_audit(mut self, audit: Audit) -> Self {
        self.audit = audit;
        self
    }

    /// The audit trail, for the writes an entry point makes itself (the SCIM lifecycle).
    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// Counts every login and mapper evaluation into `metrics` (by default, into a registry
    /// nobody serves).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
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
        let (provider_ref, subject) = (login.provider, login.subject.clone());
        let mapper_kind = login.claims.kind();
        let timer = self.metrics.login(entry, provider.as_str());
        let result = run::Run {
            logins: self,
            until: Instant::now() + login.kratos_budget,
            login,
            sessions_revoked: Default::default(),
        }
        .run()
        .await;
        if let Ok(outcome) = &result {
            self.audit_refusal(entry, provider_ref, mapper_kind, &subject, outcome);
        }
        timer.finish(&result);
        match &result {
            Ok(outcome) => tracing::info!(
                message = "Login processed.",
                entry_point = entry.as_str(),
                provider = provider.as_str(),
                subject = %tag,
                action = %outcome.action.as_str(),
                identity_id = %outcome.identity_id.map(|id| id.to_string()).unwrap_or_default(),
                changed = ?outcome.changed,
                sessions_revoked = outcome.sessions_revoked,
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

    /// The audit event of a refusal (the changes are recorded where they are written, in
    /// `run.rs`). `check` and `map` write nothing, so they record nothing.
    fn audit_refusal(
        &self,
        entry: EntryPoint,
        provider: &Provider,
        kind: MapperKind,
        subject: &Subject,
        outcome: &Outcome,
    ) {
        let Some(denial) = &outcome.denial else {
            return;
        };
        if entry == EntryPoint::Check || !self.audit.is_on() {
            return;
        }
        self.audit.refusal(&Record {
            identity_id: outcome.identity_id,
            subject: Some(subject),
            denial_code: Some(denial.code()),
            mapper_sha256: provider.mapper_of(kind).map(|m| m.sha256.as_str()),
            ..Record::new(entry.as_str(), &provider.id, AuditAction::Denied)
        });
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
        LoginError::Audit(_) => "audit_unwritable",
    }
}
