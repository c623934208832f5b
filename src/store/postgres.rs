//! The PostgreSQL back-end of the [`Store`](super::Store).
//!
//! `tokio-postgres` without TLS (`NoTls`: the database is on loopback or the compose network)
//! and a small pool of [`POOL_SIZE`] connections kept here. A connection is taken out of its slot
//! for the length of a call and put back only if it is still open, so a connection the server
//! dropped, or one abandoned by a call that timed out, is never reused: the next call on that
//! slot connects afresh. Every call, connecting included, is bounded by
//! [`CALL_TIMEOUT`](super::CALL_TIMEOUT); any failure is [`StoreError::Unavailable`].
//!
//! Writes read the current row `FOR UPDATE` in their transaction, so two concurrent writes of
//! the same resource are serialised and the expected-version check cannot be raced; two
//! concurrent writes of the same unique value end with one [`StoreError::Conflict`] from the
//! unique index.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use serde_json::Value;
use tokio::sync::Mutex;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, GenericClient, NoTls, Row};
use uuid::Uuid;

use super::{
    CALL_TIMEOUT, GroupId, IndexKey, MIGRATIONS, MemberOp, Membership, MembershipChange, OpenError,
    StoreError, StoredGroup, StoredUser, conflict_of, email_index, from_micros, redact_url,
    sorted_ids, to_micros,
};
use crate::domain::{IdentityId, ProviderId};

/// How many connections the store keeps open at most.
pub const POOL_SIZE: usize = 4;

/// Every migration holds this advisory lock, so two processes starting together apply the
/// migrations once (the number is arbitrary, fixed: "kjit" in ASCII).
const MIGRATION_LOCK: i64 = 0x6b6a_6974;

/// The PostgreSQL store. Clones share the pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Arc<Pool>,
}

struct Pool {
    config: Config,
    slots: Vec<Mutex<Option<Client>>>,
    next: AtomicUsize,
}

/// A failed step inside a call: a store answer, or the client's own error.
enum Fail {
    Store(StoreError),
    Postgres(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(error: tokio_postgres::Error) -> Self {
        Fail::Postgres(error)
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

/// The message of a client error without the values a server error may quote (its `DETAIL`
/// names the conflicting key's value).
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("PostgreSQL {}: {}", db.code().code(), db.message()),
        None => format!("PostgreSQL: {error}"),
    }
}

fn store_error(fail: Fail) -> StoreError {
    match fail {
        Fail::Store(error) => error,
        Fail::Postgres(error) => {
            if error.code() == Some(&SqlState::UNIQUE_VIOLATION)
                && let Some(what) = error
                    .as_db_error()
                    .and_then(|db| db.constraint())
                    .and_then(conflict_of)
            {
                return StoreError::Conflict { what };
            }
            StoreError::Unavailable(describe(&error))
        }
    }
}

type Result<T> = std::result::Result<T, Fail>;
type Call<'c, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'c>>;

const USER_COLUMNS: &str =
    "id, resource, user_name, external_id, emails, active, created_us, modified_us, version";
const GROUP_COLUMNS: &str =
    "id, resource, display_name, external_id, created_us, modified_us, version";

impl PostgresStore {
    pub(super) async fn open(url: &str) -> std::result::Result<PostgresStore, OpenError> {
        let shown = redact_url(url);
        let mut config = Config::from_str(url).map_err(|error| OpenError::InvalidUrl {
            url: shown.clone(),
            problem: error.to_string(),
        })?;
        config.connect_timeout(CALL_TIMEOUT);
        if config.get_application_name().is_none() {
            config.application_name("kratos-jit");
        }
        let store = PostgresStore {
            pool: Arc::new(Pool {
                config,
                slots: (0..POOL_SIZE).map(|_| Mutex::new(None)).collect(),
                next: AtomicUsize::new(0),
            }),
        };
        let migrated = store
            .with(|c| Box::pin(migrate(c)))
            .await
            .map_err(|error| match error {
                StoreError::Unavailable(problem) if problem.starts_with("could not connect") => {
                    OpenError::Unreachable {
                        url: shown.clone(),
                        problem,
                    }
                }
                other => OpenError::Migration {
                    url: shown.clone(),
                    problem: other.to_string(),
                },
            });
        migrated.map(|()| store)
    }

