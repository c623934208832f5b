//! The SQLite back-end of the [`Store`](super::Store): the embedded default.
//!
//! One connection, behind a mutex, used from `spawn_blocking`: SQLite has one writer at a time
//! anyway, and `:memory:` is private to its connection. A file database runs in WAL mode with
//! foreign keys on. A call that outlives [`CALL_TIMEOUT`](super::CALL_TIMEOUT) is answered as
//! unavailable; its blocking work still finishes (or rolls back) on its own thread.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rusqlite::{
    Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior, params,
};

use super::{
    CALL_TIMEOUT, GroupId, IndexKey, MIGRATIONS, MemberOp, Membership, MembershipChange, OpenError,
    StoreError, StoredGroup, StoredUser, conflict_of, email_index, from_micros, sorted_ids,
    to_micros,
};
use crate::domain::{IdentityId, ProviderId};

/// The SQLite store. Clones share the connection.
#[derive(Clone)]
pub struct SqliteStore {
    connection: Arc<Mutex<Connection>>,
}

/// A failed step inside a call: a store answer, or SQLite's own error.
enum Fail {
    Store(StoreError),
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for Fail {
    fn from(error: rusqlite::Error) -> Self {
        Fail::Sqlite(error)
    }
}

impl From<StoreError> for Fail {
    fn from(error: StoreError) -> Self {
        Fail::Store(error)
    }
}

impl From<serde_json::Error> for Fail {
    fn from(error: serde_json::Error) -> Self {
        Fail::Store(StoreError::Unavailable(format!(
            "a stored JSON value does not parse: {error}"
        )))
    }
}

fn store_error(fail: Fail) -> StoreError {
    match fail {
        Fail::Store(error) => error,
        Fail::Sqlite(error) => {
            if let rusqlite::Error::SqliteFailure(code, Some(message)) = &error
                && code.code == ErrorCode::ConstraintViolation
                && let Some(what) = conflict_of(message)
            {
                return StoreError::Conflict { what };
            }
            // SQLite's messages name tables and columns, never a bound value.
            StoreError::Unavailable(format!("SQLite: {error}"))
        }
    }
}

type Result<T> = std::result::Result<T, Fail>;

const USER_COLUMNS: &str =
    "id, resource, user_name, external_id, emails, active, created_us, modified_us, version";
const GROUP_COLUMNS: &str =
    "id, resource, display_name, external_id, created_us, modified_us, version";

impl SqliteStore {
    /// `location` is what follows `sqlite:` in the URL: `:memory:` or a file path.
    pub(super) async fn open(location: &str) -> std::result::Result<SqliteStore, OpenError> {
        let url = format!("sqlite:{location}");
        let location = location.to_owned();
        let opened =
            tokio::task::spawn_blocking(move || -> std::result::Result<Connection, OpenError> {
                let unreachable = |error: rusqlite::Error| OpenError::Unreachable {
                    url: format!("sqlite:{location}"),
                    problem: error.to_string(),
                };
                if location.is_empty() {
                    return Err(OpenError::InvalidUrl {
                        url: "sqlite:".into(),
                        problem:
                            "no path after `sqlite:` (use `sqlite::memory:` or `sqlite:<path>`)"
                                .into(),
                    });
                }
                let mut connection = if location == ":memory:" {
                    Connection::open_in_memory().map_err(unreachable)?
                } else {
                    let connection = Connection::open(&location).map_err(unreachable)?;
                    connection
                        .pragma_update(None, "journal_mode", "WAL")
                        .map_err(unreachable)?;
                    connection
                        .pragma_update(None, "synchronous", "NORMAL")
                        .map_err(unreachable)?;
                    connection
                };
                connection
                    .pragma_update(None, "foreign_keys", "ON")
                    .map_err(unreachable)?;
                connection.busy_timeout(CALL_TIMEOUT).map_err(unreachable)?;
                migrate(&mut connection).map_err(|error| OpenError::Migration {
                    url: format!("sqlite:{location}"),
                    problem: error.to_string(),
                })?;
                Ok(connection)
            })
            .await
            .map_err(|error| OpenError::Unreachable {
                url: url.clone(),
                problem: error.to_string(),
            })??;
        Ok(SqliteStore {
            connection: Arc::new(Mutex::new(opened)),
        })
    }

