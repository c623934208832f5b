//! Carrying one login out: the steps of [`super::Logins::run`], in order, with Kratos's
//! concurrency answers (409 on create, 404 on update) folded back into a new round.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use serde_json::Value;
use tokio::time::Instant;

use super::{Action, Current, EntryPoint, Login, LoginError, Logins, Outcome};
use crate::audit::{self, AuditAction, Change, Record};
use crate::domain::decision::{self, Decision, Found, Provenance};
use crate::domain::mapped::{InvalidOutput, MappedIdentity, identity_ext_var};
use crate::domain::policy::{self, EMAIL_TRAIT};
use crate::domain::sessions;
use crate::domain::{Denial, IdentityId, Rules};
use crate::kratos::{Identity, KratosAdmin, KratosError, NewIdentity, OidcCredential, PatchOp};
use crate::mapper::MapperError;

/// How many times a decision is re-taken after Kratos reported a concurrent change.
const MAX_ROUNDS: usize = 3;
/// Kratos's `state` of a deactivated identity.
const INACTIVE: &str = "inactive";

/// The result of mapping: usable, or refused with the output the mapper produced.
enum Mapped {
    Admitted(MappedIdentity, Value),
    Refused(Denial, Option<Value>),
}

/// One login in progress.
pub(super) struct Run<'l, 'a, K> {
    pub(super) logins: &'l Logins<K>,
    pub(super) login: Login<'a>,
    pub(super) until: Instant,
    /// Whether this run revoked the identity's sessions (set before the write it precedes).
    pub(super) sessions_revoked: AtomicBool,
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