    /// Runs `op` on a pooled connection (connecting if the slot has none or a closed one),
    /// within the call timeout.
    async fn with<T>(
        &self,
        op: impl for<'c> FnOnce(&'c mut Client) -> Call<'c, T>,
    ) -> std::result::Result<T, StoreError> {
        let call = async {
            let mut slot = self.pool.slot().await;
            let mut client = match slot.take() {
                Some(client) if !client.is_closed() => client,
                _ => self.pool.connect().await.map_err(store_error)?,
            };
            let result = op(&mut client).await;
            // A closed connection is dropped here; the slot connects again next time.
            if !client.is_closed() {
                *slot = Some(client);
            }
            result.map_err(store_error)
        };
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(format!(
                "PostgreSQL did not answer within {CALL_TIMEOUT:?}"
            ))),
        }
    }

    pub(super) async fn ping(&self) -> std::result::Result<(), StoreError> {
        self.with(|c| {
            Box::pin(async move {
                c.simple_query("SELECT 1").await?;
                Ok(())
            })
        })
        .await
    }

    pub(super) async fn user(
        &self,
        provider: &ProviderId,
        id: IdentityId,
    ) -> std::result::Result<Option<StoredUser>, StoreError> {
        let provider = provider.clone();
        self.with(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {USER_COLUMNS} FROM scim_users WHERE provider = $1 AND id = $2"
                );
                let row = c.query_opt(&sql, &[&provider.as_str(), &id.uuid()]).await?;
                row.map(|row| user_from(&row, &provider)).transpose()
            })
        })
        .await
    }

    pub(super) async fn users(
        &self,
        provider: &ProviderId,
        ids: &[IdentityId],
    ) -> std::result::Result<Vec<StoredUser>, StoreError> {
        let provider = provider.clone();
        let ids: Vec<Uuid> = sorted_ids(ids).iter().map(IdentityId::uuid).collect();
        self.with(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {USER_COLUMNS} FROM scim_users WHERE provider = $1 AND id = ANY($2) ORDER BY id"
                );
                let rows = c.query(&sql, &[&provider.as_str(), &ids]).await?;
                rows.iter().map(|row| user_from(row, &provider)).collect()
            })
        })
        .await
    }

    pub(super) async fn users_by(
        &self,
        provider: &ProviderId,
        key: IndexKey,
        value: &str,
    ) -> std::result::Result<Option<Vec<StoredUser>>, StoreError> {
        let (filter, value) = match key {
            IndexKey::Id => match value.parse::<IdentityId>() {
                Ok(id) => ("id = $2", Param::Uuid(id.uuid())),
                // Not a UUID: no user has it.
                Err(_) => return Ok(Some(Vec::new())),
            },
            IndexKey::UserName => ("user_name_lower = $2", Param::Text(value.to_lowercase())),
            IndexKey::ExternalId => ("external_id = $2", Param::Text(value.to_owned())),
            IndexKey::Email => (
                "id IN (SELECT user_id FROM scim_user_emails WHERE provider = $1 AND email_lower = $2)",
                Param::Text(value.to_lowercase()),
            ),
            IndexKey::DisplayName | IndexKey::Member => return Ok(None),
        };
        let provider = provider.clone();
        self.with(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {USER_COLUMNS} FROM scim_users WHERE provider = $1 AND {filter} ORDER BY created_us, id"
                );
                let rows = c.query(&sql, &[&provider.as_str(), value.sql()]).await?;
                rows.iter().map(|row| user_from(row, &provider)).collect()
            })
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
            Box::pin(async move {
                // One snapshot for the page and its total.
                let tx = c
                    .build_transaction()
                    .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .await?;
                let total = count(&tx, "scim_users", &provider).await?;
                let users = users_range(&tx, &provider, offset, limit).await?;
                tx.commit().await?;
                Ok((users, total))
            })
        })
        .await
    }

    pub(super) async fn all_users(
        &self,
        provider: &ProviderId,
    ) -> std::result::Result<Vec<StoredUser>, StoreError> {
        let provider = provider.clone();
        self.with(move |c| Box::pin(async move { users_range(c, &provider, 0, u64::MAX).await }))
            .await
    }

    pub(super) async fn count_users(
        &self,
        provider: &ProviderId,
    ) -> std::result::Result<u64, StoreError> {
        let provider = provider.clone();
        self.with(move |c| Box::pin(async move { count(c, "scim_users", &provider).await }))
            .await
    }

    pub(super) async fn put_user(
        &self,
        user: &StoredUser,
        expected_version: Option<u64>,
    ) -> std::result::Result<StoredUser, StoreError> {
        let mut user = user.clone();
        self.with(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                let provider = user.provider.as_str();
                let id = user.id.uuid();
                let existing = tx
                    .query_opt(
                        "SELECT version, created_us FROM scim_users WHERE provider = $1 AND id = $2 FOR UPDATE",
                        &[&provider, &id],
                    )
                    .await?
                    .map(|row| (row.get::<_, i64>(0), row.get::<_, i64>(1)));
                let (version, created) = next_version(existing, expected_version, "user")?;
                let created = created.unwrap_or(to_micros(user.created));
                user.emails = email_index(&user.emails);
                tx.execute(
                    "INSERT INTO scim_users (provider, id, resource, user_name, user_name_lower, external_id, emails, active, created_us, modified_us, version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                     ON CONFLICT (provider, id) DO UPDATE SET resource = excluded.resource,
                       user_name = excluded.user_name, user_name_lower = excluded.user_name_lower,
                       external_id = excluded.external_id, emails = excluded.emails,
                       active = excluded.active, modified_us = excluded.modified_us,
                       version = excluded.version",
                    &[
                        &provider,
                        &id,
                        &user.resource,
                        &user.user_name,
                        &user.user_name.to_lowercase(),
                        &user.external_id,
                        &serde_json::to_value(&user.emails)?,
                        &user.active,
                        &created,
                        &to_micros(user.last_modified),
                        &version,
                    ],
                )
                .await?;
                tx.execute(
                    "DELETE FROM scim_user_emails WHERE provider = $1 AND user_id = $2",
                    &[&provider, &id],
                )
                .await?;
                if !user.emails.is_empty() {
                    tx.execute(
                        "INSERT INTO scim_user_emails (provider, user_id, email_lower)
                         SELECT $1, $2, e FROM unnest($3::text[]) AS e",
                        &[&provider, &id, &user.emails],
                    )
                    .await?;
                }
                tx.commit().await?;
                user.created = from_micros(created);
                user.last_modified = from_micros(to_micros(user.last_modified));
                user.version = version as u64;
                Ok(user)
            })
        })
        .await
    }

    pub(super) async fn delete_user(
        &self,
        provider: &ProviderId,
        id: IdentityId,
    ) -> std::result::Result<Vec<GroupId>, StoreError> {
        let provider = provider.clone();
        self.with(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                let p = provider.as_str();
                let mut groups: Vec<Uuid> = tx
                    .query(
                        "DELETE FROM scim_memberships WHERE provider = $1 AND user_id = $2 RETURNING group_id",
                        &[&p, &id.uuid()],
                    )
                    .await?
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                groups.sort();
                let deleted = tx
                    .execute(
                        "DELETE FROM scim_users WHERE provider = $1 AND id = $2",
                        &[&p, &id.uuid()],
                    )
                    .await?;
                if deleted == 0 {
                    return Err(StoreError::NotFound { what: "user" }.into());
                }
                if !groups.is_empty() {
                    bump_groups(&tx, p, &groups, to_micros(SystemTime::now())).await?;
                }
                tx.commit().await?;
                Ok(groups.into_iter().map(GroupId::new).collect())
            })
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
        self.with(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {GROUP_COLUMNS} FROM scim_groups WHERE provider = $1 AND id = $2"
                );
                let row = c.query_opt(&sql, &[&provider.as_str(), &id.uuid()]).await?;
                row.map(|row| group_from(&row, &provider)).transpose()
            })
        })
        .await
    }

    pub(super) async fn groups_by(
        &self,
        provider: &ProviderId,
        key: IndexKey,
        value: &str,
    ) -> std::result::Result<Option<Vec<StoredGroup>>, StoreError> {
        let (filter, value) = match key {
            IndexKey::Id => match value.parse::<GroupId>() {
                Ok(id) => ("id = $2", Param::Uuid(id.uuid())),
                Err(_) => return Ok(Some(Vec::new())),
            },
            IndexKey::DisplayName => ("display_name_lower = $2", Param::Text(value.to_lowercase())),
            IndexKey::ExternalId => ("external_id = $2", Param::Text(value.to_owned())),
            IndexKey::Member => match value.parse::<IdentityId>() {
                Ok(id) => (
                    "id IN (SELECT group_id FROM scim_memberships WHERE provider = $1 AND user_id = $2)",
                    Param::Uuid(id.uuid()),
                ),
                Err(_) => return Ok(Some(Vec::new())),
            },
            IndexKey::UserName | IndexKey::Email => return Ok(None),
        };
        let provider = provider.clone();
        self.with(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {GROUP_COLUMNS} FROM scim_groups WHERE provider = $1 AND {filter} ORDER BY created_us, id"
                );
                let rows = c.query(&sql, &[&provider.as_str(), value.sql()]).await?;
                rows.iter().map(|row| group_from(row, &provider)).collect()
            })
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
            Box::pin(async move {
                let tx = c
                    .build_transaction()
                    .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .await?;
                let total = count(&tx, "scim_groups", &provider).await?;
                let groups = groups_range(&tx, &provider, offset, limit).await?;
                tx.commit().await?;
                Ok((groups, total))
            })
        })
        .await
    }

    pub(super) async fn all_groups(
        &self,
        provider: &ProviderId,
    ) -> std::result::Result<Vec<StoredGroup>, StoreError> {
        let provider = provider.clone();
        self.with(move |c| Box::pin(async move { groups_range(c, &provider, 0, u64::MAX).await }))
            .await
    }

    pub(super) async fn count_groups(
        &self,
        provider: &ProviderId,
    ) -> std::result::Result<u64, StoreError> {
        let provider = provider.clone();
        self.with(move |c| Box::pin(async move { count(c, "scim_groups", &provider).await }))
            .await
    }

    pub(super) async fn put_group(
        &self,
        group: &StoredGroup,
        expected_version: Option<u64>,
    ) -> std::result::Result<StoredGroup, StoreError> {
        let mut group = group.clone();
        self.with(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                put_group_in(&tx, &mut group, expected_version).await?;
                tx.commit().await?;
                Ok(group)
            })
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
        self.with(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                put_group_in(&tx, &mut group, expected_version).await?;
                let provider = group.provider.clone();
                let change =
                    change_members_in(&tx, provider.as_str(), group.id, MemberOp::Set, &named, now)
                        .await?;
                if !change.is_empty() {
                    // The membership change bumped the version once more.
                    let sql = format!(
                        "SELECT {GROUP_COLUMNS} FROM scim_groups WHERE provider = $1 AND id = $2"
                    );
                    let row = tx
                        .query_one(&sql, &[&provider.as_str(), &group.id.uuid()])
                        .await?;
                    group = group_from(&row, &provider)?;
                }
                tx.commit().await?;
                Ok(group)
            })
        })
        .await
    }

    pub(super) async fn delete_group(
        &self,
        provider: &ProviderId,
        id: GroupId,
    ) -> std::result::Result<Vec<IdentityId>, StoreError> {
        let provider = provider.clone();
        self.with(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                let p = provider.as_str();
                let members = member_ids(&tx, p, id.uuid()).await?;
                let deleted = tx
                    .execute(
                        "DELETE FROM scim_groups WHERE provider = $1 AND id = $2",
                        &[&p, &id.uuid()],
                    )
                    .await?;
                if deleted == 0 {
                    return Err(StoreError::NotFound { what: "group" }.into());
                }
                tx.commit().await?;
                Ok(members)
            })
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
            Box::pin(async move {
                let tx = c
                    .build_transaction()
                    .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .await?;
                lock_group(&tx, provider.as_str(), group.uuid(), false).await?;
                let members = member_ids(&tx, provider.as_str(), group.uuid()).await?;
                tx.commit().await?;
                Ok(members)
            })
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
        self.with(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                let change =
                    change_members_in(&tx, provider.as_str(), group, op, &named, now).await?;
                tx.commit().await?;
                Ok(change)
            })
        })
        .await
    }

    pub(super) async fn groups_of(
        &self,
        provider: &ProviderId,
        user: IdentityId,
    ) -> std::result::Result<Vec<Membership>, StoreError> {
        let provider = provider.clone();
        self.with(move |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT g.id, g.display_name, g.external_id FROM scim_memberships m
                         JOIN scim_groups g ON g.provider = m.provider AND g.id = m.group_id
                         WHERE m.provider = $1 AND m.user_id = $2
                         ORDER BY g.display_name, g.id",
                        &[&provider.as_str(), &user.uuid()],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .map(|row| Membership {
                        group: GroupId::new(row.get(0)),
                        display_name: row.get(1),
                        external_id: row.get(2),
                    })
                    .collect())
            })
        })
        .await
    }
}

