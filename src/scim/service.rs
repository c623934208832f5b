//! The SCIM application service: one provider's Users and Groups, over the store, the login use
//! case and the Kratos port. No HTTP here: `src/http/scim.rs` parses requests and renders what
//! this returns.
//!
//! What it promises:
//!
//! - **One use case.** Every write of a user — `POST`, `PUT`, `PATCH`, and every member a group
//!   change adds or removes — goes through [`Login::scim`] and [`Logins::run`]: the same mapper
//!   contract, policy and decision as a sign-in, so a role that follows group membership is
//!   lowered at once (and sessions revoked by the use case's `[sessions]` rule). A denial writes
//!   nothing and answers a SCIM error.
//! - **Kratos first, then the store.** `active: false` sets the identity `inactive` and revokes
//!   its sessions before the store records it; a group change re-maps its members before the
//!   store records the membership. A fault in between leaves the store behind Kratos, never a
//!   deactivated user able to sign in, and the same request retried converges (each step is
//!   idempotent).
//! - **Clashes before Kratos.** A `userName`/`externalId` (a group's `displayName`/`externalId`)
//!   that another resource of the provider holds is a 409 found in the store before any Kratos
//!   call, so a refused write never re-maps an identity the store then does not record.
//! - **Isolation.** Every store call is keyed by the provider; a Kratos identity is touched only
//!   once the store says it is this provider's user (or the use case found it by this provider's
//!   credential), so another provider's id is a 404 or an `invalidValue`, never read or written.
//! - **Reads from the store only**, never by scanning Kratos.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use futures_util::{StreamExt, TryStreamExt};
use serde_json::{Map, Value};

use super::meta;
use super::resource;
use super::{IndexKey, ListQuery, Projection, ResourceKind, ScimError, apply_patch, list_response};
use crate::audit::{AuditAction, Record};
use crate::domain::Subject;
use crate::domain::{Denial, IdentityId, OnDelete, ScimGroup, ScimInput, ScimSubject};
use crate::kratos::{KratosAdmin, KratosError};
use crate::login::{Action, Current, EntryPoint, Login, LoginError, Logins};
use crate::provider::Provider;
use crate::store::{GroupId, Membership, Store, StoreError, StoredGroup, StoredUser};

/// How long a client should wait before retrying after a 503.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// One provider's SCIM service for one request.
pub struct ScimService<'s, K> {
    pub logins: &'s Logins<K>,
    pub store: &'s Store,
    pub provider: &'s Provider,
    /// The absolute base URL of this provider's SCIM endpoint (`…/scim/v2/<provider>`).
    pub base_url: &'s str,
    /// The time the Kratos calls of one login must end within.
    pub kratos_budget: Duration,
}

fn store_error(error: StoreError) -> ScimError {
    match error {
        StoreError::Unavailable(_) => {
            ScimError::new(503, None, "the SCIM store is unavailable; retry later")
        }
        StoreError::Conflict { what } => ScimError::uniqueness(format!(
            "another resource of this provider already has this {what}"
        )),
        StoreError::VersionMismatch => ScimError::precondition_failed(
            "the resource was changed since the version given in If-Match",
        ),
        StoreError::NotFound { what } => {
            ScimError::not_found(format!("no such {what} for this provider"))
        }
        StoreError::UnknownMember(id) => {
            ScimError::invalid_value(format!("member {id} is not a user of this provider"))
        }
    }
}

fn kratos_error(error: KratosError) -> ScimError {
    match error {
        KratosError::Unavailable { .. } => ScimError::new(
            503,
            None,
            "the Kratos admin API is unavailable; retry later",
        ),
        KratosError::NotFound { .. } => {
            ScimError::not_found("the identity no longer exists in Kratos")
        }
        KratosError::Conflict { .. } => ScimError::uniqueness(
            "Kratos reports that a unique value of this user belongs to another identity",
        ),
        KratosError::Rejected { status, .. } => ScimError::new(
            502,
            None,
            format!("Kratos refused the change ({status}); see kratos-jit's log"),
        ),
        KratosError::Protocol { .. } => ScimError::new(
            502,
            None,
            "unexpected answer from the Kratos admin API; see kratos-jit's log",
        ),
    }
}

fn login_error(error: LoginError) -> ScimError {
    match error {
        LoginError::Kratos(error) => kratos_error(error),
        LoginError::Engine(_) => ScimError::new(
            503,
            None,
            "the mapper engine could not evaluate; retry later",
        ),
        LoginError::Audit(error) => audit_error(error),
    }
}

