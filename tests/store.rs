//! The SCIM store's contract (`src/store/mod.rs`), one suite run against both back-ends.
//!
//! Every test of [`suite`] runs twice: on SQLite (a file in a temporary directory) and on
//! PostgreSQL (a database of its own, created for the test, so the tests run in parallel).
//! PostgreSQL comes from `KRATOS_JIT_TEST_POSTGRES_URL` (`.ci/run` starts a throwaway cluster
//! and sets it); when it is unset and `/usr/lib/postgresql/*/bin/initdb` exists, the harness
//! starts such a cluster itself, stopped when the test process ends. Otherwise the PostgreSQL
//! tests fail and say how to provide one: they never skip silently.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kratos_jit::domain::{IdentityId, ProviderId};
use kratos_jit::store::{
    GroupId, IndexKey, MembershipChange, Store, StoreError, StoredGroup, StoredUser,
};
use serde_json::json;

// ---- the back-ends ----

/// A database for one test: its URL, and what keeps it alive.
struct Backend {
    url: String,
    kind: Kind,
    _dir: Option<tempfile::TempDir>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
}

impl Backend {
    fn sqlite() -> Backend {
        let dir = tempfile::tempdir().expect("a temporary directory");
        Backend {
            url: format!("sqlite:{}", dir.path().join("scim.db").display()),
            kind: Kind::Sqlite,
            _dir: Some(dir),
        }
    }

    async fn postgres() -> Backend {
        let admin = postgres_admin_url();
        let (client, connection) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL at {admin}: {e}"));
        tokio::spawn(connection);
        let name = format!("kjit_test_{}", uuid::Uuid::new_v4().simple());
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE for the test");
        Backend {
            url: with_database(admin, &name),
            kind: Kind::Postgres,
            _dir: None,
        }
    }

    async fn open(&self) -> Store {
        Store::open(&self.url)
            .await
            .unwrap_or_else(|e| panic!("opening the store: {e}"))
    }

    fn sqlite_path(&self) -> PathBuf {
        PathBuf::from(self.url.strip_prefix("sqlite:").unwrap())
    }

    async fn postgres_client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("a second PostgreSQL connection");
        tokio::spawn(connection);
        client
    }
}

#[path = "common/pg_cluster.rs"]
mod pg_cluster;
use pg_cluster::{postgres_admin_url, with_database};

// ---- data ----

fn provider(id: &str) -> ProviderId {
    id.parse().unwrap()
}

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
}

fn user(p: &ProviderId, user_name: &str, external_id: Option<&str>, emails: &[&str]) -> StoredUser {
    StoredUser {
        provider: p.clone(),
        id: IdentityId::new(uuid::Uuid::new_v4()),
        resource: json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": user_name,
            "emails": emails.iter().map(|e| json!({"value": e})).collect::<Vec<_>>(),
        }),
        user_name: user_name.to_owned(),
        external_id: external_id.map(str::to_owned),
        emails: emails.iter().map(|e| e.to_string()).collect(),
        active: true,
        created: at(0),
        last_modified: at(0),
        version: 0,
    }
}

fn group(p: &ProviderId, display_name: &str, external_id: Option<&str>) -> StoredGroup {
    StoredGroup {
        provider: p.clone(),
        id: GroupId::random(),
        resource: json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": display_name,
        }),
        display_name: display_name.to_owned(),
        external_id: external_id.map(str::to_owned),
        created: at(0),
        last_modified: at(0),
        version: 0,
    }
}

macro_rules! suite {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    super::suite::$test(&super::Backend::sqlite()).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    super::suite::$test(&super::Backend::postgres().await).await
                }
            )*
        }
    };
}

suite![
    another_providers_ids_reach_nothing_and_change_nothing,
    the_same_user_name_may_exist_once_per_provider,
    user_names_and_external_ids_are_unique_per_provider_and_a_clash_changes_nothing,
    group_display_names_and_external_ids_are_unique_per_provider,
    lookups_compare_user_names_and_emails_case_insensitively_and_external_ids_exactly,
    every_write_bumps_the_version_and_a_stale_expected_version_is_refused,
    membership_changes_report_exactly_what_changed_and_bump_the_group,
    a_member_that_is_not_a_user_of_the_provider_is_refused_and_nothing_changes,
    a_group_and_its_members_are_written_in_one_transaction,
    a_batch_read_returns_only_the_providers_existing_users_sorted,
    deleting_a_user_takes_its_memberships_and_deleting_a_group_returns_its_members,
    pages_are_stable_and_count_only_the_providers_rows,
    opening_twice_migrates_once_and_keeps_the_data,
    concurrent_writes_of_one_user_name_leave_one_user_and_concurrent_members_all_land,
    a_user_name_lookup_among_100_000_users_uses_the_index,
];

mod suite {
    use super::*;