impl Pool {
    /// A slot: a free one if any, else the next in turn (waiting for it).
    async fn slot(&self) -> tokio::sync::MutexGuard<'_, Option<Client>> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.slots.len() {
            if let Ok(guard) = self.slots[(start + i) % self.slots.len()].try_lock() {
                return guard;
            }
        }
        self.slots[start % self.slots.len()].lock().await
    }

    async fn connect(&self) -> Result<Client> {
        let (client, connection) = self.config.connect(NoTls).await.map_err(|error| {
            Fail::Store(StoreError::Unavailable(format!(
                "could not connect to PostgreSQL: {}",
                describe(&error)
            )))
        })?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(
                    message = "The PostgreSQL connection of the SCIM store ended.",
                    error = %describe(&error)
                );
            }
        });
        Ok(client)
    }
}

/// A query parameter whose SQL type depends on the index key.
enum Param {
    Uuid(Uuid),
    Text(String),
}

impl Param {
    fn sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Param::Uuid(id) => id,
            Param::Text(text) => text,
        }
    }
}

async fn migrate(client: &mut Client) -> Result<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    BIGINT PRIMARY KEY,
             name       TEXT   NOT NULL,
             applied_us BIGINT NOT NULL
         )",
    )
    .await?;
    for migration in MIGRATIONS {
        let applied = tx
            .query_opt(
                "SELECT 1 FROM schema_migrations WHERE version = $1",
                &[&migration.version],
            )
            .await?
            .is_some();
        if !applied {
            tx.batch_execute(migration.postgres).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_us) VALUES ($1, $2, $3)",
                &[
                    &migration.version,
                    &migration.name,
                    &to_micros(SystemTime::now()),
                ],
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
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

async fn count(c: &impl GenericClient, table: &str, provider: &ProviderId) -> Result<u64> {
    let sql = format!("SELECT COUNT(*) FROM {table} WHERE provider = $1");
    let n: i64 = c.query_one(&sql, &[&provider.as_str()]).await?.get(0);
    Ok(n as u64)
}

fn limit_param(limit: u64) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

async fn users_range(
    c: &impl GenericClient,
    provider: &ProviderId,
    offset: u64,
    limit: u64,
) -> Result<Vec<StoredUser>> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM scim_users WHERE provider = $1 ORDER BY created_us, id LIMIT $2 OFFSET $3"
    );
    let rows = c
        .query(
            &sql,
            &[
                &provider.as_str(),
                &limit_param(limit),
                &limit_param(offset),
            ],
        )
        .await?;
    rows.iter().map(|row| user_from(row, provider)).collect()
}