/// The audit trail cannot be written: the change is refused, nothing was written to Kratos.
fn audit_error(error: crate::audit::AuditError) -> ScimError {
    ScimError::new(503, None, format!("{error}; retry later"))
}

/// A denial as the IdP is told it: the tenant and linking rules are 403/409, a mapping the
/// policy refuses is 400 `invalidValue`.
fn denial_error(denial: &Denial) -> ScimError {
    let detail = denial.to_string();
    match denial {
        Denial::Linking { .. } | Denial::ValueTaken { .. } => ScimError::uniqueness(detail),
        Denial::NoTenant { .. }
        | Denial::ForeignTenant { .. }
        | Denial::ForeignDomain { .. }
        | Denial::ForeignVerifiedAddress { .. }
        | Denial::CreateDisabled { .. } => ScimError::new(403, None, detail),
        _ => ScimError::invalid_value(detail),
    }
}

fn unknown_member(raw: &str) -> ScimError {
    ScimError::invalid_value(format!("member {raw} is not a user of this provider"))
}

fn not_found(kind: ResourceKind) -> ScimError {
    ScimError::not_found(format!("no such {} for this provider", kind.name()))
}

fn user_id(id: &str) -> Result<IdentityId, ScimError> {
    id.parse().map_err(|_| not_found(ResourceKind::User))
}

fn group_id(id: &str) -> Result<GroupId, ScimError> {
    id.parse().map_err(|_| not_found(ResourceKind::Group))
}

fn object(resource: &Value) -> Map<String, Value> {
    resource.as_object().cloned().unwrap_or_default()
}

fn scim_groups(memberships: &[Membership]) -> Vec<ScimGroup> {
    memberships
        .iter()
        .map(|m| ScimGroup {
            value: m.group.to_string(),
            display_name: m.display_name.clone(),
            external_id: m.external_id.clone(),
        })
        .collect()
}

fn without_members(resource: &Value) -> Value {
    let mut out = object(resource);
    out.retain(|key, _| !key.eq_ignore_ascii_case("members"));
    Value::Object(out)
}

fn emails_index(resource: &Value) -> Vec<String> {
    let mut emails: Vec<String> = resource::emails(resource)
        .into_iter()
        .map(|e| e.to_lowercase())
        .collect();
    emails.sort();
    emails.dedup();
    emails
}

/// How many members of one group change are re-mapped at a time: as many as the default
/// number of mapper workers, so that one large PATCH does not queue every other login behind it.
const REMAP_CONCURRENCY: usize = 4;

/// The identity a SCIM login wrote, as the login found it in Kratos.
struct Mapped {
    id: IdentityId,
    /// Kratos held it as `inactive` before this request ([`crate::login::Outcome`]).
    found_inactive: bool,
}