    /// Runs `op` on the connection, on a blocking thread, within the call timeout.
    async fn with<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> std::result::Result<T, StoreError> {
        let connection = Arc::clone(&self.connection);
        let task = tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().map_err(|_| {
                Fail::Store(StoreError::Unavailable(
                    "the SQLite connection was poisoned by an earlier panic".into(),
                ))
            })?;
            op(&mut connection)
        });
        match tokio::time::timeout(CALL_TIMEOUT, task).await {
            Err(_) => Err(StoreError::Unavailable(format!(
                "SQLite did not answer within {CALL_TIMEOUT:?}"
            ))),
            Ok(Err(join)) => Err(StoreError::Unavailable(format!(
                "the SQLite call failed: {join}"
            ))),
            Ok(Ok(result)) => result.map_err(store_error),
        }
    }

    /// Runs `op` in an immediate (write-locking) transaction, committed when `op` succeeds.
    async fn write<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    ) -> std::result::Result<T, StoreError> {
        self.with(move |connection| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = op(&tx)?;
            tx.commit()?;
            Ok(value)
        })
        .await
    }

    pub(super) async fn ping(&self) -> std::result::Result<(), StoreError> {
        self.with(|c| {
            c.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    pub(super) async fn user(
        &self,
        provider: &ProviderId,
        id: IdentityId,
    ) -> std::result::Result<Option<StoredUser>, StoreError> {
        let provider = provider.clone();
        self.with(move |c| user_row(c, &provider, id)).await
    }

    pub(super) async fn users(
        &self,
        provider: &ProviderId,
        ids: &[IdentityId],
    ) -> std::result::Result<Vec<StoredUser>, StoreError> {
        let provider = provider.clone();
        let ids = sorted_ids(ids);
        self.with(move |c| {
            let mut users = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(user) = user_row(c, &provider, id)? {
                    users.push(user);
                }
            }
            Ok(users)
        })
        .await
    }

    pub(super) async fn users_by(
        &self,
        provider: &ProviderId,
        key: IndexKey,
        value: &str,
    ) -> std::result::Result<Option<Vec<StoredUser>>, StoreError> {
        let (sql, value) = match user_lookup(key, value) {
            Lookup::NoIndex => return Ok(None),
            Lookup::NoMatch => return Ok(Some(Vec::new())),
            Lookup::Query(sql, value) => (sql, value),
        };
        let provider = provider.clone();
        self.with(move |c| {
            let mut statement = c.prepare_cached(&sql)?;
            let rows = statement.query_map(params![provider.as_str(), value], user_columns)?;
            rows.map(|row| row?.into_user(&provider))
                .collect::<Result<Vec<_>>>()
        })
        .await
        .map(Some)
    }

    pub(super) async fn users_page(
        &self,
        provider: &ProviderId,
        offset: u64,
        limit: u64,
    ) -> std::result::Result<(Vec<StoredUser>, u64), StoreError> {
        let provider = provider.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let total = count(&tx, "scim_users", &provider)?;
            let users = users_range(&tx, &provider, offset, limit)?;
            Ok((users, total))
        })
        .await
    }

    pub(super) async fn all_users(
        &self,
        provider: &ProviderId,
    ) -> std::result::Result<Vec<StoredUser>, StoreError> {
        let provider = provider.clone();
        self.with(move |c| users_range(c, &provider, 0, u64::MAX))
            .await
    }

    pub(super) async fn count_users(
        &self,
        provider: &ProviderId,
    ) -> std::result::Result<u64, StoreError> {
        let provider = provider.clone();
        self.with(move |c| count(c, "scim_users", &provider)).await
    }

    pub(super) async fn put_user(
        &self,
        user: &StoredUser,
        expected_version: Option<u64>,
    ) -> std::result::Result<StoredUser, StoreError> {
        let mut user = user.clone();
        self.write(move |tx| {
            let provider = user.provider.as_str();
            let id = user.id.to_string();
            let existing: Option<(i64, i64)> = tx
                .query_row(
                    "SELECT version, created_us FROM scim_users WHERE provider = ?1 AND id = ?2",
                    params![provider, id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            let (version, created) = next_version(existing, expected_version, "user")?;
            let created = created.unwrap_or(to_micros(user.created));
            user.emails = email_index(&user.emails);
            tx.execute(
                "INSERT INTO scim_users (provider, id, resource, user_name, user_name_lower, external_id, emails, active, created_us, modified_us, version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (provider, id) DO UPDATE SET resource = excluded.resource,
                   user_name = excluded.user_name, user_name_lower = excluded.user_name_lower,
                   external_id = excluded.external_id, emails = excluded.emails,
                   active = excluded.active, modified_us = excluded.modified_us,
                   version = excluded.version",
                params![
                    provider,
                    id,
                    serde_json::to_string(&user.resource)?,
                    user.user_name,
                    user.user_name.to_lowercase(),
                    user.external_id,
                    serde_json::to_string(&user.emails)?,
                    user.active,
                    created,
                    to_micros(user.last_modified),
                    version,
                ],
            )?;
            tx.execute(
                "DELETE FROM scim_user_emails WHERE provider = ?1 AND user_id = ?2",
                params![provider, id],
            )?;
            for email in &user.emails {
                tx.execute(
                    "INSERT INTO scim_user_emails (provider, user_id, email_lower) VALUES (?1, ?2, ?3)",
                    params![provider, id, email],
                )?;
            }
            user.created = from_micros(created);
            user.last_modified = from_micros(to_micros(user.last_modified));
            user.version = version as u64;
            Ok(user)
        })
        .await
    }

    pub(super) async fn delete_user(
        &self,
        provider: &ProviderId,
        id: IdentityId,
    ) -> std::result::Result<Vec<GroupId>, StoreError> {
        let provider = provider.clone();
        self.write(move |tx| {
            let p = provider.as_str();
            let id = id.to_string();
            let groups: Vec<String> = {
                let mut statement = tx.prepare_cached(GROUP_IDS_OF)?;
                statement
                    .query_map(params![p, id], |row| row.get(0))?
                    .collect::<rusqlite::Result<_>>()?
            };
            let deleted = tx.execute(
                "DELETE FROM scim_users WHERE provider = ?1 AND id = ?2",
                params![p, id],
            )?;
            if deleted == 0 {
                return Err(StoreError::NotFound { what: "user" }.into());
            }
            let now = to_micros(SystemTime::now());
            groups
                .iter()
                .map(|group| {
                    bump_group(tx, p, group, now)?;
                    parse_group_id(group)
                })
                .collect()
        })
        .await
    }

    // ---- groups ----

    pub(super) async fn group(
        &self,
        provider: &ProviderId,
        id: GroupId,
    ) -> std::result::Result<Option<StoredGroup>, StoreError> {
        let provider = provider.clone();
        self.with(move |c| group_row(c, &provider, id)).await
    }

    pub(super) async fn groups_by(
        &self,
        provider: &ProviderId,
        key: IndexKey,
        value: &str,
    ) -> std::result::Result<Option<Vec<StoredGroup>>, StoreError> {
        let (sql, value) = match group_lookup(key, value) {
            Lookup::NoIndex => return Ok(None),
            Lookup::NoMatch => return Ok(Some(Vec::new())),
            Lookup::Query(sql, value) => (sql, value),
        };
        let provider = provider.clone();
        self.with(move |c| {
            let mut statement = c.prepare_cached(&sql)?;
            let rows = statement.query_map(params![provider.as_str(), value], group_columns)?;
            rows.map(|row| row?.into_group(&provider))
                .collect::<Result<Vec<_>>>()
        })
        .await
        .map(Some)
    }

    pub(super) async fn groups_page(
        &self,
        provider: &ProviderId,
        offset: u64,
        limit: u64,
    ) -> std::result::Result<(Vec<StoredGroup>, u64), StoreError> {
        let provider = provider.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let total = count(&tx, "scim_groups", &provider)?;
            let groups = groups_range(&tx, &provider, offset, limit)?;
            Ok((groups, total))
        })
        .await
    }

    pub(super) async fn all_groups(
        &self,
        provider: &ProviderId,
    ) -> std::result::Result<Vec<StoredGroup>, StoreError> {
        let provider = provider.clone();
        self.with(move |c| groups_range(c, &provider, 0, u64::MAX))
            .await
    }

    pub(super) async fn count_groups(
        &self,
        provider: &ProviderId,
    ) -> std::result::Result<u64, StoreError> {
        let provider = provider.clone();
        self.with(move |c| count(c, "scim_groups", &provider)).await
    }

    pub(super) async fn put_group(
        &self,
        group: &StoredGroup,
        expected_version: Option<u64>,
    ) -> std::result::Result<StoredGroup, StoreError> {
        let mut group = group.clone();
        self.write(move |tx| {
            put_group_in(tx, &mut group, expected_version)?;
            Ok(group)
        })
        .await
    }

    pub(super) async fn put_group_with_members(
        &self,
        group: &StoredGroup,
        expected_version: Option<u64>,
        members: &[IdentityId],
        now: SystemTime,
    ) -> std::result::Result<StoredGroup, StoreError> {
        let mut group = group.clone();
        let named = sorted_ids(members);
        self.write(move |tx| {
            put_group_in(tx, &mut group, expected_version)?;
            let (p, g) = (group.provider.clone(), group.id);
            let change = change_members_in(tx, p.as_str(), g, MemberOp::Set, &named, now)?;
            if change.is_empty() {
                return Ok(group);
            }
            // The membership change bumped the version once more.
            group_row(tx, &p, g)?.ok_or_else(|| StoreError::NotFound { what: "group" }.into())
        })
        .await
    }

    pub(super) async fn delete_group(
        &self,
        provider: &ProviderId,
        id: GroupId,
    ) -> std::result::Result<Vec<IdentityId>, StoreError> {
        let provider = provider.clone();
        self.write(move |tx| {
            let members = member_ids(tx, provider.as_str(), &id.to_string())?;
            let deleted = tx.execute(
                "DELETE FROM scim_groups WHERE provider = ?1 AND id = ?2",
                params![provider.as_str(), id.to_string()],
            )?;
            if deleted == 0 {
                return Err(StoreError::NotFound { what: "group" }.into());
            }
            Ok(members)
        })
        .await
    }

    // ---- memberships ----

    pub(super) async fn members(
        &self,
        provider: &ProviderId,
        group: GroupId,
    ) -> std::result::Result<Vec<IdentityId>, StoreError> {
        let provider = provider.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            require_group(&tx, provider.as_str(), &group.to_string())?;
            member_ids(&tx, provider.as_str(), &group.to_string())
        })
        .await
    }

    pub(super) async fn change_members(
        &self,
        provider: &ProviderId,
        group: GroupId,
        op: MemberOp,
        members: &[IdentityId],
        now: SystemTime,
    ) -> std::result::Result<MembershipChange, StoreError> {
        let provider = provider.clone();
        let named = sorted_ids(members);
        self.write(move |tx| change_members_in(tx, provider.as_str(), group, op, &named, now))
            .await
    }

    pub(super) async fn groups_of(
        &self,
        provider: &ProviderId,
        user: IdentityId,
    ) -> std::result::Result<Vec<Membership>, StoreError> {
        let provider = provider.clone();
        self.with(move |c| {
            let mut statement = c.prepare_cached(GROUPS_OF)?;
            let rows =
                statement.query_map(params![provider.as_str(), user.to_string()], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, Option<String>>(2)?,
                    ))
                })?;
            rows.map(|row| {
                let (group, display_name, external_id) = row?;
                Ok(Membership {
                    group: parse_group_id(&group)?,
                    display_name,
                    external_id,
                })
            })
            .collect()
        })
        .await
    }
}