async fn groups_range(
    c: &impl GenericClient,
    provider: &ProviderId,
    offset: u64,
    limit: u64,
) -> Result<Vec<StoredGroup>> {
    let sql = format!(
        "SELECT {GROUP_COLUMNS} FROM scim_groups WHERE provider = $1 ORDER BY created_us, id LIMIT $2 OFFSET $3"
    );
    let rows = c
        .query(
            &sql,
            &[
                &provider.as_str(),
                &limit_param(limit),
                &limit_param(offset),
            ],
        )
        .await?;
    rows.iter().map(|row| group_from(row, provider)).collect()
}

/// Inserts or replaces `group` (not its members) in `tx`, locking its row, and sets its
/// version and times as stored.
async fn put_group_in(
    tx: &tokio_postgres::Transaction<'_>,
    group: &mut StoredGroup,
    expected_version: Option<u64>,
) -> Result<()> {
    let provider = group.provider.as_str();
    let id = group.id.uuid();
    let existing = tx
        .query_opt(
            "SELECT version, created_us FROM scim_groups WHERE provider = $1 AND id = $2 FOR UPDATE",
            &[&provider, &id],
        )
        .await?
        .map(|row| (row.get::<_, i64>(0), row.get::<_, i64>(1)));
    let (version, created) = next_version(existing, expected_version, "group")?;
    let created = created.unwrap_or(to_micros(group.created));
    tx.execute(
        "INSERT INTO scim_groups (provider, id, resource, display_name, display_name_lower, external_id, created_us, modified_us, version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (provider, id) DO UPDATE SET resource = excluded.resource,
           display_name = excluded.display_name, display_name_lower = excluded.display_name_lower,
           external_id = excluded.external_id, modified_us = excluded.modified_us,
           version = excluded.version",
        &[
            &provider,
            &id,
            &group.resource,
            &group.display_name,
            &group.display_name.to_lowercase(),
            &group.external_id,
            &created,
            &to_micros(group.last_modified),
            &version,
        ],
    )
    .await?;
    group.created = from_micros(created);
    group.last_modified = from_micros(to_micros(group.last_modified));
    group.version = version as u64;
    Ok(())
}

