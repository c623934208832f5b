//! The round trip, group demotion, isolation, bad-input and seed-lifecycle tests of `main.rs`
//! and Okta's lifecycle again, with the store on PostgreSQL (a database of its own per test).

use super::common::{Options, postgres_database, spawn_with};

async fn on_postgres() -> super::common::App {
    spawn_with(Options {
        database_url: postgres_database().await,
        ..Options::default()
    })
    .await
}

#[actix_web::test]
async fn postgres_a_user_round_trip_creates_finds_deactivates_reactivates_and_deletes() {
    super::user_round_trip(on_postgres().await).await;
}

#[actix_web::test]
async fn postgres_removing_a_user_from_the_admins_group_lowers_the_role_and_revokes_sessions() {
    super::group_demotion(on_postgres().await).await;
}

#[actix_web::test]
async fn postgres_another_providers_secret_sees_nothing_and_changes_nothing() {
    super::isolation(on_postgres().await).await;
}

#[actix_web::test]
async fn postgres_bad_input_is_a_scim_error_naming_it_and_nothing_is_written() {
    super::bad_input(on_postgres().await).await;
}

#[actix_web::test]
async fn postgres_the_seed_lifecycle_scim_creates_sso_finds_it_deactivation_refuses_the_next_login()
{
    super::seed_lifecycle(on_postgres().await).await;
}

#[actix_web::test]
async fn postgres_okta_user_lifecycle() {
    super::okta::user_lifecycle(on_postgres().await).await;
}

#[actix_web::test]
async fn postgres_okta_group_push() {
    super::okta::group_push(on_postgres().await).await;
}