/// Inserts or replaces `group` (not its members) in `tx`, setting its version and times as
/// stored.
fn put_group_in(
    tx: &Transaction<'_>,
    group: &mut StoredGroup,
    expected_version: Option<u64>,
) -> Result<()> {
    let provider = group.provider.as_str();
    let id = group.id.to_string();
    let existing: Option<(i64, i64)> = tx
        .query_row(
            "SELECT version, created_us FROM scim_groups WHERE provider = ?1 AND id = ?2",
            params![provider, id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let (version, created) = next_version(existing, expected_version, "group")?;
    let created = created.unwrap_or(to_micros(group.created));
    tx.execute(
        "INSERT INTO scim_groups (provider, id, resource, display_name, display_name_lower, external_id, created_us, modified_us, version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (provider, id) DO UPDATE SET resource = excluded.resource,
           display_name = excluded.display_name, display_name_lower = excluded.display_name_lower,
           external_id = excluded.external_id, modified_us = excluded.modified_us,
           version = excluded.version",
        params![
            provider,
            id,
            serde_json::to_string(&group.resource)?,
            group.display_name,
            group.display_name.to_lowercase(),
            group.external_id,
            created,
            to_micros(group.last_modified),
            version,
        ],
    )?;
    group.created = from_micros(created);
    group.last_modified = from_micros(to_micros(group.last_modified));
    group.version = version as u64;
    Ok(())
}

/// Applies `op` with the (sorted, deduplicated) ids `named` to the members of `group` in `tx`.
fn change_members_in(
    tx: &Transaction<'_>,
    p: &str,
    group: GroupId,
    op: MemberOp,
    named: &[IdentityId],
    now: SystemTime,
) -> Result<MembershipChange> {
    let g = group.to_string();
    require_group(tx, p, &g)?;
    if op != MemberOp::Remove {
        let mut exists =
            tx.prepare_cached("SELECT 1 FROM scim_users WHERE provider = ?1 AND id = ?2")?;
        for member in named {
            if !exists.exists(params![p, member.to_string()])? {
                return Err(StoreError::UnknownMember(*member).into());
            }
        }
    }
    let current = member_ids(tx, p, &g)?;
    let change = op.plan(&current, named);
    for member in &change.added {
        tx.execute(
            "INSERT INTO scim_memberships (provider, group_id, user_id) VALUES (?1, ?2, ?3)",
            params![p, g, member.to_string()],
        )?;
    }
    for member in &change.removed {
        tx.execute(
            "DELETE FROM scim_memberships WHERE provider = ?1 AND group_id = ?2 AND user_id = ?3",
            params![p, g, member.to_string()],
        )?;
    }
    if !change.is_empty() {
        bump_group(tx, p, &g, to_micros(now))?;
    }
    Ok(change)
}

/// An index lookup's SQL, with the value bound as `?2` (the provider is `?1`).
enum Lookup {
    /// The attribute has no index on this kind of resource: the service scans.
    NoIndex,
    /// The value cannot be anyone's (an id that is not a UUID).
    NoMatch,
    Query(String, String),
}

// Every lookup reads only the rows it returns. Where one starts from a side table (the e-mail
// index, the memberships), CROSS JOIN fixes that order: without statistics SQLite's planner
// would rather walk all of the provider's users or groups in creation order to spare the sort,
// which made a filter's cost grow with the store. `tests::every_lookup_reads_only_its_rows`
// holds every query here to its plan.

fn user_lookup(key: IndexKey, value: &str) -> Lookup {
    let query = |from_where: &str, value: String| {
        Lookup::Query(
            format!("SELECT {USER_COLUMNS} {from_where} ORDER BY created_us, id"),
            value,
        )
    };
    match key {
        IndexKey::Id => match value.parse::<IdentityId>() {
            Ok(id) => query(
                "FROM scim_users WHERE provider = ?1 AND id = ?2",
                id.to_string(),
            ),
            Err(_) => Lookup::NoMatch,
        },
        IndexKey::UserName => query(
            "FROM scim_users WHERE provider = ?1 AND user_name_lower = ?2",
            value.to_lowercase(),
        ),
        IndexKey::ExternalId => query(
            "FROM scim_users WHERE provider = ?1 AND external_id = ?2",
            value.to_owned(),
        ),
        IndexKey::Email => query(
            "FROM scim_user_emails e CROSS JOIN scim_users u
               ON u.provider = e.provider AND u.id = e.user_id
             WHERE e.provider = ?1 AND e.email_lower = ?2",
            value.to_lowercase(),
        ),
        IndexKey::DisplayName | IndexKey::Member => Lookup::NoIndex,
    }
}

fn group_lookup(key: IndexKey, value: &str) -> Lookup {
    let query = |from_where: &str, value: String| {
        Lookup::Query(
            format!("SELECT {GROUP_COLUMNS} {from_where} ORDER BY created_us, id"),
            value,
        )
    };
    match key {
        IndexKey::Id => match value.parse::<GroupId>() {
            Ok(id) => query(
                "FROM scim_groups WHERE provider = ?1 AND id = ?2",
                id.to_string(),
            ),
            Err(_) => Lookup::NoMatch,
        },
        IndexKey::DisplayName => query(
            "FROM scim_groups WHERE provider = ?1 AND display_name_lower = ?2",
            value.to_lowercase(),
        ),
        IndexKey::ExternalId => query(
            "FROM scim_groups WHERE provider = ?1 AND external_id = ?2",
            value.to_owned(),
        ),
        IndexKey::Member => match value.parse::<IdentityId>() {
            Ok(id) => query(
                "FROM scim_memberships m CROSS JOIN scim_groups g
                   ON g.provider = m.provider AND g.id = m.group_id
                 WHERE m.provider = ?1 AND m.user_id = ?2",
                id.to_string(),
            ),
            Err(_) => Lookup::NoMatch,
        },
        IndexKey::UserName | IndexKey::Email => Lookup::NoIndex,
    }
}

/// The groups of a user (`?2`), with what its `groups` and the SCIM mapper show of each.
const GROUPS_OF: &str = "SELECT g.id, g.display_name, g.external_id FROM scim_memberships m
     CROSS JOIN scim_groups g ON g.provider = m.provider AND g.id = m.group_id
     WHERE m.provider = ?1 AND m.user_id = ?2
     ORDER BY g.display_name, g.id";

/// The ids of the groups of a user (`?2`).
const GROUP_IDS_OF: &str =
    "SELECT group_id FROM scim_memberships WHERE provider = ?1 AND user_id = ?2 ORDER BY group_id";

/// The member ids of a group (`?2`).
const MEMBERS: &str = "SELECT user_id FROM scim_memberships WHERE provider = ?1 AND group_id = ?2";

/// Applies the migrations the database lacks, in one transaction.
fn migrate(connection: &mut Connection) -> rusqlite::Result<()> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT    NOT NULL,
             applied_us INTEGER NOT NULL
         )",
    )?;
    for migration in MIGRATIONS {
        let applied = tx
            .prepare("SELECT 1 FROM schema_migrations WHERE version = ?1")?
            .exists(params![migration.version])?;
        if !applied {
            tx.execute_batch(migration.sqlite)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_us) VALUES (?1, ?2, ?3)",
                params![
                    migration.version,
                    migration.name,
                    to_micros(SystemTime::now())
                ],
            )?;
        }
    }
    tx.commit()
}