/// Applies `op` with the (sorted, deduplicated) ids `named` to the members of `group` in `tx`,
/// locking the group's row.
async fn change_members_in(
    tx: &tokio_postgres::Transaction<'_>,
    p: &str,
    group: GroupId,
    op: MemberOp,
    named: &[IdentityId],
    now: SystemTime,
) -> Result<MembershipChange> {
    let g = group.uuid();
    // Locking the group row serialises membership changes of one group.
    lock_group(tx, p, g, true).await?;
    let named_uuids: Vec<Uuid> = named.iter().map(IdentityId::uuid).collect();
    if op != MemberOp::Remove {
        let known: Vec<Uuid> = tx
            .query(
                "SELECT id FROM scim_users WHERE provider = $1 AND id = ANY($2)",
                &[&p, &named_uuids],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        if let Some(unknown) = named.iter().find(|id| !known.contains(&id.uuid())) {
            return Err(StoreError::UnknownMember(*unknown).into());
        }
    }
    let current = member_ids(tx, p, g).await?;
    let change = op.plan(&current, named);
    if !change.added.is_empty() {
        let added: Vec<Uuid> = change.added.iter().map(IdentityId::uuid).collect();
        tx.execute(
            "INSERT INTO scim_memberships (provider, group_id, user_id)
             SELECT $1, $2, u FROM unnest($3::uuid[]) AS u",
            &[&p, &g, &added],
        )
        .await?;
    }
    if !change.removed.is_empty() {
        let removed: Vec<Uuid> = change.removed.iter().map(IdentityId::uuid).collect();
        tx.execute(
            "DELETE FROM scim_memberships WHERE provider = $1 AND group_id = $2 AND user_id = ANY($3)",
            &[&p, &g, &removed],
        )
        .await?;
    }
    if !change.is_empty() {
        bump_groups(tx, p, &[g], to_micros(now)).await?;
    }
    Ok(change)
}

/// [`StoreError::NotFound`] unless the group exists; with `for_update`, locks its row.
async fn lock_group(
    c: &impl GenericClient,
    provider: &str,
    group: Uuid,
    for_update: bool,
) -> Result<()> {
    let sql = if for_update {
        "SELECT 1 FROM scim_groups WHERE provider = $1 AND id = $2 FOR UPDATE"
    } else {
        "SELECT 1 FROM scim_groups WHERE provider = $1 AND id = $2"
    };
    match c.query_opt(sql, &[&provider, &group]).await? {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound { what: "group" }.into()),
    }
}

