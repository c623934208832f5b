//! The SCIM store: the users, groups, memberships and filter index kratos-jit keeps for SCIM.
//!
//! Kratos holds the identities and stays their source of truth; Kratos has no groups, so the
//! SCIM side of each provider — the User and Group resources as the IdP sent them, which users
//! are members of which groups, and the index that answers `GET /Users?filter=userName eq "…"`
//! without scanning Kratos — lives here ([docs/scim.md §8.2](../../docs/scim.md)).
//!
//! [`Store`] is the port. Two back-ends implement it with the same tables and the same
//! semantics, and one test suite (`tests/store.rs`) runs against both:
//!
//! - [`sqlite`]: SQLite through `rusqlite` (bundled), the embedded default for `serve --dev` and
//!   single-node use (`sqlite::memory:` or `sqlite:<path>`);
//! - [`postgres`]: PostgreSQL through `tokio-postgres` without TLS (`postgres://…`), a small pool
//!   of connections that are reconnected when they drop.
//!
//! What every operation promises:
//!
//! - **Isolation.** Every operation takes the [`ProviderId`] first and every key of every table
//!   starts with it: a row of another provider is never returned, counted or changed, and a
//!   membership can only join a user and a group of the same provider (composite foreign keys).
//! - **Atomicity.** Each operation is one transaction: a user's delete takes its memberships
//!   with it; a membership change bumps the group's `version` and `last_modified` in the same
//!   transaction; a failed operation changes nothing, so the service's retry converges.
//! - **Uniqueness per provider**: `userName` (case-insensitively), a user's `externalId`, a
//!   group's `displayName` (case-insensitively) and a group's `externalId` →
//!   [`StoreError::Conflict`] naming the attribute.
//! - **Versions**: every write of a resource sets `version` to the previous one plus 1 (1 on
//!   insert); a write given an expected version that differs → [`StoreError::VersionMismatch`].
//! - **Faults**: every call has a timeout ([`CALL_TIMEOUT`]); a database that is down, slow or
//!   drops the connection is [`StoreError::Unavailable`] (the service answers 503), never a
//!   panic, and the next call reconnects.
//! - **Privacy**: error messages and logs carry no stored value (no userName, e-mail,
//!   externalId, display name) and never a password from a database URL.
//!
//! Migrations (`src/store/migrations/`, one SQL file per step and dialect) are applied at
//! [`Store::open`], in one transaction, recorded in `schema_migrations`; opening an up-to-date
//! database changes nothing.

pub mod postgres;
pub mod sqlite;

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::domain::{IdentityId, ProviderId};

/// How long one store call may take, connecting included, before it is
/// [`StoreError::Unavailable`].
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The attributes a store answers from an index rather than a scan: the SCIM core's, so that
/// a filter's [`crate::scim::IndexLookup`] reaches the store as it is.
pub use crate::scim::IndexKey;

/// A SCIM group id: kratos-jit makes it (a random UUID) when a group is created.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct GroupId(uuid::Uuid);

/// Why a string is not a [`GroupId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a SCIM group id (a UUID)")]
pub struct InvalidGroupId;

impl GroupId {
    /// A fresh, random group id.
    pub fn random() -> GroupId {
        GroupId(uuid::Uuid::new_v4())
    }

    pub fn new(id: uuid::Uuid) -> GroupId {
        GroupId(id)
    }

    pub fn uuid(&self) -> uuid::Uuid {
        self.0
    }
}

impl FromStr for GroupId {
    type Err = InvalidGroupId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::try_parse(s)
            .map(GroupId)
            .map_err(|_| InvalidGroupId)
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupId({})", self.0.hyphenated())
    }
}

/// A SCIM User of one provider, with the values the index holds.
///
/// On write the store derives its index from the fields, not from `resource`: the service sets
/// `user_name`, `external_id`, `emails` and `active` from the resource (piece A's helpers).
/// `created` is kept from the first write; `version` and `last_modified` as given are ignored on
/// write: the store sets `version`, and takes `last_modified` from the value given (the service's
/// clock), returning the row as stored.
#[derive(Clone, PartialEq)]
pub struct StoredUser {
    pub provider: ProviderId,
    /// The SCIM id, which is the Kratos identity id.
    pub id: IdentityId,
    /// The SCIM User as stored: no `meta`, no `groups` (both are made when answering).
    pub resource: Value,
    /// Unique per provider, compared case-insensitively.
    pub user_name: String,
    /// Unique per provider when present, compared exactly.
    pub external_id: Option<String>,
    /// The e-mail values, lower-cased, sorted and without duplicates as stored.
    pub emails: Vec<String>,
    pub active: bool,
    pub created: SystemTime,
    pub last_modified: SystemTime,
    /// 1 after the first write, +1 on every write (the ETag `W/"<version>"`).
    pub version: u64,
}