/// The version a write stores, and the creation time to keep (`None`: a new row).
fn next_version(
    existing: Option<(i64, i64)>,
    expected: Option<u64>,
    what: &'static str,
) -> Result<(i64, Option<i64>)> {
    match (existing, expected) {
        (None, Some(_)) => Err(StoreError::NotFound { what }.into()),
        (None, None) => Ok((1, None)),
        (Some((version, _)), Some(expected)) if version as u64 != expected => {
            Err(StoreError::VersionMismatch.into())
        }
        (Some((version, created)), _) => Ok((version + 1, Some(created))),
    }
}

fn count(c: &Connection, table: &str, provider: &ProviderId) -> Result<u64> {
    let sql = format!("SELECT COUNT(*) FROM {table} WHERE provider = ?1");
    let n: i64 = c.query_row(&sql, params![provider.as_str()], |row| row.get(0))?;
    Ok(n as u64)
}

fn limit_param(limit: u64) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn user_row(c: &Connection, provider: &ProviderId, id: IdentityId) -> Result<Option<StoredUser>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM scim_users WHERE provider = ?1 AND id = ?2");
    c.prepare_cached(&sql)?
        .query_row(params![provider.as_str(), id.to_string()], user_columns)
        .optional()?
        .map(|row| row.into_user(provider))
        .transpose()
}