async fn member_ids(
    c: &impl GenericClient,
    provider: &str,
    group: Uuid,
) -> Result<Vec<IdentityId>> {
    let rows = c
        .query(
            "SELECT user_id FROM scim_memberships WHERE provider = $1 AND group_id = $2 ORDER BY user_id",
            &[&provider, &group],
        )
        .await?;
    let mut ids: Vec<IdentityId> = rows.iter().map(|row| IdentityId::new(row.get(0))).collect();
    // PostgreSQL orders uuids bytewise, as Uuid's Ord does; sort anyway to not depend on it.
    ids.sort();
    Ok(ids)
}

async fn bump_groups(
    c: &impl GenericClient,
    provider: &str,
    groups: &[Uuid],
    now: i64,
) -> Result<()> {
    c.execute(
        "UPDATE scim_groups SET version = version + 1, modified_us = GREATEST(modified_us, $3)
         WHERE provider = $1 AND id = ANY($2)",
        &[&provider, &groups, &now],
    )
    .await?;
    Ok(())
}

fn user_from(row: &Row, provider: &ProviderId) -> Result<StoredUser> {
    let emails: Value = row.try_get(4)?;
    Ok(StoredUser {
        provider: provider.clone(),
        id: IdentityId::new(row.try_get(0)?),
        resource: row.try_get(1)?,
        user_name: row.try_get(2)?,
        external_id: row.try_get(3)?,
        emails: serde_json::from_value(emails)?,
        active: row.try_get(5)?,
        created: from_micros(row.try_get(6)?),
        last_modified: from_micros(row.try_get(7)?),
        version: row.try_get::<_, i64>(8)? as u64,
    })
}

fn group_from(row: &Row, provider: &ProviderId) -> Result<StoredGroup> {
    Ok(StoredGroup {
        provider: provider.clone(),
        id: GroupId::new(row.try_get(0)?),
        resource: row.try_get(1)?,
        display_name: row.try_get(2)?,
        external_id: row.try_get(3)?,
        created: from_micros(row.try_get(4)?),
        last_modified: from_micros(row.try_get(5)?),
        version: row.try_get::<_, i64>(6)? as u64,
    })
}