/// A SCIM Group of one provider. Its members are kept apart ([`Store::members`]).
#[derive(Clone, PartialEq)]
pub struct StoredGroup {
    pub provider: ProviderId,
    pub id: GroupId,
    /// The SCIM Group as stored: no `meta`, no `members`.
    pub resource: Value,
    /// Unique per provider, compared case-insensitively.
    pub display_name: String,
    /// Unique per provider when present, compared exactly.
    pub external_id: Option<String>,
    pub created: SystemTime,
    pub last_modified: SystemTime,
    /// 1 after the first write, +1 on every write and every membership change.
    pub version: u64,
}

// Stored values are personal data: Debug shows ids and versions only.
impl fmt::Debug for StoredUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredUser")
            .field("provider", &self.provider)
            .field("id", &self.id)
            .field("active", &self.active)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for StoredGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredGroup")
            .field("provider", &self.provider)
            .field("id", &self.id)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// One group a user is a member of, as a user's `groups` and the SCIM mapper's input show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Membership {
    pub group: GroupId,
    pub display_name: String,
    pub external_id: Option<String>,
}

impl fmt::Debug for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Membership")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

/// What a membership change actually changed: the members added and removed (each sorted),
/// for re-mapping exactly those users. Both empty: nothing changed, the group's version stays.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipChange {
    pub added: Vec<IdentityId>,
    pub removed: Vec<IdentityId>,
}

impl MembershipChange {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database is down, slow or failed: the service answers 503 and the client retries.
    #[error("the SCIM store is unavailable: {0}")]
    Unavailable(String),
    /// A unique attribute (`userName`, `externalId`, `displayName`) is already held by another
    /// resource of the same provider: SCIM 409 `uniqueness`.
    #[error("another resource of this provider already has this {what}")]
    Conflict { what: &'static str },
    /// The resource's version is not the expected one: SCIM 412 (`If-Match`).
    #[error("the resource was changed since the version given (If-Match)")]
    VersionMismatch,
    /// The user or group does not exist for this provider: SCIM 404.
    #[error("no such {what} for this provider")]
    NotFound { what: &'static str },
    /// A member id that is not a user of the same provider: SCIM 400 `invalidValue` (or 404).
    /// Nothing was changed.
    #[error("member {0} is not a user of this provider")]
    UnknownMember(IdentityId),
}

/// Why [`Store::open`] failed. The message never holds the URL's password.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "the store URL {url} is not supported: it must be `sqlite::memory:`, `sqlite:<path>` or `postgres://user@host:port/database`"
    )]
    UnknownScheme { url: String },
    #[error("the store URL {url} is not valid: {problem}")]
    InvalidUrl { url: String, problem: String },
    #[error("could not open the store at {url}: {problem}")]
    Unreachable { url: String, problem: String },
    #[error("could not migrate the store at {url}: {problem}")]
    Migration { url: String, problem: String },
}

/// One migration step: its number, its name, and its SQL per dialect.
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

/// Every migration, in order. A step, once released, is never edited: add a new one.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "scim",
        sqlite: include_str!("migrations/0001_scim.sqlite.sql"),
        postgres: include_str!("migrations/0001_scim.postgres.sql"),
    },
    Migration {
        version: 2,
        name: "lookup_indexes",
        sqlite: include_str!("migrations/0002_lookup_indexes.sqlite.sql"),
        postgres: include_str!("migrations/0002_lookup_indexes.postgres.sql"),
    },
];

/// The SCIM store: one of the two back-ends. Cheap to clone (the back-ends share their
/// connections), `Send + Sync`.
#[derive(Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PostgresStore),
}

macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        // A store call is a dependency's time in `Server-Timing` (`scim.server_timing`).
        crate::timing::waiting(async {
            match $self {
                Store::Sqlite(store) => store.$method($($arg),*).await,
                Store::Postgres(store) => store.$method($($arg),*).await,
            }
        })
        .await
    };
}

impl Store {
    /// Opens the store at `url` and applies the migrations it lacks:
    /// `sqlite::memory:` (a private in-memory database), `sqlite:<path>` (a file, created if
    /// missing) or `postgres://user[:password]@host[:port]/database` (no TLS: loopback or a
    /// private network).
    pub async fn open(url: &str) -> Result<Store, OpenError> {
        if let Some(rest) = url.strip_prefix("sqlite:") {
            sqlite::SqliteStore::open(rest).await.map(Store::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            postgres::PostgresStore::open(url)
                .await
                .map(Store::Postgres)
        } else {
            Err(OpenError::UnknownScheme {
                url: redact_url(url),
            })
        }
    }

    /// `"sqlite"` or `"postgres"`, for logs.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// A `SELECT 1` on a connection of the store (readiness, [`crate::health`]): `Ok` when
    /// the database answers, [`StoreError::Unavailable`] otherwise.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(store) => store.ping().await,
            Store::Postgres(store) => store.ping().await,
        }
    }

    // ---- users ----

    /// The user `id` of `provider`, if it exists.
    pub async fn user(
        &self,
        provider: &ProviderId,
        id: IdentityId,
    ) -> Result<Option<StoredUser>, StoreError> {
        dispatch!(self.user(provider, id))
    }

    /// The users of `provider` among `ids` (those that exist), sorted by id: one call for a
    /// group change's members.
    pub async fn users(
        &self,
        provider: &ProviderId,
        ids: &[IdentityId],
    ) -> Result<Vec<StoredUser>, StoreError> {
        dispatch!(self.users(provider, ids))
    }

    /// The users of `provider` whose `key` equals `value` (case-insensitively for
    /// [`IndexKey::UserName`] and [`IndexKey::Email`]), from an index. `None` when `key` is not
    /// an index of users ([`IndexKey::DisplayName`], [`IndexKey::Member`]): the service scans.
    pub async fn users_by(
        &self,
        provider: &ProviderId,
        key: IndexKey,
        value: &str,
    ) -> Result<Option<Vec<StoredUser>>, StoreError> {
        dispatch!(self.users_by(provider, key, value))
    }

    /// One page of the users of `provider` in a stable order (creation, then id), and how many
    /// there are in all.
    pub async fn users_page(
        &self,
        provider: &ProviderId,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<StoredUser>, u64), StoreError> {
        dispatch!(self.users_page(provider, offset, limit))
    }

    /// Every user of `provider` in the order of [`Store::users_page`], for filters no index
    /// answers.
    pub async fn all_users(&self, provider: &ProviderId) -> Result<Vec<StoredUser>, StoreError> {
        dispatch!(self.all_users(provider))
    }

    pub async fn count_users(&self, provider: &ProviderId) -> Result<u64, StoreError> {
        dispatch!(self.count_users(provider))
    }

    /// Inserts or replaces `user` (of `user.provider`) and returns it as stored. With
    /// `expected_version`, the user must exist with that version ([`StoreError::NotFound`],
    /// [`StoreError::VersionMismatch`]).
    pub async fn put_user(
        &self,
        user: &StoredUser,
        expected_version: Option<u64>,
    ) -> Result<StoredUser, StoreError> {
        dispatch!(self.put_user(user, expected_version))
    }

    /// Removes the user and its memberships (bumping those groups' versions), in one
    /// transaction. Returns the groups it was a member of.
    pub async fn delete_user(
        &self,
        provider: &ProviderId,
        id: IdentityId,
    ) -> Result<Vec<GroupId>, StoreError> {
        dispatch!(self.delete_user(provider, id))
    }

    // ---- groups ----

    pub async fn group(
        &self,
        provider: &ProviderId,
        id: GroupId,
    ) -> Result<Option<StoredGroup>, StoreError> {
        dispatch!(self.group(provider, id))
    }

    /// The groups of `provider` whose `key` equals `value` ([`IndexKey::DisplayName`]
    /// case-insensitively; [`IndexKey::Member`]: the groups having the user id `value` as a
    /// member). `None` when `key` is not an index of groups.
    pub async fn groups_by(
        &self,
        provider: &ProviderId,
        key: IndexKey,
        value: &str,
    ) -> Result<Option<Vec<StoredGroup>>, StoreError> {
        dispatch!(self.groups_by(provider, key, value))
    }

    pub async fn groups_page(
        &self,
        provider: &ProviderId,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<StoredGroup>, u64), StoreError> {
        dispatch!(self.groups_page(provider, offset, limit))
    }

    pub async fn all_groups(&self, provider: &ProviderId) -> Result<Vec<StoredGroup>, StoreError> {
        dispatch!(self.all_groups(provider))
    }

    pub async fn count_groups(&self, provider: &ProviderId) -> Result<u64, StoreError> {
        dispatch!(self.count_groups(provider))
    }

    /// Inserts or replaces `group` (its resource and index, not its members) and returns it as
    /// stored; `expected_version` as for [`Store::put_user`].
    pub async fn put_group(
        &self,
        group: &StoredGroup,
        expected_version: Option<u64>,
    ) -> Result<StoredGroup, StoreError> {
        dispatch!(self.put_group(group, expected_version))
    }

    /// Writes `group` as [`Store::put_group`] does and makes `members` its members, in one
    /// transaction: a failure leaves both as they were. Returns the group as stored, its
    /// version bumped once more when the members changed.
    pub async fn put_group_with_members(
        &self,
        group: &StoredGroup,
        expected_version: Option<u64>,
        members: &[IdentityId],
        now: SystemTime,
    ) -> Result<StoredGroup, StoreError> {
        dispatch!(self.put_group_with_members(group, expected_version, members, now))
    }

    /// Removes the group and its memberships; returns its former members (for re-mapping).
    pub async fn delete_group(
        &self,
        provider: &ProviderId,
        id: GroupId,
    ) -> Result<Vec<IdentityId>, StoreError> {
        dispatch!(self.delete_group(provider, id))
    }

    // ---- memberships ----

    /// The members of the group, sorted by id. [`StoreError::NotFound`] if there is no such
    /// group.
    pub async fn members(
        &self,
        provider: &ProviderId,
        group: GroupId,
    ) -> Result<Vec<IdentityId>, StoreError> {
        dispatch!(self.members(provider, group))
    }

    /// Makes `members` the group's members (PUT, PATCH replace).
    pub async fn set_members(
        &self,
        provider: &ProviderId,
        group: GroupId,
        members: &[IdentityId],
        now: SystemTime,
    ) -> Result<MembershipChange, StoreError> {
        dispatch!(self.change_members(provider, group, MemberOp::Set, members, now))
    }

    /// Adds `members` to the group; those already members are left as they are.
    pub async fn add_members(
        &self,
        provider: &ProviderId,
        group: GroupId,
        members: &[IdentityId],
        now: SystemTime,
    ) -> Result<MembershipChange, StoreError> {
        dispatch!(self.change_members(provider, group, MemberOp::Add, members, now))
    }

    /// Removes `members` from the group; ids that are not members are ignored (never an error:
    /// Entra's removal of a member already gone converges).
    pub async fn remove_members(
        &self,
        provider: &ProviderId,
        group: GroupId,
        members: &[IdentityId],
        now: SystemTime,
    ) -> Result<MembershipChange, StoreError> {
        dispatch!(self.change_members(provider, group, MemberOp::Remove, members, now))
    }

    /// The groups the user is a member of, sorted by display name then id.
    pub async fn groups_of(
        &self,
        provider: &ProviderId,
        user: IdentityId,
    ) -> Result<Vec<Membership>, StoreError> {
        dispatch!(self.groups_of(provider, user))
    }
}