fn users_range(
    c: &Connection,
    provider: &ProviderId,
    offset: u64,
    limit: u64,
) -> Result<Vec<StoredUser>> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM scim_users WHERE provider = ?1 ORDER BY created_us, id LIMIT ?2 OFFSET ?3"
    );
    let mut statement = c.prepare_cached(&sql)?;
    let rows = statement.query_map(
        params![provider.as_str(), limit_param(limit), limit_param(offset)],
        user_columns,
    )?;
    rows.map(|row| row?.into_user(provider)).collect()
}

fn group_row(c: &Connection, provider: &ProviderId, id: GroupId) -> Result<Option<StoredGroup>> {
    let sql = format!("SELECT {GROUP_COLUMNS} FROM scim_groups WHERE provider = ?1 AND id = ?2");
    c.prepare_cached(&sql)?
        .query_row(params![provider.as_str(), id.to_string()], group_columns)
        .optional()?
        .map(|row| row.into_group(provider))
        .transpose()
}

fn groups_range(
    c: &Connection,
    provider: &ProviderId,
    offset: u64,
    limit: u64,
) -> Result<Vec<StoredGroup>> {
    let sql = format!(
        "SELECT {GROUP_COLUMNS} FROM scim_groups WHERE provider = ?1 ORDER BY created_us, id LIMIT ?2 OFFSET ?3"
    );
    let mut statement = c.prepare_cached(&sql)?;
    let rows = statement.query_map(
        params![provider.as_str(), limit_param(limit), limit_param(offset)],
        group_columns,
    )?;
    rows.map(|row| row?.into_group(provider)).collect()
}