    pub async fn another_providers_ids_reach_nothing_and_change_nothing(backend: &Backend) {
        let store = backend.open().await;
        let (a, b) = (provider("okta-acme"), provider("entra-globex"));
        let ada = store
            .put_user(
                &user(&a, "ada@acme.example", Some("00u1"), &["ada@acme.example"]),
                None,
            )
            .await
            .unwrap();
        let admins = store
            .put_group(&group(&a, "Admins", Some("00g1")), None)
            .await
            .unwrap();
        store
            .add_members(&a, admins.id, &[ada.id], at(1))
            .await
            .unwrap();
        let admins = store.group(&a, admins.id).await.unwrap().unwrap();
        let bob = store
            .put_user(&user(&b, "bob@globex.example", None, &[]), None)
            .await
            .unwrap();

        // Reads by B of A's ids and values find nothing.
        assert_eq!(store.user(&b, ada.id).await.unwrap(), None);
        for (key, value) in [
            (IndexKey::Id, ada.id.to_string()),
            (IndexKey::UserName, "ada@acme.example".into()),
            (IndexKey::ExternalId, "00u1".into()),
            (IndexKey::Email, "ada@acme.example".into()),
        ] {
            assert_eq!(
                store.users_by(&b, key, &value).await.unwrap(),
                Some(vec![]),
                "{key:?}"
            );
        }
        for (key, value) in [
            (IndexKey::Id, admins.id.to_string()),
            (IndexKey::DisplayName, "Admins".into()),
            (IndexKey::ExternalId, "00g1".into()),
            (IndexKey::Member, ada.id.to_string()),
        ] {
            assert_eq!(
                store.groups_by(&b, key, &value).await.unwrap(),
                Some(vec![]),
                "{key:?}"
            );
        }
        assert_eq!(store.group(&b, admins.id).await.unwrap(), None);
        assert_eq!(
            store.users_page(&b, 0, 100).await.unwrap(),
            (vec![bob.clone()], 1)
        );
        assert_eq!(store.all_users(&b).await.unwrap(), vec![bob.clone()]);
        assert_eq!(store.count_users(&b).await.unwrap(), 1);
        assert_eq!(store.groups_page(&b, 0, 100).await.unwrap(), (vec![], 0));
        assert_eq!(store.all_groups(&b).await.unwrap(), vec![]);
        assert_eq!(store.count_groups(&b).await.unwrap(), 0);
        assert_eq!(store.groups_of(&b, ada.id).await.unwrap(), vec![]);

        // Writes by B naming A's ids change nothing of A.
        let mut stolen = ada.clone();
        stolen.provider = b.clone();
        stolen.user_name = "mallory@globex.example".into();
        assert_eq!(
            store.put_user(&stolen, Some(ada.version)).await,
            Err(StoreError::NotFound { what: "user" })
        );
        let mut stolen_group = admins.clone();
        stolen_group.provider = b.clone();
        assert_eq!(
            store.put_group(&stolen_group, Some(admins.version)).await,
            Err(StoreError::NotFound { what: "group" })
        );
        assert_eq!(
            store.delete_user(&b, ada.id).await,
            Err(StoreError::NotFound { what: "user" })
        );
        assert_eq!(
            store.delete_group(&b, admins.id).await,
            Err(StoreError::NotFound { what: "group" })
        );
        assert_eq!(
            store.members(&b, admins.id).await,
            Err(StoreError::NotFound { what: "group" })
        );
        for change in [
            store.add_members(&b, admins.id, &[bob.id], at(2)).await,
            store.set_members(&b, admins.id, &[], at(2)).await,
            store.remove_members(&b, admins.id, &[ada.id], at(2)).await,
        ] {
            assert_eq!(change, Err(StoreError::NotFound { what: "group" }));
        }
        // A's group cannot take B's user as a member.
        assert_eq!(
            store.add_members(&a, admins.id, &[bob.id], at(2)).await,
            Err(StoreError::UnknownMember(bob.id))
        );

        // A is exactly as it was.
        assert_eq!(store.user(&a, ada.id).await.unwrap(), Some(ada.clone()));
        assert_eq!(
            store.group(&a, admins.id).await.unwrap(),
            Some(admins.clone())
        );
        assert_eq!(store.members(&a, admins.id).await.unwrap(), vec![ada.id]);
        assert_eq!(store.count_users(&a).await.unwrap(), 1);
    }