/// What a membership change does, shared by both back-ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemberOp {
    Set,
    Add,
    Remove,
}

impl MemberOp {
    /// What `self` changes, given the current members and the ids named (both sorted, deduplicated).
    pub(crate) fn plan(self, current: &[IdentityId], named: &[IdentityId]) -> MembershipChange {
        let added = match self {
            MemberOp::Set | MemberOp::Add => named
                .iter()
                .filter(|id| current.binary_search(id).is_err())
                .copied()
                .collect(),
            MemberOp::Remove => Vec::new(),
        };
        let removed = match self {
            MemberOp::Set => current
                .iter()
                .filter(|id| named.binary_search(id).is_err())
                .copied()
                .collect(),
            MemberOp::Remove => named
                .iter()
                .filter(|id| current.binary_search(id).is_ok())
                .copied()
                .collect(),
            MemberOp::Add => Vec::new(),
        };
        MembershipChange { added, removed }
    }
}

/// Sorted, without duplicates.
pub(crate) fn sorted_ids(ids: &[IdentityId]) -> Vec<IdentityId> {
    let mut ids = ids.to_vec();
    ids.sort();
    ids.dedup();
    ids
}

/// The lower-cased, sorted, deduplicated e-mail index of a user.
pub(crate) fn email_index(emails: &[String]) -> Vec<String> {
    let mut emails: Vec<String> = emails.iter().map(|e| e.to_lowercase()).collect();
    emails.sort();
    emails.dedup();
    emails
}