impl<K: KratosAdmin> ScimService<'_, K> {
    fn kratos(&self) -> &K {
        self.logins.kratos()
    }

    async fn timed<T>(
        &self,
        call: impl Future<Output = Result<T, KratosError>>,
    ) -> Result<T, ScimError> {
        match tokio::time::timeout(self.kratos_budget, call).await {
            Ok(result) => result.map_err(kratos_error),
            Err(_) => Err(kratos_error(KratosError::Unavailable {
                detail: "no answer in time".into(),
            })),
        }
    }

    /// Runs the SCIM login of `user` with its memberships `groups`: the identity it wrote.
    async fn map_user(
        &self,
        user: &Value,
        groups: &[ScimGroup],
        current: Current,
    ) -> Result<Mapped, ScimError> {
        let input = ScimInput::new(object(user), groups);
        let login = Login::scim(self.provider, &input, current, self.kratos_budget)
            .map_err(|e| ScimError::invalid_value(e.to_string()))?;
        let outcome = self.logins.run(login).await.map_err(login_error)?;
        if let Some(denial) = &outcome.denial {
            return Err(denial_error(denial));
        }
        match (outcome.action, outcome.identity_id) {
            (Action::NotFound, _) => Err(not_found(ResourceKind::User)),
            (Action::SubjectChanged, _) => Err(ScimError::mutability(format!(
                "the SSO subject of this user ({}) cannot change once provisioned",
                self.provider.settings.scim.subject.as_str()
            ))),
            (_, Some(id)) => Ok(Mapped {
                id,
                found_inactive: outcome.found_inactive,
            }),
            (_, None) => Err(ScimError::new(
                500,
                None,
                "the login use case named no identity",
            )),
        }
    }

    /// Kratos's `state` follows `active`: deactivation ends every session too.
    ///
    /// Deactivation is sent every time, also when the store already says inactive, so that a
    /// retry after a fault between Kratos and the store converges. Reactivation follows
    /// Kratos's own state as the login read it (`mapped.found_inactive`), not the store's: a
    /// deactivation that reached Kratos but not the store, followed by `active: true` instead
    /// of a retry, still reactivates.
    async fn apply_active(&self, mapped: &Mapped, resource: &Value) -> Result<(), ScimError> {
        let subject = self.subject_of(resource);
        if !resource::active(resource) {
            self.deactivate(&mapped.id, subject.as_ref()).await
        } else if mapped.found_inactive {
            let reactivate = self.kratos().reactivate(&mapped.id);
            self.audited(
                AuditAction::Reactivated,
                &mapped.id,
                subject.as_ref(),
                reactivate,
            )
            .await?;
            Ok(())
        } else {
            Ok(())
        }
    }

    async fn deactivate(
        &self,
        id: &IdentityId,
        subject: Option<&Subject>,
    ) -> Result<(), ScimError> {
        let deactivate = self.kratos().deactivate(id);
        self.audited(AuditAction::Deactivated, id, subject, deactivate)
            .await?;
        let revoke = self.kratos().revoke_sessions(id);
        self.audited(AuditAction::SessionsRevoked, id, subject, revoke)
            .await
    }

    /// The SSO subject of a SCIM user resource (`[scim] subject`), for its audit events.
    fn subject_of(&self, resource: &Value) -> Option<Subject> {
        ScimInput::new(object(resource), &[])
            .subject(self.provider.settings.scim.subject)
            .ok()
    }

    /// A lifecycle write of `id` (deactivate, reactivate, revoke sessions, delete), made only
    /// once its audit event is written ([`crate::audit`]): 503 when it cannot be, and nothing
    /// is written to Kratos. A failed write gets its `write_failed` follow-up.
    async fn audited<T>(
        &self,
        action: AuditAction,
        id: &IdentityId,
        subject: Option<&Subject>,
        write: impl Future<Output = Result<T, KratosError>>,
    ) -> Result<T, ScimError> {
        let trail = self.logins.audit();
        let record = Record {
            identity_id: Some(*id),
            subject,
            ..Record::new(EntryPoint::Scim.as_str(), &self.provider.id, action)
        };
        let event = trail.record(&record).map_err(audit_error)?;
        let result = match tokio::time::timeout(self.kratos_budget, write).await {
            Ok(result) => result,
            Err(_) => Err(KratosError::Unavailable {
                detail: "no answer in time".into(),
            }),
        };
        if let Err(error) = &result {
            trail.write_failed(&record, event, crate::audit::failure_word(error));
        }
        result.map_err(kratos_error)
    }

    fn stored_user(&self, id: IdentityId, resource: Value) -> StoredUser {
        let now = SystemTime::now();
        StoredUser {
            provider: self.provider.id.clone(),
            id,
            user_name: resource::user_name(&resource)
                .unwrap_or_default()
                .to_owned(),
            external_id: resource::external_id(&resource).map(str::to_owned),
            emails: emails_index(&resource),
            active: resource::active(&resource),
            resource,
            created: now,
            last_modified: now,
            version: 0,
        }
    }

    /// A user as GET returns it: `id`, `meta`, and its direct `groups`.
    async fn user_representation(&self, user: &StoredUser) -> Result<Value, ScimError> {
        let groups = self
            .store
            .groups_of(&self.provider.id, user.id)
            .await
            .map_err(store_error)?;
        let id = user.id.to_string();
        let mut out = meta::with_meta(
            &user.resource,
            ResourceKind::User,
            &id,
            user.created,
            user.last_modified,
            user.version,
            self.base_url,
        );
        if let Some(object) = out.as_object_mut() {
            object.insert(
                "groups".into(),
                groups
                    .iter()
                    .map(|g| {
                        meta::group_entry(self.base_url, &g.group.to_string(), &g.display_name)
                    })
                    .collect(),
            );
        }
        Ok(out)
    }

    async fn represent_users(&self, users: &[StoredUser]) -> Result<Vec<Value>, ScimError> {
        let mut out = Vec::with_capacity(users.len());
        for user in users {
            out.push(self.user_representation(user).await?);
        }
        Ok(out)
    }

    async fn represent_groups(&self, groups: &[StoredGroup]) -> Result<Vec<Value>, ScimError> {
        let mut out = Vec::with_capacity(groups.len());
        for group in groups {
            out.push(self.group_representation(group).await?);
        }
        Ok(out)
    }

    async fn group_representation(&self, group: &StoredGroup) -> Result<Value, ScimError> {
        let members = self
            .store
            .members(&self.provider.id, group.id)
            .await
            .map_err(store_error)?;
        Ok(self.group_with_members(group, &members))
    }

    /// A group as GET returns it, given its members (sorted by id, as the store keeps them).
    fn group_with_members(&self, group: &StoredGroup, members: &[IdentityId]) -> Value {
        let mut out = meta::with_meta(
            &group.resource,
            ResourceKind::Group,
            &group.id.to_string(),
            group.created,
            group.last_modified,
            group.version,
            self.base_url,
        );
        if let Some(object) = out.as_object_mut() {
            object.insert(
                "members".into(),
                members
                    .iter()
                    .map(|m| meta::member_entry(self.base_url, &m.to_string()))
                    .collect(),
            );
        }
        out
    }

    async fn load_user(&self, id: &str) -> Result<StoredUser, ScimError> {
        let id = user_id(id)?;
        self.store
            .user(&self.provider.id, id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| not_found(ResourceKind::User))
    }

    async fn load_group(&self, id: &str) -> Result<StoredGroup, ScimError> {
        let id = group_id(id)?;
        self.store
            .group(&self.provider.id, id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| not_found(ResourceKind::Group))
    }

    fn check_version(current: u64, if_match: Option<&str>) -> Result<Option<u64>, ScimError> {
        match if_match {
            Some(header) if !meta::if_match(header, current) => {
                Err(ScimError::precondition_failed(
                    "the resource was changed since the version given in If-Match",
                ))
            }
            Some(_) => Ok(Some(current)),
            None => Ok(None),
        }
    }

    /// Refuses a `userName` or `externalId` that another user of this provider (not `except`)
    /// holds. Checked before Kratos is touched: the store would refuse the clash only after the
    /// identity had been re-mapped, leaving Kratos with attributes no SCIM user has.
    async fn check_user_unique(
        &self,
        resource: &Value,
        except: Option<IdentityId>,
    ) -> Result<(), ScimError> {
        let others = |users: Option<Vec<StoredUser>>| {
            users
                .unwrap_or_default()
                .into_iter()
                .filter(move |u| Some(u.id) != except)
        };
        if let Some(name) = resource::user_name(resource) {
            let taken = self
                .store
                .users_by(&self.provider.id, IndexKey::UserName, name)
                .await
                .map_err(store_error)?;
            if others(taken).any(|u| u.user_name.eq_ignore_ascii_case(name)) {
                return Err(ScimError::uniqueness(
                    "a user with this userName already exists for this provider",
                ));
            }
        }
        if let Some(external_id) = resource::external_id(resource) {
            let taken = self
                .store
                .users_by(&self.provider.id, IndexKey::ExternalId, external_id)
                .await
                .map_err(store_error)?;
            if others(taken).any(|u| u.external_id.as_deref() == Some(external_id)) {
                return Err(ScimError::uniqueness(
                    "a user with this externalId already exists for this provider",
                ));
            }
        }
        Ok(())
    }

    /// Refuses a new user whose SSO subject (`[scim] subject`) another user of this provider
    /// already has: the login use case would adopt that user's identity, and the store would
    /// record the new user under the other one's id. `userName` and `externalId` subjects are
    /// covered by [`Self::check_user_unique`]; an e-mail subject is looked up here.
    async fn check_subject_free(&self, resource: &Value) -> Result<(), ScimError> {
        let setting = self.provider.settings.scim.subject;
        if setting != ScimSubject::PrimaryEmail {
            return Ok(());
        }
        let subject_of = |resource: &Value| {
            ScimInput::new(object(resource), &[])
                .subject(setting)
                .ok()
                .map(|s| s.as_str().to_owned())
        };
        // Without a subject the use case refuses the user itself.
        let Some(subject) = subject_of(resource) else {
            return Ok(());
        };
        let holders = self
            .store
            .users_by(&self.provider.id, IndexKey::Email, &subject)
            .await
            .map_err(store_error)?
            .unwrap_or_default();
        if holders
            .iter()
            .any(|u| subject_of(&u.resource).as_deref() == Some(subject.as_str()))
        {
            return Err(ScimError::uniqueness(
                "another user of this provider has the same SSO subject (email)",
            ));
        }
        Ok(())
    }

    /// The group counterpart of [`Self::check_user_unique`]: `displayName` and `externalId`.
    async fn check_group_unique(
        &self,
        group: &StoredGroup,
        except: Option<GroupId>,
    ) -> Result<(), ScimError> {
        let others = |groups: Option<Vec<StoredGroup>>| {
            groups
                .unwrap_or_default()
                .into_iter()
                .filter(move |g| Some(g.id) != except)
        };
        let taken = self
            .store
            .groups_by(
                &self.provider.id,
                IndexKey::DisplayName,
                &group.display_name,
            )
            .await
            .map_err(store_error)?;
        if others(taken).any(|g| g.display_name.eq_ignore_ascii_case(&group.display_name)) {
            return Err(ScimError::uniqueness(
                "a group with this displayName already exists for this provider",
            ));
        }
        if let Some(external_id) = &group.external_id {
            let taken = self
                .store
                .groups_by(&self.provider.id, IndexKey::ExternalId, external_id)
                .await
                .map_err(store_error)?;
            if others(taken).any(|g| g.external_id.as_ref() == Some(external_id)) {
                return Err(ScimError::uniqueness(
                    "a group with this externalId already exists for this provider",
                ));
            }
        }
        Ok(())
    }

    // ----- Users -----

    /// `POST /Users`: 201 with the user. An identity an SSO login created earlier (holding this
    /// provider's credential for the same subject) is adopted, never duplicated.
    pub async fn create_user(&self, body: &Value) -> Result<Value, ScimError> {
        let resource = resource::validate(ResourceKind::User, body)?;
        self.check_user_unique(&resource, None).await?;
        self.check_subject_free(&resource).await?;
        let mapped = self.map_user(&resource, &[], Current::ByCredential).await?;
        let id = mapped.id;
        // Unreachable but for a race with another create: never record this user over another
        // one's id.
        if self
            .store
            .user(&self.provider.id, id)
            .await
            .map_err(store_error)?
            .is_some()
        {
            tracing::warn!(
                provider = self.provider.id.as_str(),
                "A SCIM create found an identity another SCIM user of this provider holds."
            );
            return Err(ScimError::uniqueness(
                "another user of this provider has the same SSO subject",
            ));
        }
        // An adopted identity may have been deactivated by an earlier DELETE: `active: true`
        // reactivates it.
        self.apply_active(&mapped, &resource).await?;
        let stored = self
            .store
            .put_user(&self.stored_user(id, resource), None)
            .await
            .map_err(store_error)?;
        self.user_representation(&stored).await
    }

    pub async fn get_user(&self, id: &str) -> Result<Value, ScimError> {
        let user = self.load_user(id).await?;
        self.user_representation(&user).await
    }

    /// `PUT /Users/{id}`.
    pub async fn replace_user(
        &self,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Value, ScimError> {
        let current = self.load_user(id).await?;
        let expected = Self::check_version(current.version, if_match)?;
        let resource = resource::validate(ResourceKind::User, body)?;
        self.write_user(current, resource, expected).await
    }

    /// `PATCH /Users/{id}`.
    pub async fn patch_user(
        &self,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Value, ScimError> {
        let current = self.load_user(id).await?;
        let expected = Self::check_version(current.version, if_match)?;
        let patched = apply_patch(
            ResourceKind::User,
            &current.resource,
            &current.id.to_string(),
            body,
        )?;
        if !patched.changed && !self.stuck_inactive(&current).await? {
            return self.user_representation(&current).await;
        }
        self.write_user(current, patched.resource, expected).await
    }

    /// The store says active and Kratos says inactive: a deactivation that reached Kratos but
    /// not the store. A PATCH that changes nothing in the store (Okta's reactivation `active:
    /// true` after such a fault) still writes, so that Kratos is reactivated.
    async fn stuck_inactive(&self, user: &StoredUser) -> Result<bool, ScimError> {
        if !user.active {
            return Ok(false);
        }
        match self.timed(self.kratos().get(&user.id)).await {
            Ok(identity) => Ok(identity.state == "inactive"),
            // The identity is gone from Kratos: the write answers that.
            Err(e) if e.status == 404 => Ok(true),
            Err(e) => Err(e),
        }
    }

    async fn write_user(
        &self,
        current: StoredUser,
        resource: Value,
        expected: Option<u64>,
    ) -> Result<Value, ScimError> {
        self.check_user_unique(&resource, Some(current.id)).await?;
        let memberships = self
            .store
            .groups_of(&self.provider.id, current.id)
            .await
            .map_err(store_error)?;
        let mapped = self
            .map_user(
                &resource,
                &scim_groups(&memberships),
                Current::ById(current.id),
            )
            .await?;
        self.apply_active(&mapped, &resource).await?;
        let mut next = self.stored_user(mapped.id, resource);
        next.created = current.created;
        let stored = self
            .store
            .put_user(&next, expected)
            .await
            .map_err(store_error)?;
        self.user_representation(&stored).await
    }

    /// `DELETE /Users/{id}`, per `[scim] on_delete`: deactivate (the default: state inactive,
    /// sessions revoked) or delete the identity; then the user leaves the store, so every later
    /// request answers 404.
    pub async fn delete_user(&self, id: &str) -> Result<(), ScimError> {
        let user = self.load_user(id).await?;
        let gone = |result: Result<(), ScimError>| match result {
            Err(e) if e.status == 404 => Ok(()),
            other => other,
        };
        let subject = self.subject_of(&user.resource);
        let subject = subject.as_ref();
        match self.provider.settings.scim.on_delete {
            OnDelete::Deactivate => {
                gone(self.deactivate(&user.id, subject).await)?;
            }
            OnDelete::Delete => {
                let revoke = self.kratos().revoke_sessions(&user.id);
                let action = AuditAction::SessionsRevoked;
                gone(self.audited(action, &user.id, subject, revoke).await)?;
                let delete = self.kratos().delete(&user.id);
                gone(
                    self.audited(AuditAction::Deleted, &user.id, subject, delete)
                        .await,
                )?;
            }
        }
        self.store
            .delete_user(&self.provider.id, user.id)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    // ----- Groups -----

    /// The member ids a group resource names, in its order (not yet checked to be users).
    fn member_ids(group: &Value) -> Result<Vec<IdentityId>, ScimError> {
        resource::members(group)
            .iter()
            .map(|raw| raw.parse().map_err(|_| unknown_member(raw)))
            .collect()
    }

    /// Re-maps every user in `affected` with its memberships as they will be once the group
    /// `group` has `members` (`None`: the group is gone). Runs before the store records the
    /// change, so that Kratos is never behind the store.
    ///
    /// The members are independent identities, so up to [`REMAP_CONCURRENCY`] of them are
    /// re-mapped side by side: a PATCH adding many members waits on Kratos and the mapper
    /// workers for all of them at once rather than one after another. The first failure stops
    /// the rest; members already re-mapped stay so, and the retry converges.
    async fn remap(
        &self,
        group: GroupId,
        after: Option<(&Value, &[IdentityId])>,
        affected: &[StoredUser],
    ) -> Result<(), ScimError> {
        futures_util::stream::iter(affected)
            .map(|member| self.remap_one(group, after, member))
            .buffer_unordered(REMAP_CONCURRENCY)
            .try_collect::<()>()
            .await
    }

    async fn remap_one(
        &self,
        group: GroupId,
        after: Option<(&Value, &[IdentityId])>,
        user: &StoredUser,
    ) -> Result<(), ScimError> {
        let mut memberships = self
            .store
            .groups_of(&self.provider.id, user.id)
            .await
            .map_err(store_error)?;
        memberships.retain(|m| m.group != group);
        if let Some((resource, members)) = after
            && members.contains(&user.id)
        {
            memberships.push(Membership {
                group,
                display_name: resource::display_name(resource)
                    .unwrap_or_default()
                    .to_owned(),
                external_id: resource::external_id(resource).map(str::to_owned),
            });
        }
        self.map_user(
            &user.resource,
            &scim_groups(&memberships),
            Current::ById(user.id),
        )
        .await?;
        Ok(())
    }

    fn stored_group(&self, id: GroupId, resource: &Value) -> StoredGroup {
        let now = SystemTime::now();
        let resource = without_members(resource);
        StoredGroup {
            provider: self.provider.id.clone(),
            id,
            display_name: resource::display_name(&resource)
                .unwrap_or_default()
                .to_owned(),
            external_id: resource::external_id(&resource).map(str::to_owned),
            resource,
            created: now,
            last_modified: now,
            version: 0,
        }
    }

    /// Writes group `id` as `resource` (with its members) after re-mapping whoever the change
    /// affects: the members added and removed, and every member when the name changed.
    /// `current` is the group as stored with its members (`None`: a new group).
    ///
    /// Only the users the change affects are read (one store call): a PATCH adding ten members
    /// to a large group reads ten users, not the whole group.
    async fn write_group(
        &self,
        id: GroupId,
        current: Option<(&StoredGroup, &[IdentityId])>,
        resource: &Value,
        expected: Option<u64>,
    ) -> Result<Value, ScimError> {
        let members = Self::member_ids(resource)?;
        let before: HashSet<IdentityId> = current
            .map(|(_, members)| members.iter().copied().collect())
            .unwrap_or_default();
        let after: HashSet<IdentityId> = members.iter().copied().collect();
        let mut next = self.stored_group(id, resource);
        if let Some((current, _)) = current {
            next.created = current.created;
        }
        let renamed = current.is_some_and(|(c, _)| {
            c.display_name != next.display_name || c.external_id != next.external_id
        });
        let added: Vec<IdentityId> = after.difference(&before).copied().collect();
        let mut wanted: Vec<IdentityId> = if renamed {
            members.clone()
        } else {
            added.clone()
        };
        wanted.extend(before.difference(&after));
        let affected = self
            .store
            .users(&self.provider.id, &wanted)
            .await
            .map_err(store_error)?;
        let known = |id: &IdentityId| affected.binary_search_by(|u| u.id.cmp(id)).is_ok();
        if let Some(missing) = members.iter().find(|m| !before.contains(m) && !known(m)) {
            return Err(unknown_member(&missing.to_string()));
        }
        // The name must be free before anyone is re-mapped into (or under) it.
        if current.is_none() || renamed {
            self.check_group_unique(&next, Some(id)).await?;
        }
        self.remap(id, Some((resource, &members)), &affected)
            .await?;
        let stored = self
            .store
            .put_group_with_members(&next, expected, &members, SystemTime::now())
            .await
            .map_err(store_error)?;
        let mut members = members;
        members.sort();
        members.dedup();
        Ok(self.group_with_members(&stored, &members))
    }

    /// `POST /Groups`.
    pub async fn create_group(&self, body: &Value) -> Result<Value, ScimError> {
        let resource = resource::validate(ResourceKind::Group, body)?;
        self.write_group(GroupId::random(), None, &resource, None)
            .await
    }

    pub async fn get_group(&self, id: &str) -> Result<Value, ScimError> {
        let group = self.load_group(id).await?;
        self.group_representation(&group).await
    }

    /// `PUT /Groups/{id}`.
    pub async fn replace_group(
        &self,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Value, ScimError> {
        let current = self.load_group(id).await?;
        let expected = Self::check_version(current.version, if_match)?;
        let resource = resource::validate(ResourceKind::Group, body)?;
        let members = self
            .store
            .members(&self.provider.id, current.id)
            .await
            .map_err(store_error)?;
        self.write_group(current.id, Some((&current, &members)), &resource, expected)
            .await
    }

    /// `PATCH /Groups/{id}`.
    pub async fn patch_group(
        &self,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Value, ScimError> {
        let current = self.load_group(id).await?;
        let expected = Self::check_version(current.version, if_match)?;
        let members = self
            .store
            .members(&self.provider.id, current.id)
            .await
            .map_err(store_error)?;
        let mut base = object(&current.resource);
        let values: Vec<Value> = members
            .iter()
            .map(|m| serde_json::json!({"value": m.to_string()}))
            .collect();
        base.insert("members".into(), Value::Array(values));
        let patched = apply_patch(
            ResourceKind::Group,
            &Value::Object(base),
            &current.id.to_string(),
            body,
        )?;
        if !patched.changed {
            return Ok(self.group_with_members(&current, &members));
        }
        self.write_group(
            current.id,
            Some((&current, &members)),
            &patched.resource,
            expected,
        )
        .await
    }

    /// `DELETE /Groups/{id}`: its former members are re-mapped without it first.
    pub async fn delete_group(&self, id: &str) -> Result<(), ScimError> {
        let group = self.load_group(id).await?;
        let members = self
            .store
            .members(&self.provider.id, group.id)
            .await
            .map_err(store_error)?;
        let users = self
            .store
            .users(&self.provider.id, &members)
            .await
            .map_err(store_error)?;
        self.remap(group.id, None, &users).await?;
        self.store
            .delete_group(&self.provider.id, group.id)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    // ----- Lists -----

    /// The full representations of `kind` the query's filter can match, in the store's stable
    /// order: an index lookup when the filter allows one (a superset), else every resource.
    async fn candidates(
        &self,
        kind: ResourceKind,
        query: &ListQuery,
    ) -> Result<Vec<Value>, ScimError> {
        let lookup = query.filter.as_ref().and_then(|f| f.index_lookup(kind));
        let provider = &self.provider.id;
        let mut out = match kind {
            ResourceKind::User => {
                let users = match lookup {
                    Some(l) => self
                        .store
                        .users_by(provider, l.key, &l.value)
                        .await
                        .map_err(store_error)?,
                    None => None,
                };
                let users = match users {
                    Some(users) => users,
                    None => self.store.all_users(provider).await.map_err(store_error)?,
                };
                self.represent_users(&users).await?
            }
            ResourceKind::Group => {
                let groups = match lookup {
                    Some(l) => self
                        .store
                        .groups_by(provider, l.key, &l.value)
                        .await
                        .map_err(store_error)?,
                    None => None,
                };
                let groups = match groups {
                    Some(groups) => groups,
                    None => self.store.all_groups(provider).await.map_err(store_error)?,
                };
                self.represent_groups(&groups).await?
            }
        };
        if let Some(filter) = &query.filter {
            out.retain(|resource| filter.matches(kind, resource));
        }
        Ok(out)
    }

    /// `GET /Users`, `GET /Groups`, `POST …/.search`; `kind` `None` is the root `/.search`
    /// (every type the filter applies to). Answers a `ListResponse`.
    pub async fn list(
        &self,
        kind: Option<ResourceKind>,
        query: &ListQuery,
    ) -> Result<Value, ScimError> {
        let kinds: Vec<ResourceKind> = match kind {
            Some(kind) => vec![kind],
            None => {
                let all = [ResourceKind::User, ResourceKind::Group];
                let fitting: Vec<ResourceKind> = all
                    .into_iter()
                    .filter(|k| query.filter.as_ref().is_none_or(|f| f.check(*k).is_ok()))
                    .collect();
                if fitting.is_empty()
                    && let Some(filter) = &query.filter
                {
                    filter.check(ResourceKind::User)?;
                }
                fitting
            }
        };
        if query.filter.is_none() {
            return self.list_all(&kinds, query).await;
        }
        let mut matched: Vec<(ResourceKind, Value)> = Vec::new();
        for kind in kinds {
            for resource in self.candidates(kind, query).await? {
                matched.push((kind, resource));
            }
        }
        let total = matched.len();
        let page: Vec<Value> = matched
            .into_iter()
            .skip(query.offset())
            .take(query.page_size())
            .map(|(kind, resource)| project(&query.projection, kind, &resource))
            .collect();
        Ok(list_response(total, query.start_index, page))
    }
}

impl<K: KratosAdmin> ScimService<'_, K> {
    /// A list without a filter: the store pages, so only the page's resources are read and
    /// represented, whatever the number of resources (users first, then groups, for the root
    /// `/.search`).
    async fn list_all(
        &self,
        kinds: &[ResourceKind],
        query: &ListQuery,
    ) -> Result<Value, ScimError> {
        let provider = &self.provider.id;
        let mut skip = query.offset() as u64;
        let mut room = query.page_size() as u64;
        let mut total: u64 = 0;
        let mut page = Vec::new();
        for kind in kinds {
            let (resources, count) = match kind {
                ResourceKind::User => {
                    let (users, count) = self
                        .store
                        .users_page(provider, skip, room)
                        .await
                        .map_err(store_error)?;
                    (self.represent_users(&users).await?, count)
                }
                ResourceKind::Group => {
                    let (groups, count) = self
                        .store
                        .groups_page(provider, skip, room)
                        .await
                        .map_err(store_error)?;
                    (self.represent_groups(&groups).await?, count)
                }
            };
            total += count;
            skip = skip.saturating_sub(count);
            room -= resources.len() as u64;
            page.extend(
                resources
                    .iter()
                    .map(|resource| project(&query.projection, *kind, resource)),
            );
        }
        Ok(list_response(
            usize::try_from(total).unwrap_or(usize::MAX),
            query.start_index,
            page,
        ))
    }
}

fn project(projection: &Projection, kind: ResourceKind, resource: &Value) -> Value {
    projection.apply(kind, resource)
}