    pub async fn the_same_user_name_may_exist_once_per_provider(backend: &Backend) {
        let store = backend.open().await;
        let (a, b) = (provider("okta-acme"), provider("okta-other"));
        let in_a = store
            .put_user(&user(&a, "ada@example.com", Some("00u1"), &[]), None)
            .await
            .unwrap();
        let in_b = store
            .put_user(&user(&b, "ADA@example.com", Some("00u1"), &[]), None)
            .await
            .unwrap();
        let found_a = store
            .users_by(&a, IndexKey::UserName, "ada@example.com")
            .await
            .unwrap()
            .unwrap();
        let found_b = store
            .users_by(&b, IndexKey::UserName, "ada@example.com")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found_a, vec![in_a]);
        assert_eq!(found_b, vec![in_b]);
    }

    pub async fn user_names_and_external_ids_are_unique_per_provider_and_a_clash_changes_nothing(
        backend: &Backend,
    ) {
        let store = backend.open().await;
        let p = provider("okta-acme");
        let ada = store
            .put_user(&user(&p, "ada@acme.example", Some("00u1"), &[]), None)
            .await
            .unwrap();
        assert_eq!(
            store
                .put_user(&user(&p, "ADA@Acme.Example", None, &[]), None)
                .await,
            Err(StoreError::Conflict { what: "userName" })
        );
        assert_eq!(
            store
                .put_user(&user(&p, "grace@acme.example", Some("00u1"), &[]), None)
                .await,
            Err(StoreError::Conflict { what: "externalId" })
        );
        // Renaming an existing user onto a taken name clashes too.
        let grace = store
            .put_user(
                &user(&p, "grace@acme.example", None, &["grace@acme.example"]),
                None,
            )
            .await
            .unwrap();
        let mut renamed = grace.clone();
        renamed.user_name = "Ada@acme.example".into();
        renamed.emails = vec!["changed@acme.example".into()];
        assert_eq!(
            store.put_user(&renamed, None).await,
            Err(StoreError::Conflict { what: "userName" })
        );
        assert_eq!(store.user(&p, grace.id).await.unwrap(), Some(grace.clone()));
        assert_eq!(
            store
                .users_by(&p, IndexKey::Email, "changed@acme.example")
                .await
                .unwrap(),
            Some(vec![])
        );
        assert_eq!(store.count_users(&p).await.unwrap(), 2);
        // Users without an externalId do not clash with each other.
        assert!(ada.external_id.is_some() && grace.external_id.is_none());
        store
            .put_user(&user(&p, "linus@acme.example", None, &[]), None)
            .await
            .unwrap();
    }

    pub async fn group_display_names_and_external_ids_are_unique_per_provider(backend: &Backend) {
        let store = backend.open().await;
        let (a, b) = (provider("okta-acme"), provider("okta-other"));
        store
            .put_group(&group(&a, "Admins", Some("00g1")), None)
            .await
            .unwrap();
        assert_eq!(
            store.put_group(&group(&a, "admins", None), None).await,
            Err(StoreError::Conflict {
                what: "displayName"
            })
        );
        assert_eq!(
            store
                .put_group(&group(&a, "Users", Some("00g1")), None)
                .await,
            Err(StoreError::Conflict { what: "externalId" })
        );
        store
            .put_group(&group(&b, "Admins", Some("00g1")), None)
            .await
            .expect("another provider's group may share the name and externalId");
        assert_eq!(store.count_groups(&a).await.unwrap(), 1);
    }

    pub async fn lookups_compare_user_names_and_emails_case_insensitively_and_external_ids_exactly(
        backend: &Backend,
    ) {
        let store = backend.open().await;
        let p = provider("entra-globex");
        let ada = store
            .put_user(
                &user(
                    &p,
                    "Ada.Lovelace@Globex.Example",
                    Some("Ext-1"),
                    &[
                        "Ada@Globex.Example",
                        "ada@home.example",
                        "ADA@globex.example",
                    ],
                ),
                None,
            )
            .await
            .unwrap();
        // The e-mail index is lower-cased and deduplicated.
        assert_eq!(ada.emails, vec!["ada@globex.example", "ada@home.example"]);
        let shares_an_email = store
            .put_user(
                &user(&p, "ops@globex.example", None, &["ada@home.example"]),
                None,
            )
            .await
            .unwrap();
        let by = |key, value: &'static str| {
            let store = store.clone();
            let p = p.clone();
            async move {
                store
                    .users_by(&p, key, value)
                    .await
                    .unwrap()
                    .unwrap()
                    .into_iter()
                    .map(|u| u.id)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            by(IndexKey::UserName, "ada.lovelace@globex.example").await,
            vec![ada.id]
        );
        assert_eq!(
            by(IndexKey::Email, "ADA@GLOBEX.EXAMPLE").await,
            vec![ada.id]
        );
        // An e-mail is no unique key: both users who list it are found.
        let mut both = vec![ada.id, shares_an_email.id];
        both.sort();
        let mut found = by(IndexKey::Email, "ada@home.example").await;
        found.sort();
        assert_eq!(found, both);
        assert_eq!(by(IndexKey::ExternalId, "Ext-1").await, vec![ada.id]);
        assert_eq!(
            by(IndexKey::ExternalId, "ext-1").await,
            Vec::<IdentityId>::new()
        );
        let id = ada.id.to_string();
        assert_eq!(
            store
                .users_by(&p, IndexKey::Id, &id)
                .await
                .unwrap()
                .unwrap(),
            vec![ada.clone()]
        );
        assert_eq!(
            store
                .users_by(&p, IndexKey::Id, "not-a-uuid")
                .await
                .unwrap(),
            Some(vec![])
        );
        // Keys that are no index of users: the service scans.
        assert_eq!(
            store
                .users_by(&p, IndexKey::DisplayName, "x")
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store.groups_by(&p, IndexKey::UserName, "x").await.unwrap(),
            None
        );
    }

    pub async fn every_write_bumps_the_version_and_a_stale_expected_version_is_refused(
        backend: &Backend,
    ) {
        let store = backend.open().await;
        let p = provider("okta-acme");
        let new = user(&p, "ada@acme.example", None, &[]);
        assert_eq!(
            store.put_user(&new, Some(1)).await,
            Err(StoreError::NotFound { what: "user" })
        );
        let first = store.put_user(&new, None).await.unwrap();
        assert_eq!(first.version, 1);

        let mut changed = first.clone();
        changed.active = false;
        changed.created = at(999); // the creation time is the store's, kept from the insert
        changed.last_modified = at(5);
        let second = store.put_user(&changed, Some(1)).await.unwrap();
        assert_eq!(second.version, 2);
        assert_eq!(second.created, at(0));
        assert_eq!(second.last_modified, at(5));
        assert!(!second.active);

        let mut stale = second.clone();
        stale.active = true;
        assert_eq!(
            store.put_user(&stale, Some(1)).await,
            Err(StoreError::VersionMismatch)
        );
        assert_eq!(
            store.user(&p, first.id).await.unwrap(),
            Some(second.clone())
        );
        let third = store.put_user(&stale, None).await.unwrap();
        assert_eq!((third.version, third.active), (3, true));

        let g = store
            .put_group(&group(&p, "Admins", None), None)
            .await
            .unwrap();
        assert_eq!(g.version, 1);
        assert_eq!(
            store.put_group(&g, Some(7)).await,
            Err(StoreError::VersionMismatch)
        );
        assert_eq!(store.put_group(&g, Some(1)).await.unwrap().version, 2);
    }

    pub async fn membership_changes_report_exactly_what_changed_and_bump_the_group(
        backend: &Backend,
    ) {
        let store = backend.open().await;
        let p = provider("entra-globex");
        let mut ids = Vec::new();
        for name in ["a@x.example", "b@x.example", "c@x.example"] {
            ids.push(
                store
                    .put_user(&user(&p, name, None, &[]), None)
                    .await
                    .unwrap()
                    .id,
            );
        }
        let mut sorted = ids.clone();
        sorted.sort();
        let (a, b, c) = (ids[0], ids[1], ids[2]);
        let admins = store
            .put_group(&group(&p, "Admins", Some("ext-admins")), None)
            .await
            .unwrap();

        let change = store
            .add_members(&p, admins.id, &[a, b, a], at(10))
            .await
            .unwrap();
        let mut ab = vec![a, b];
        ab.sort();
        assert_eq!(
            change,
            MembershipChange {
                added: ab.clone(),
                removed: vec![]
            }
        );
        let after_add = store.group(&p, admins.id).await.unwrap().unwrap();
        assert_eq!(after_add.version, 2);
        assert_eq!(after_add.last_modified, at(10));

        // Adding members already there changes nothing, not even the version.
        let change = store
            .add_members(&p, admins.id, &[a], at(11))
            .await
            .unwrap();
        assert!(change.is_empty());
        assert_eq!(
            store.group(&p, admins.id).await.unwrap().unwrap().version,
            2
        );

        // Entra's removal of one member leaves the others.
        let change = store
            .remove_members(&p, admins.id, &[a], at(12))
            .await
            .unwrap();
        assert_eq!(
            change,
            MembershipChange {
                added: vec![],
                removed: vec![a]
            }
        );
        assert_eq!(store.members(&p, admins.id).await.unwrap(), vec![b]);
        // Removing a non-member is not an error and changes nothing.
        assert!(
            store
                .remove_members(&p, admins.id, &[c], at(13))
                .await
                .unwrap()
                .is_empty()
        );

        // Replacing the members.
        let change = store
            .set_members(&p, admins.id, &[a, c], at(14))
            .await
            .unwrap();
        let mut ac = vec![a, c];
        ac.sort();
        assert_eq!(
            change,
            MembershipChange {
                added: ac.clone(),
                removed: vec![b]
            }
        );
        assert_eq!(store.members(&p, admins.id).await.unwrap(), ac);
        assert_eq!(
            store.group(&p, admins.id).await.unwrap().unwrap().version,
            4
        );

        // What a user's `groups` and the SCIM mapper see.
        let memberships = store.groups_of(&p, a).await.unwrap();
        assert_eq!(memberships.len(), 1);
        assert_eq!(memberships[0].group, admins.id);
        assert_eq!(memberships[0].display_name, "Admins");
        assert_eq!(memberships[0].external_id.as_deref(), Some("ext-admins"));
        assert_eq!(store.groups_of(&p, b).await.unwrap(), vec![]);
        let by_member = store
            .groups_by(&p, IndexKey::Member, &c.to_string())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            by_member.iter().map(|g| g.id).collect::<Vec<_>>(),
            vec![admins.id]
        );

        // Writing the group's resource keeps its members.
        let renamed = StoredGroup {
            display_name: "Administrators".into(),
            ..store.group(&p, admins.id).await.unwrap().unwrap()
        };
        store.put_group(&renamed, Some(4)).await.unwrap();
        assert_eq!(store.members(&p, admins.id).await.unwrap(), ac);
        assert_eq!(
            store.groups_of(&p, a).await.unwrap()[0].display_name,
            "Administrators"
        );
    }

    pub async fn a_batch_read_returns_only_the_providers_existing_users_sorted(backend: &Backend) {
        let store = backend.open().await;
        let (p, other) = (provider("okta-acme"), provider("entra-globex"));
        let mut mine = Vec::new();
        for name in ["ada", "grace", "linus"] {
            let user = user(&p, &format!("{name}@acme.example"), None, &[]);
            mine.push(store.put_user(&user, None).await.unwrap());
        }
        let foreign = store
            .put_user(&user(&other, "ada@globex.example", None, &[]), None)
            .await
            .unwrap();
        let nobody = IdentityId::new(uuid::Uuid::new_v4());
        let asked = [mine[2].id, foreign.id, nobody, mine[0].id, mine[2].id];
        let found = store.users(&p, &asked).await.unwrap();
        let mut want = vec![mine[0].clone(), mine[2].clone()];
        want.sort_by_key(|u| u.id);
        assert_eq!(found, want);
        assert_eq!(store.users(&p, &[]).await.unwrap(), vec![]);
        assert_eq!(store.users(&other, &[mine[1].id]).await.unwrap(), vec![]);
    }

    pub async fn a_group_and_its_members_are_written_in_one_transaction(backend: &Backend) {
        let store = backend.open().await;
        let p = provider("okta-acme");
        let ada = store
            .put_user(&user(&p, "ada@acme.example", None, &[]), None)
            .await
            .unwrap();
        let grace = store
            .put_user(&user(&p, "grace@acme.example", None, &[]), None)
            .await
            .unwrap();
        let admins = group(&p, "Admins", None);
        let written = store
            .put_group_with_members(&admins, None, &[grace.id, ada.id, ada.id], at(1))
            .await
            .unwrap();
        // The row (version 1) and the membership change (version 2), as one write.
        assert_eq!(written.version, 2);
        assert_eq!(
            store.group(&p, admins.id).await.unwrap(),
            Some(written.clone())
        );
        let mut both = vec![ada.id, grace.id];
        both.sort();
        assert_eq!(store.members(&p, admins.id).await.unwrap(), both);

        // A rename with an unknown member: neither the name nor the members change.
        let nobody = IdentityId::new(uuid::Uuid::new_v4());
        let renamed = group(&p, "Owners", None);
        let renamed = StoredGroup {
            id: admins.id,
            ..renamed
        };
        assert_eq!(
            store
                .put_group_with_members(&renamed, Some(2), &[ada.id, nobody], at(2))
                .await,
            Err(StoreError::UnknownMember(nobody))
        );
        assert_eq!(
            store.group(&p, admins.id).await.unwrap(),
            Some(written.clone())
        );
        assert_eq!(store.members(&p, admins.id).await.unwrap(), both);
        // A stale version: nothing either.
        assert_eq!(
            store
                .put_group_with_members(&renamed, Some(1), &[ada.id], at(2))
                .await,
            Err(StoreError::VersionMismatch)
        );
        assert_eq!(store.members(&p, admins.id).await.unwrap(), both);

        // Same members: the row's write alone bumps the version.
        let kept = store
            .put_group_with_members(&renamed, Some(2), &both, at(3))
            .await
            .unwrap();
        assert_eq!((kept.version, kept.display_name.as_str()), (3, "Owners"));
        let only_ada = store
            .put_group_with_members(&renamed, Some(3), &[ada.id], at(4))
            .await
            .unwrap();
        assert_eq!(only_ada.version, 5);
        assert_eq!(store.members(&p, admins.id).await.unwrap(), vec![ada.id]);
    }

    pub async fn a_member_that_is_not_a_user_of_the_provider_is_refused_and_nothing_changes(
        backend: &Backend,
    ) {
        let store = backend.open().await;
        let p = provider("okta-acme");
        let ada = store
            .put_user(&user(&p, "ada@acme.example", None, &[]), None)
            .await
            .unwrap();
        let g = store
            .put_group(&group(&p, "Admins", None), None)
            .await
            .unwrap();
        let nobody = IdentityId::new(uuid::Uuid::new_v4());
        assert_eq!(
            store.add_members(&p, g.id, &[ada.id, nobody], at(1)).await,
            Err(StoreError::UnknownMember(nobody))
        );
        assert_eq!(
            store.set_members(&p, g.id, &[nobody], at(1)).await,
            Err(StoreError::UnknownMember(nobody))
        );
        assert_eq!(store.members(&p, g.id).await.unwrap(), vec![]);
        assert_eq!(store.group(&p, g.id).await.unwrap().unwrap().version, 1);
        assert_eq!(
            store
                .add_members(&p, GroupId::random(), &[ada.id], at(1))
                .await,
            Err(StoreError::NotFound { what: "group" })
        );
    }

    pub async fn deleting_a_user_takes_its_memberships_and_deleting_a_group_returns_its_members(
        backend: &Backend,
    ) {
        let store = backend.open().await;
        let p = provider("okta-acme");
        let ada = store
            .put_user(
                &user(&p, "ada@acme.example", None, &["ada@acme.example"]),
                None,
            )
            .await
            .unwrap();
        let grace = store
            .put_user(&user(&p, "grace@acme.example", None, &[]), None)
            .await
            .unwrap();
        let admins = store
            .put_group(&group(&p, "Admins", None), None)
            .await
            .unwrap();
        let users = store
            .put_group(&group(&p, "Users", None), None)
            .await
            .unwrap();
        store
            .add_members(&p, admins.id, &[ada.id, grace.id], at(1))
            .await
            .unwrap();
        store
            .add_members(&p, users.id, &[ada.id], at(1))
            .await
            .unwrap();

        let mut expected_groups = vec![admins.id, users.id];
        expected_groups.sort();
        assert_eq!(
            store.delete_user(&p, ada.id).await.unwrap(),
            expected_groups
        );
        assert_eq!(store.user(&p, ada.id).await.unwrap(), None);
        assert_eq!(
            store
                .users_by(&p, IndexKey::Email, "ada@acme.example")
                .await
                .unwrap(),
            Some(vec![])
        );
        assert_eq!(store.members(&p, admins.id).await.unwrap(), vec![grace.id]);
        assert_eq!(store.members(&p, users.id).await.unwrap(), vec![]);
        assert_eq!(
            store.group(&p, admins.id).await.unwrap().unwrap().version,
            3
        );
        assert_eq!(
            store.delete_user(&p, ada.id).await,
            Err(StoreError::NotFound { what: "user" })
        );
        // The name is free again.
        store
            .put_user(&user(&p, "ada@acme.example", None, &[]), None)
            .await
            .unwrap();

        assert_eq!(
            store.delete_group(&p, admins.id).await.unwrap(),
            vec![grace.id]
        );
        assert_eq!(store.group(&p, admins.id).await.unwrap(), None);
        assert_eq!(store.groups_of(&p, grace.id).await.unwrap(), vec![]);
        assert!(
            store.user(&p, grace.id).await.unwrap().is_some(),
            "members stay users"
        );
    }

    pub async fn pages_are_stable_and_count_only_the_providers_rows(backend: &Backend) {
        let store = backend.open().await;
        let (p, other) = (provider("okta-acme"), provider("okta-other"));
        let mut created = Vec::new();
        for i in 0..7u64 {
            let mut u = user(&p, &format!("user{i}@acme.example"), None, &[]);
            // Two users per creation instant: the id breaks the tie.
            u.created = at(i / 2);
            created.push(store.put_user(&u, None).await.unwrap());
            store
                .put_user(
                    &user(&other, &format!("user{i}@other.example"), None, &[]),
                    None,
                )
                .await
                .unwrap();
        }
        created.sort_by_key(|u| (u.created, u.id.uuid()));
        let all = store.all_users(&p).await.unwrap();
        assert_eq!(all, created);
        let mut paged = Vec::new();
        for offset in (0..7).step_by(3) {
            let (page, total) = store.users_page(&p, offset, 3).await.unwrap();
            assert_eq!(total, 7);
            paged.extend(page);
        }
        assert_eq!(paged, created);
        assert_eq!(store.users_page(&p, 7, 3).await.unwrap(), (vec![], 7));
        assert_eq!(store.users_page(&p, 0, 0).await.unwrap(), (vec![], 7));
        assert_eq!(store.users_page(&p, 0, u64::MAX).await.unwrap().0, created);

        let g1 = store.put_group(&group(&p, "B", None), None).await.unwrap();
        let mut later = group(&p, "A", None);
        later.created = at(100);
        let g2 = store.put_group(&later, None).await.unwrap();
        assert_eq!(
            store.groups_page(&p, 0, 10).await.unwrap(),
            (vec![g1.clone(), g2.clone()], 2)
        );
        assert_eq!(store.groups_page(&p, 1, 10).await.unwrap(), (vec![g2], 2));
    }

    pub async fn opening_twice_migrates_once_and_keeps_the_data(backend: &Backend) {
        let p = provider("okta-acme");
        let ada = {
            let store = backend.open().await;
            store
                .put_user(&user(&p, "ada@acme.example", None, &[]), None)
                .await
                .unwrap()
        };
        let again = backend.open().await;
        let third = backend.open().await;
        assert_eq!(again.user(&p, ada.id).await.unwrap(), Some(ada.clone()));
        assert_eq!(third.count_users(&p).await.unwrap(), 1);
        let recorded: i64 = match backend.kind {
            Kind::Sqlite => rusqlite::Connection::open(backend.sqlite_path())
                .unwrap()
                .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
                .unwrap(),
            Kind::Postgres => backend
                .postgres_client()
                .await
                .query_one("SELECT COUNT(*) FROM schema_migrations", &[])
                .await
                .unwrap()
                .get(0),
        };
        // One row per migration step (src/store/migrations/), each applied once.
        assert_eq!(recorded, 2);
    }

    pub async fn concurrent_writes_of_one_user_name_leave_one_user_and_concurrent_members_all_land(
        backend: &Backend,
    ) {
        let store = backend.open().await;
        let p = provider("entra-globex");
        // Entra's retries: the same userName created from several requests at once.
        let creates = (0..8).map(|_| {
            let store = store.clone();
            let new = user(&p, "ada@globex.example", None, &[]);
            tokio::spawn(async move { store.put_user(&new, None).await })
        });
        let mut created = 0;
        for result in futures_util::future::join_all(creates).await {
            match result.unwrap() {
                Ok(_) => created += 1,
                Err(error) => assert_eq!(error, StoreError::Conflict { what: "userName" }),
            }
        }
        assert_eq!(created, 1);
        assert_eq!(store.count_users(&p).await.unwrap(), 1);

        // Members added to one group from concurrent PATCHes are all kept, each a version.
        let g = store
            .put_group(&group(&p, "Admins", None), None)
            .await
            .unwrap();
        let mut ids = Vec::new();
        for i in 0..8 {
            let u = store
                .put_user(
                    &user(&p, &format!("member{i}@globex.example"), None, &[]),
                    None,
                )
                .await
                .unwrap();
            ids.push(u.id);
        }
        let adds = ids.iter().map(|id| {
            let (store, p, id) = (store.clone(), p.clone(), *id);
            tokio::spawn(async move { store.add_members(&p, g.id, &[id], at(1)).await })
        });
        for result in futures_util::future::join_all(adds).await {
            assert_eq!(result.unwrap().unwrap().added.len(), 1);
        }
        ids.sort();
        assert_eq!(store.members(&p, g.id).await.unwrap(), ids);
        assert_eq!(store.group(&p, g.id).await.unwrap().unwrap().version, 1 + 8);
    }

    pub async fn a_user_name_lookup_among_100_000_users_uses_the_index(backend: &Backend) {
        const N: i64 = 100_000;
        let store = backend.open().await;
        let (p, other) = (provider("okta-acme"), provider("okta-other"));
        // Bulk rows straight into the tables (one statement), then the store's own lookups.
        match backend.kind {
            Kind::Sqlite => {
                let c = rusqlite::Connection::open(backend.sqlite_path()).unwrap();
                c.execute_batch(&format!(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {N})
                     INSERT INTO scim_users (provider, id, resource, user_name, user_name_lower,
                       external_id, emails, active, created_us, modified_us, version)
                     SELECT 'okta-acme', printf('00000000-0000-4000-8000-%012d', i),
                       json_object('userName', 'User' || i || '@Acme.Example'),
                       'User' || i || '@Acme.Example', 'user' || i || '@acme.example',
                       'ext-' || i, '[]', 1, i, i, 1 FROM n;
                     ANALYZE;"
                ))
                .unwrap();
                let plan: String = c
                    .query_row(
                        "EXPLAIN QUERY PLAN SELECT id FROM scim_users WHERE provider = ?1 AND user_name_lower = ?2",
                        ["okta-acme", "user54321@acme.example"],
                        |r| r.get(3),
                    )
                    .unwrap();
                assert!(plan.contains("scim_users_user_name"), "{plan}");
            }
            Kind::Postgres => {
                let c = backend.postgres_client().await;
                c.batch_execute(&format!(
                    "INSERT INTO scim_users (provider, id, resource, user_name, user_name_lower,
                       external_id, emails, active, created_us, modified_us, version)
                     SELECT 'okta-acme', ('00000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid,
                       jsonb_build_object('userName', 'User' || i || '@Acme.Example'),
                       'User' || i || '@Acme.Example', 'user' || i || '@acme.example',
                       'ext-' || i, '[]'::jsonb, true, i, i, 1 FROM generate_series(1, {N}) AS i;
                     ANALYZE scim_users;"
                ))
                .await
                .unwrap();
                let plan: Vec<String> = c
                    .query(
                        "EXPLAIN SELECT id FROM scim_users WHERE provider = 'okta-acme' AND user_name_lower = 'user54321@acme.example'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                assert!(plan.join("\n").contains("scim_users_user_name"), "{plan:?}");
            }
        }
        assert_eq!(store.count_users(&p).await.unwrap(), N as u64);
        let found = store
            .users_by(&p, IndexKey::UserName, "USER54321@acme.example")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].user_name, "User54321@Acme.Example");
        assert_eq!(
            found[0].id.to_string(),
            "00000000-0000-4000-8000-000000054321"
        );
        assert_eq!(
            store
                .users_by(&other, IndexKey::UserName, "user54321@acme.example")
                .await
                .unwrap(),
            Some(vec![])
        );
        let by_external = store
            .users_by(&p, IndexKey::ExternalId, "ext-99999")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(by_external.len(), 1);
        // A new user clashes with a bulk row's name through the same index.
        assert_eq!(
            store
                .put_user(&user(&p, "user1@ACME.example", None, &[]), None)
                .await,
            Err(StoreError::Conflict { what: "userName" })
        );
    }
}