/// A time as stored: microseconds since the Unix epoch (times before it are stored as 0).
pub(crate) fn to_micros(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn from_micros(micros: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(u64::try_from(micros).unwrap_or(0))
}

/// Which attribute a unique index guards, from the index's name as the migrations give it.
pub(crate) fn conflict_of(index_or_columns: &str) -> Option<&'static str> {
    if index_or_columns.contains("user_name") {
        Some("userName")
    } else if index_or_columns.contains("display_name") {
        Some("displayName")
    } else if index_or_columns.contains("external_id") {
        Some("externalId")
    } else if index_or_columns.contains("pkey") || index_or_columns.contains(".id") {
        Some("id")
    } else {
        None
    }
}

/// `url` with its password, if any, replaced by `***`: the form every message shows.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.chars().take(200).collect();
    };
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{user_info}@{host}"),
        },
        None => authority.to_owned(),
    };
    // A password may also come as a query parameter (`?password=…`).
    let path = match path.find("password=") {
        Some(at) => format!("{}password=***", &path[..at]),
        None => path.to_owned(),
    };
    format!("{scheme}://{authority}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: &[u128]) -> Vec<IdentityId> {
        n.iter()
            .map(|n| IdentityId::new(uuid::Uuid::from_u128(*n)))
            .collect()
    }

    #[test]
    fn a_store_can_be_shared_between_threads() {
        fn shared<T: Send + Sync + Clone + 'static>() {}
        shared::<Store>();
    }

    #[test]
    fn a_url_never_shows_its_password() {
        assert_eq!(
            redact_url("postgres://kjit:s3cret@db:5432/kjit"),
            "postgres://kjit:***@db:5432/kjit"
        );
        assert_eq!(
            redact_url("postgres://kjit@db/kjit?password=s3cret"),
            "postgres://kjit@db/kjit?password=***"
        );
        assert_eq!(
            redact_url("postgres://db:5432/kjit"),
            "postgres://db:5432/kjit"
        );
        assert!(!redact_url("mysql://u:s3cret@h/d").contains("s3cret"));
    }

    #[test]
    fn a_membership_plan_names_only_what_changes() {
        let current = ids(&[1, 2, 3]);
        assert_eq!(
            MemberOp::Set.plan(&current, &ids(&[2, 4])),
            MembershipChange {
                added: ids(&[4]),
                removed: ids(&[1, 3])
            }
        );
        assert_eq!(
            MemberOp::Add.plan(&current, &ids(&[3, 5])),
            MembershipChange {
                added: ids(&[5]),
                removed: vec![]
            }
        );
        assert_eq!(
            MemberOp::Remove.plan(&current, &ids(&[2, 9])),
            MembershipChange {
                added: vec![],
                removed: ids(&[2])
            }
        );
    }

    #[test]
    fn times_survive_the_round_trip_at_microsecond_precision() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(from_micros(to_micros(t)), t);
        assert_eq!(to_micros(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }

    #[test]
    fn unique_index_names_map_to_the_scim_attribute() {
        assert_eq!(conflict_of("scim_users_user_name"), Some("userName"));
        assert_eq!(
            conflict_of("scim_users.provider, scim_users.external_id"),
            Some("externalId")
        );
        assert_eq!(conflict_of("scim_groups_display_name"), Some("displayName"));
    }
}