    /// The audit record of a change this login makes to `identity_id` (`None`: a create).
    fn record(
        &self,
        action: AuditAction,
        identity_id: Option<IdentityId>,
        changes: Vec<Change>,
    ) -> Record<'_> {
        let provider = self.login.provider;
        Record {
            identity_id,
            subject: Some(&self.login.subject),
            changes,
            mapper_sha256: provider
                .mapper_of(self.login.claims.kind())
                .map(|m| m.sha256.as_str()),
            ..Record::new(self.login.entry.as_str(), &provider.id, action)
        }
    }

    /// The changed fields with their values before (`existing`) and after (`mapped`).
    fn changes(
        &self,
        changed: &[String],
        existing: Option<&Identity>,
        mapped: &MappedIdentity,
    ) -> Vec<Change> {
        let oidc = self
            .logins
            .audit
            .subject_hash(&self.login.provider.id, &self.login.subject);
        audit::field_changes(changed, existing, mapped, oidc)
    }

    /// Writes the event of a decided change, then — only once it is written — makes the
    /// Kratos write that carries the change out; a write that fails gets a `write_failed`
    /// follow-up. The only place the use case writes to Kratos (see `docs/audit.md`).
    async fn audited<T>(
        &self,
        record: Record<'_>,
        write: impl Future<Output = Result<T, KratosError>>,
    ) -> Result<Result<T, KratosError>, LoginError> {
        let trail = &self.logins.audit;
        let event = trail.record(&record)?;
        let result = self.kratos(write).await;
        if let Err(error) = &result {
            trail.write_failed(&record, event, audit::failure_word(error));
        }
        Ok(result)
    }

    /// The identity holding `identifier` as a credential identifier, if any.
    async fn holder_of(&self, identifier: &str) -> Result<Option<Identity>, KratosError> {
        self.kratos(self.logins.kratos.find_by_credential_identifier(identifier))
            .await
    }

    async fn by_credential(&self) -> Result<Option<Identity>, KratosError> {
        self.holder_of(&self.credential().identifier()).await
    }

    /// The identity `id`, when it is this login's: it holds the OIDC credential
    /// `<provider>:<subject>`. `Err` carries what to answer otherwise.
    async fn by_id(&self, id: &IdentityId) -> Result<Result<Identity, Action>, KratosError> {
        let identity = match self.kratos(self.logins.kratos.get(id)).await {
            Ok(identity) => identity,
            Err(KratosError::NotFound { .. }) => return Ok(Err(Action::NotFound)),
            Err(e) => return Err(e),
        };
        let wanted = self.credential().identifier();
        let prefix = format!("{}:", self.login.provider.id);
        let oidc = identity
            .credential_identifiers
            .get("oidc")
            .map(Vec::as_slice)
            .unwrap_or_default();
        if oidc.iter().any(|held| held == &wanted) {
            Ok(Ok(identity))
        } else if oidc.iter().any(|held| held.starts_with(&prefix)) {
            Ok(Err(Action::SubjectChanged))
        } else {
            // Another provider's identity, or one no IdP owns: as if it did not exist.
            Ok(Err(Action::NotFound))
        }
    }

    /// What Kratos holds for this login again, after it changed under a write.
    async fn refind(&self) -> Result<Result<Option<Identity>, Action>, KratosError> {
        match &self.login.current {
            Current::ById(id) => Ok(self.by_id(id).await?.map(Some)),
            _ => Ok(Ok(self.by_credential().await?)),
        }
    }

    /// The provider's rules for this login. A SCIM provisioning is the provider's own explicit
    /// instruction (`[scim] enabled`): it creates and updates whatever `[jit]` says.
    fn rules(&self) -> Rules<'_> {
        let mut rules = self.login.provider.rules();
        if self.login.is_provisioning() {
            rules.jit.create = true;
            rules.jit.update = true;
        }
        rules
    }

    /// The identity holding the mapped e-mail as a credential identifier, if any. Kratos keeps
    /// password and code identifiers trimmed and lower-cased (`NormalizeIdentifier`).
    async fn email_holder(&self, mapped: &MappedIdentity) -> Result<Option<Identity>, KratosError> {
        let Some(email) = mapped.traits.get(EMAIL_TRAIT).and_then(Value::as_str) else {
            return Ok(None);
        };
        self.holder_of(&email.trim().to_lowercase()).await
    }

    async fn map(&self, current: Option<&Value>) -> Result<Mapped, LoginError> {
        let provider = self.login.provider;
        let started = std::time::Instant::now();
        let evaluated = self
            .logins
            .engine
            .evaluate(
                provider.id.as_str(),
                self.login.claims,
                &identity_ext_var(current),
            )
            .await;
        let kind = self.login.claims.kind();
        self.logins.metrics.mapper_evaluated(
            provider.id.as_str(),
            kind,
            &evaluated,
            started.elapsed(),
        );
        let output = match evaluated {
            Ok(output) => output,
            // The evaluator itself failed, not the mapper's judgement: an error the caller may
            // retry, never a denial it would take for a refusal.
            Err(
                e @ (MapperError::EngineStopped
                | MapperError::WorkerCrashed(_)
                | MapperError::UnknownProvider(_)
                | MapperError::NoScimMapper(_)),
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
            match policy::admit(&self.rules(), &mapped, &self.logins.schemas) {
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
            mapper_sha256: self
                .login
                .provider
                .mapper_of(self.login.claims.kind())
                .map(|m| m.sha256.clone())
                .unwrap_or_default(),
        }
    }

    /// The identity Kratos holds before the first decision (`Ok(None)`: none yet), or, for a
    /// session Kratos cannot read in time, the refusal or the error to answer.
    async fn current(&self) -> Result<Result<Option<Identity>, Outcome>, LoginError> {
        match &self.login.current {
            Current::ByCredential => Ok(Ok(self.by_credential().await?)),
            Current::ById(id) => Ok(match self.by_id(id).await? {
                Ok(identity) => Ok(Some(identity)),
                Err(action) => Err(Outcome::nothing(action)),
            }),
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

    pub(super) async fn run(self) -> Result<Outcome, LoginError> {
        let mut existing = match self.current().await? {
            Ok(existing) => existing,
            Err(refused) => return Ok(refused),
        };
        // A deactivated identity signs in again only after the IdP's provisioning reactivated
        // it; a sign-in neither updates nor answers for it (Kratos refuses it too).
        if !self.login.is_provisioning() && existing.as_ref().is_some_and(|i| i.state == INACTIVE) {
            let provider = self.login.provider.id.clone();
            return Ok(Outcome::denied(Denial::Deactivated { provider }, None));
        }
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
            let rules = self.rules();
            if existing.is_none() && holder.is_none() && rules.jit.create {
                holder = self.email_holder(mapped).await?;
            }
            let found = match (&existing, &holder) {
                (Some(identity), _) => Found::Credential(identity),
                (None, Some(holder)) => Found::EmailHolder(holder),
                (None, None) => Found::Nothing,
            };
            let decision = decision::decide(&rules, mapped, found, &self.provenance());
            let found_inactive = existing.as_ref().is_some_and(|i| i.state == INACTIVE);
            let done = |action, identity_id, changed| Outcome {
                action,
                identity_id,
                changed,
                denial: None,
                to_create: None,
                output: Some(output.clone()),
                mapped: Some(mapped.clone()),
                sessions_revoked: self.sessions_revoked.load(Ordering::Relaxed),
                found_inactive,
            };
            let refused = |denial| Outcome {
                mapped: Some(mapped.clone()),
                sessions_revoked: self.sessions_revoked.load(Ordering::Relaxed),
                ..Outcome::denied(denial, Some(output.clone()))
            };
            match self
                .execute(decision, existing.as_ref(), holder.as_ref(), mapped)
                .await?
            {
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
                Step::Denied(denial) => return Ok(refused(denial)),
                Step::Gone => {
                    existing = match self.refind().await? {
                        Ok(existing) => existing,
                        Err(action) => return Ok(Outcome::nothing(action)),
                    };
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
                            return Ok(refused(self.value_taken()));
                        }
                    }
                }
            }
        }
        Err(LoginError::Kratos(KratosError::Unavailable {
            detail: "the identity kept changing concurrently; try again".into(),
        }))
    }

    /// Kratos holds a unique value of this login for an identity it may not change.
    fn value_taken(&self) -> Denial {
        Denial::ValueTaken {
            provider: self.login.provider.id.clone(),
        }
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

    /// Revokes the sessions of `id` before a write that changes `changed`, when the provider's
    /// `[sessions]` says so (see the module's doc for why before). A failure stops the login
    /// before anything is written.
    async fn revoke_sessions_for(
        &self,
        id: &IdentityId,
        changed: &[String],
    ) -> Result<(), LoginError> {
        if !sessions::revokes(&self.login.provider.settings.sessions, changed) {
            return Ok(());
        }
        let record = self.record(AuditAction::SessionsRevoked, Some(*id), vec![]);
        self.audited(record, self.logins.kratos.revoke_sessions(id))
            .await??;
        self.sessions_revoked.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Carries out a decision: at most one write (and the revocation of sessions it needs).
    async fn execute(
        &self,
        decision: Decision,
        existing: Option<&Identity>,
        holder: Option<&Identity>,
        mapped: &MappedIdentity,
    ) -> Result<Step, LoginError> {
        let dry_run = self.login.entry == EntryPoint::Check;
        Ok(match decision {
            Decision::Denied(denial) => Step::Denied(denial),
            Decision::Unchanged { id } => {
                let cleanup = existing.map(|i| self.cleanup_for(i)).unwrap_or_default();
                if !cleanup.is_empty() && !dry_run {
                    let removed = cleanup.iter().filter_map(removed_field).collect();
                    let record = self.record(AuditAction::Updated, Some(id), removed);
                    match self
                        .audited(record, self.logins.kratos.patch(&id, &cleanup))
                        .await?
                    {
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
                self.revoke_sessions_for(&id, &changed).await?;
                let changes = self.changes(&changed, existing, mapped);
                let record = self.record(AuditAction::Updated, Some(id), changes);
                match self
                    .audited(record, self.logins.kratos.patch(&id, &ops))
                    .await?
                {
                    Ok(identity) => Step::done(Action::Updated, identity.id, changed),
                    // Deleted meanwhile: decide again from what Kratos holds now.
                    Err(KratosError::NotFound { .. }) => Step::Gone,
                    Err(KratosError::Conflict { .. }) => Step::Denied(self.value_taken()),
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
                self.revoke_sessions_for(&identity.id, &changed).await?;
                // The values before are the e-mail holder's, as Kratos holds it.
                let changes = self.changes(&changed, holder, mapped);
                let record = self.record(AuditAction::Linked, Some(identity.id), changes);
                match self
                    .audited(record, self.logins.kratos.link_oidc(&identity, &credential))
                    .await?
                {
                    Ok(linked) => Step::done(Action::Linked, linked.id, changed),
                    Err(KratosError::NotFound { .. }) => Step::Gone,
                    Err(KratosError::Conflict { .. }) => Step::Denied(self.value_taken()),
                    Err(e) => return Err(e.into()),
                }
            }
            Decision::Create(new) => {
                if dry_run {
                    return Ok(Step::ToCreate(new));
                }
                let fields = audit::created_fields(mapped);
                let changes = self.changes(&fields, None, mapped);
                let record = self.record(AuditAction::Created, None, changes);
                if matches!(self.login.current, Current::Registering) {
                    // Kratos persists it once the hook answers: the event is written first.
                    self.logins.audit.record(&record)?;
                    return Ok(Step::ToCreate(new));
                }
                match self
                    .audited(record, self.logins.kratos.create(&new))
                    .await?
                {
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

/// The field an entry point's cleanup removes (the login hook's carried claims): recorded
/// without its values, which are the sign-in's claims.
fn removed_field(op: &PatchOp) -> Option<Change> {
    let PatchOp::Remove { path } = op else {
        return None;
    };
    let field = path.trim_start_matches('/').replacen('/', ".", 1);
    Some(Change {
        field,
        before: Some(Value::String("not_recorded".into())),
        after: None,
        opaque: true,
    })
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

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::*;
    use crate::kratos::IdentityPage;
    use crate::login::{Current, EntryPoint, Login, Logins};
    use crate::mapper::{Isolation, Limits, MapperEngine};
    use crate::provider::Providers;
    use crate::schema::IdentitySchemas;

    /// Kratos holding one identity, recording the calls that change something; its session
    /// revocation fails when told to.
    struct Recorder {
        identity: Mutex<Option<Identity>>,
        revoke_fails: bool,
        calls: Mutex<Vec<&'static str>>,
    }

    impl Recorder {
        fn record(&self, call: &'static str) {
            self.calls.lock().unwrap().push(call);
        }
    }

    impl KratosAdmin for Arc<Recorder> {
        async fn find_by_credential_identifier(
            &self,
            _: &str,
        ) -> Result<Option<Identity>, KratosError> {
            Ok(self.identity.lock().unwrap().clone())
        }
        async fn get(&self, _: &IdentityId) -> Result<Identity, KratosError> {
            unreachable!("the login reads by credential")
        }
        async fn create(&self, _: &NewIdentity) -> Result<Identity, KratosError> {
            unreachable!("the identity exists")
        }
        async fn patch(&self, _: &IdentityId, _: &[PatchOp]) -> Result<Identity, KratosError> {
            self.record("patch");
            Ok(self.identity.lock().unwrap().clone().unwrap())
        }
        async fn link_oidc(
            &self,
            _: &Identity,
            _: &OidcCredential,
        ) -> Result<Identity, KratosError> {
            unreachable!("the identity holds the credential")
        }
        async fn deactivate(&self, _: &IdentityId) -> Result<Identity, KratosError> {
            unreachable!("logins never deactivate")
        }
        async fn reactivate(&self, _: &IdentityId) -> Result<Identity, KratosError> {
            unreachable!("logins never reactivate")
        }
        async fn delete(&self, _: &IdentityId) -> Result<(), KratosError> {
            unreachable!("logins never delete")
        }
        async fn revoke_sessions(&self, _: &IdentityId) -> Result<(), KratosError> {
            self.record("revoke_sessions");
            if self.revoke_fails {
                return Err(KratosError::Unavailable {
                    detail: "connection refused".into(),
                });
            }
            Ok(())
        }
        async fn list(&self, _: u32, _: Option<&str>) -> Result<IdentityPage, KratosError> {
            unreachable!("logins never list")
        }
    }

    fn claims(case: &str) -> Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/claims/okta-acme")
            .join(format!("{case}.json"));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    /// The okta-acme admin Ada, as Kratos holds her before `demoted.json`.
    fn ada() -> Identity {
        Identity {
            id: "9f3c2a1e-0000-4000-8000-000000000001".parse().unwrap(),
            schema_id: "default".into(),
            state: "active".into(),
            traits: json!({
                "email": "ada@acme.example", "tenant_id": "tenant-acme",
                "first_name": "Ada", "last_name": "Lovelace", "role": "admin",
            }),
            metadata_public: None,
            metadata_admin: Some(json!({})),
            external_id: None,
            verifiable_addresses: vec![],
            credential_identifiers: [(
                "oidc".to_owned(),
                vec!["okta-acme:ada@acme.example".into()],
            )]
            .into(),
        }
    }

    async fn demote(
        entry: EntryPoint,
        revoke_fails: bool,
    ) -> (Result<Outcome, LoginError>, Vec<&'static str>) {
        demote_audited(entry, revoke_fails, crate::audit::Audit::off()).await
    }

    async fn demote_audited(
        entry: EntryPoint,
        revoke_fails: bool,
        audit: crate::audit::Audit,
    ) -> (Result<Outcome, LoginError>, Vec<&'static str>) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappers");
        let (providers, _) = Providers::load(&dir).unwrap();
        let engine = MapperEngine::start(
            providers.mapper_sources(),
            Limits::default(),
            1,
            Isolation::Threads,
        )
        .unwrap();
        let kratos = Arc::new(Recorder {
            identity: Mutex::new(Some(ada())),
            revoke_fails,
            calls: Mutex::new(vec![]),
        });
        let logins = Logins::new(
            Arc::clone(&kratos),
            engine,
            Arc::new(providers),
            Arc::new(IdentitySchemas::builtin()),
        )
        .with_audit(audit);
        let demoted = claims("demoted");
        let login = Login {
            entry,
            provider: logins.providers().get("okta-acme").unwrap(),
            subject: crate::domain::Subject::parse("ada@acme.example").unwrap(),
            claims: (&demoted).into(),
            current: Current::ByCredential,
            kratos_budget: Duration::from_secs(5),
            cleanup: vec![],
        };
        let result = logins.run(login).await;
        let calls = kratos.calls.lock().unwrap().clone();
        (result, calls)
    }

    #[tokio::test]
    async fn a_demotion_revokes_the_sessions_before_writing_the_role() {
        let (result, calls) = demote(EntryPoint::Api, false).await;

        let outcome = result.unwrap();
        assert_eq!(outcome.action, Action::Updated, "{:?}", outcome.denial);
        assert_eq!(outcome.changed, ["traits.role"]);
        assert!(outcome.sessions_revoked);
        assert_eq!(calls, ["revoke_sessions", "patch"]);
    }

    #[tokio::test]
    async fn a_failed_revocation_fails_the_login_with_nothing_written() {
        let (result, calls) = demote(EntryPoint::Api, true).await;

        assert!(
            matches!(
                result,
                Err(LoginError::Kratos(KratosError::Unavailable { .. }))
            ),
            "{result:?}"
        );
        assert_eq!(
            calls,
            ["revoke_sessions"],
            "the role was written without the revocation"
        );
    }

    #[tokio::test]
    async fn a_dry_run_neither_revokes_nor_writes() {
        let (result, calls) = demote(EntryPoint::Check, false).await;

        let outcome = result.unwrap();
        assert_eq!(outcome.changed, ["traits.role"]);
        assert!(!outcome.sessions_revoked);
        assert!(calls.is_empty(), "{calls:?}");
    }

    fn audit_to(path: &Path) -> crate::audit::Audit {
        crate::audit::Audit::open(&crate::audit::AuditConfig {
            sink: crate::audit::SinkConfig::File(path.to_owned()),
            values: crate::audit::ValueMode::Plain,
            ..Default::default()
        })
    }

    fn actions_in(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["action"].to_string())
            .collect()
    }

    #[tokio::test]
    async fn each_write_of_a_demotion_is_announced_before_it_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (result, calls) = demote_audited(EntryPoint::Api, false, audit_to(&path)).await;

        assert_eq!(result.unwrap().action, Action::Updated);
        assert_eq!(calls, ["revoke_sessions", "patch"]);
        assert_eq!(actions_in(&path), ["\"sessions_revoked\"", "\"updated\""]);
    }

    #[tokio::test]
    async fn an_unwritable_audit_trail_refuses_the_change_before_any_kratos_write() {
        let audit = audit_to(Path::new("/dev/full"));
        let (result, calls) = demote_audited(EntryPoint::Api, false, audit).await;

        assert!(matches!(result, Err(LoginError::Audit(_))), "{result:?}");
        assert!(
            calls.is_empty(),
            "written without its audit event: {calls:?}"
        );
    }

    #[tokio::test]
    async fn a_failed_kratos_write_is_followed_by_write_failed_naming_its_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (result, _) = demote_audited(EntryPoint::Api, true, audit_to(&path)).await;

        assert!(result.is_err());
        let events: Vec<Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len(), 2, "{events:#?}");
        assert_eq!(events[0]["action"], "sessions_revoked");
        assert_eq!(events[1]["action"], "write_failed");
        assert_eq!(events[1]["refers_to"], events[0]["event_id"]);
        assert_eq!(events[1]["failure"], "kratos_unavailable");
    }

    #[tokio::test]
    async fn a_dry_run_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (result, _) = demote_audited(EntryPoint::Check, false, audit_to(&path)).await;

        assert!(result.is_ok());
        assert!(actions_in(&path).is_empty());
    }
}