fn require_group(c: &Connection, provider: &str, group: &str) -> Result<()> {
    let exists = c
        .prepare_cached("SELECT 1 FROM scim_groups WHERE provider = ?1 AND id = ?2")?
        .exists(params![provider, group])?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::NotFound { what: "group" }.into())
    }
}

fn member_ids(c: &Connection, provider: &str, group: &str) -> Result<Vec<IdentityId>> {
    let mut statement = c.prepare_cached(MEMBERS)?;
    let ids: Vec<String> = statement
        .query_map(params![provider, group], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut ids = ids
        .iter()
        .map(|id| {
            id.parse::<IdentityId>().map_err(|_| {
                Fail::Store(StoreError::Unavailable(
                    "a stored member id is not a UUID".into(),
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    ids.sort();
    Ok(ids)
}

fn bump_group(c: &Connection, provider: &str, group: &str, now: i64) -> Result<()> {
    c.execute(
        "UPDATE scim_groups SET version = version + 1, modified_us = MAX(modified_us, ?3)
         WHERE provider = ?1 AND id = ?2",
        params![provider, group, now],
    )?;
    Ok(())
}

fn parse_group_id(id: &str) -> Result<GroupId> {
    id.parse().map_err(|_| {
        Fail::Store(StoreError::Unavailable(
            "a stored group id is not a UUID".into(),
        ))
    })
}

/// A `scim_users` row as read, before its JSON is parsed.
struct UserColumns {
    id: String,
    resource: String,
    user_name: String,
    external_id: Option<String>,
    emails: String,
    active: bool,
    created: i64,
    modified: i64,
    version: i64,
}

fn user_columns(row: &rusqlite::Row<'_>) -> rusqlite::Result<UserColumns> {
    Ok(UserColumns {
        id: row.get(0)?,
        resource: row.get(1)?,
        user_name: row.get(2)?,
        external_id: row.get(3)?,
        emails: row.get(4)?,
        active: row.get(5)?,
        created: row.get(6)?,
        modified: row.get(7)?,
        version: row.get(8)?,
    })
}

impl UserColumns {
    fn into_user(self, provider: &ProviderId) -> Result<StoredUser> {
        Ok(StoredUser {
            provider: provider.clone(),
            id: self.id.parse().map_err(|_| {
                Fail::Store(StoreError::Unavailable(
                    "a stored user id is not a UUID".into(),
                ))
            })?,
            resource: serde_json::from_str(&self.resource)?,
            user_name: self.user_name,
            external_id: self.external_id,
            emails: serde_json::from_str(&self.emails)?,
            active: self.active,
            created: from_micros(self.created),
            last_modified: from_micros(self.modified),
            version: self.version as u64,
        })
    }
}

/// A `scim_groups` row as read, before its JSON is parsed.
struct GroupColumns {
    id: String,
    resource: String,
    display_name: String,
    external_id: Option<String>,
    created: i64,
    modified: i64,
    version: i64,
}

fn group_columns(row: &rusqlite::Row<'_>) -> rusqlite::Result<GroupColumns> {
    Ok(GroupColumns {
        id: row.get(0)?,
        resource: row.get(1)?,
        display_name: row.get(2)?,
        external_id: row.get(3)?,
        created: row.get(4)?,
        modified: row.get(5)?,
        version: row.get(6)?,
    })
}

impl GroupColumns {
    fn into_group(self, provider: &ProviderId) -> Result<StoredGroup> {
        Ok(StoredGroup {
            provider: provider.clone(),
            id: parse_group_id(&self.id)?,
            resource: serde_json::from_str(&self.resource)?,
            display_name: self.display_name,
            external_id: self.external_id,
            created: from_micros(self.created),
            last_modified: from_micros(self.modified),
            version: self.version as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite's plan of `sql`, one line per step.
    fn plan(c: &Connection, sql: &str) -> Vec<String> {
        let mut statement = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let count = statement.parameter_count();
        let values: Vec<&str> = vec!["x"; count];
        statement
            .query_map(rusqlite::params_from_iter(values), |row| {
                row.get::<_, String>(3)
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn every_lookup_reads_only_its_rows() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c).unwrap();
        let id = uuid::Uuid::nil().to_string();
        let mut queries = vec![
            GROUPS_OF.to_owned(),
            GROUP_IDS_OF.to_owned(),
            MEMBERS.to_owned(),
        ];
        for key in [
            IndexKey::Id,
            IndexKey::UserName,
            IndexKey::ExternalId,
            IndexKey::Email,
            IndexKey::DisplayName,
            IndexKey::Member,
        ] {
            for lookup in [user_lookup(key, &id), group_lookup(key, &id)] {
                if let Lookup::Query(sql, _) = lookup {
                    queries.push(sql);
                }
            }
        }
        assert_eq!(queries.len(), 11, "four user and four group lookups");
        for sql in &queries {
            let steps = plan(&c, sql);
            let searches: Vec<&String> = steps.iter().filter(|s| s.starts_with("SEARCH")).collect();
            assert!(!searches.is_empty(), "{sql}: {steps:?}");
            for step in &steps {
                // A full scan, or a search bounded by the provider alone, reads every row of the
                // provider: the cost would grow with the store.
                assert!(!step.starts_with("SCAN"), "{sql}: {steps:?}");
                assert!(!step.ends_with("(provider=?)"), "{sql}: {steps:?}");
            }
        }
    }
}