// ---- faults and URLs (back-end specific) ----

#[tokio::test]
async fn a_dropped_postgres_connection_is_reconnected_on_the_next_call() {
    let backend = Backend::postgres().await;
    let store = backend.open().await;
    let p = provider("okta-acme");
    let ada = store
        .put_user(&user(&p, "ada@acme.example", None, &[]), None)
        .await
        .unwrap();
    // Use several pooled connections, then have the server end every one of them (as a
    // restart does).
    for _ in 0..8 {
        store.count_users(&p).await.unwrap();
    }
    let admin = backend.postgres_client().await;
    let database = backend.url.rsplit('/').next().unwrap().to_owned();
    let ended = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&database],
        )
        .await
        .unwrap();
    assert!(!ended.is_empty(), "the store had connections to end");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..8 {
        assert_eq!(store.user(&p, ada.id).await.unwrap(), Some(ada.clone()));
    }
}

#[tokio::test]
async fn a_postgres_database_gone_away_is_unavailable_on_every_call_never_a_panic() {
    let backend = Backend::postgres().await;
    let store = backend.open().await;
    let p = provider("okta-acme");
    let ada = store
        .put_user(&user(&p, "ada@acme.example", None, &[]), None)
        .await
        .unwrap();
    let database = backend.url.rsplit('/').next().unwrap().to_owned();
    let (admin, connection) = tokio_postgres::connect(postgres_admin_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("DROP DATABASE {database} WITH (FORCE)"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..6 {
        match store.user(&p, ada.id).await {
            Err(StoreError::Unavailable(problem)) => {
                assert!(!problem.contains("ada@acme.example"), "{problem}")
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    assert!(matches!(
        store
            .put_user(&user(&p, "grace@acme.example", None, &[]), None)
            .await,
        Err(StoreError::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_store_that_cannot_be_reached_is_an_error_that_hides_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // bound then released: nothing listens there
    let url = format!("postgres://kjit:s3cret-pw@127.0.0.1:{port}/kjit");
    let error = Store::open(&url).await.err().expect("no server there");
    let message = error.to_string();
    assert!(message.contains("could not open the store"), "{message}");
    assert!(message.contains("kjit:***@127.0.0.1"), "{message}");
    assert!(!message.contains("s3cret-pw"), "{message}");
}

#[tokio::test]
async fn an_unknown_scheme_names_the_forms_a_store_url_takes() {
    let error = Store::open("mysql://u:pw-123@h/d")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("sqlite::memory:"), "{error}");
    assert!(!error.contains("pw-123"), "{error}");
    let error = Store::open("sqlite:").await.err().unwrap().to_string();
    assert!(error.contains("no path"), "{error}");
}

#[tokio::test]
async fn an_in_memory_sqlite_store_is_private_to_its_handle() {
    let p = provider("okta-acme");
    let one = Store::open("sqlite::memory:").await.unwrap();
    let two = Store::open("sqlite::memory:").await.unwrap();
    one.put_user(&user(&p, "ada@acme.example", None, &[]), None)
        .await
        .unwrap();
    assert_eq!(one.count_users(&p).await.unwrap(), 1);
    assert_eq!(two.count_users(&p).await.unwrap(), 0);
    assert_eq!(
        one.clone().count_users(&p).await.unwrap(),
        1,
        "clones share the database"
    );
}

#[test]
fn a_test_database_url_replaces_only_the_path() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
        "postgres://postgres@127.0.0.1:5432/t1"
    );
    assert_eq!(
        with_database("postgres://u:p@h:1/db?sslmode=disable", "t1"),
        "postgres://u:p@h:1/t1?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h:1", "t1"), "postgres://h:1/t1");
}
