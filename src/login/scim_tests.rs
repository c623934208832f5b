//! The SCIM provisioning through the one login use case: the subject's credential, creation
//! whatever `[jit]` says, the identity by id and its isolation, a demotion's revocation.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::{Action, Current, Login, Logins, Outcome};
use crate::domain::{IdentityId, ScimInput};
use crate::kratos::{
    Identity, IdentityPage, KratosAdmin, KratosError, NewIdentity, OidcCredential, PatchOp,
};
use crate::mapper::{Isolation, Limits, MapperEngine};
use crate::provider::{Provider, Providers};
use crate::schema::IdentitySchemas;

const ADA: &str = "9f3c2a1e-0000-4000-8000-000000000001";

/// Kratos holding at most one identity, recording every call that writes.
#[derive(Default)]
struct Held {
    identity: Mutex<Option<Identity>>,
    writes: Mutex<Vec<&'static str>>,
    created: Mutex<Option<NewIdentity>>,
}

impl Held {
    fn holding(identity: Identity) -> Arc<Held> {
        let held = Held::default();
        *held.identity.lock().unwrap() = Some(identity);
        Arc::new(held)
    }

    fn write(&self, call: &'static str) {
        self.writes.lock().unwrap().push(call);
    }

    fn writes(&self) -> Vec<&'static str> {
        self.writes.lock().unwrap().clone()
    }
}

impl KratosAdmin for Arc<Held> {
    async fn find_by_credential_identifier(
        &self,
        identifier: &str,
    ) -> Result<Option<Identity>, KratosError> {
        Ok(self.identity.lock().unwrap().clone().filter(|i| {
            i.credential_identifiers
                .values()
                .flatten()
                .any(|held| held == identifier)
        }))
    }
    async fn get(&self, id: &IdentityId) -> Result<Identity, KratosError> {
        self.identity
            .lock()
            .unwrap()
            .clone()
            .filter(|i| i.id == *id)
            .ok_or_else(|| KratosError::NotFound {
                detail: "no such identity".into(),
            })
    }
    async fn create(&self, new: &NewIdentity) -> Result<Identity, KratosError> {
        self.write("create");
        *self.created.lock().unwrap() = Some(new.clone());
        Ok(identity(ADA, &new.oidc.identifier(), new.traits.clone()))
    }
    async fn patch(&self, _: &IdentityId, _: &[PatchOp]) -> Result<Identity, KratosError> {
        self.write("patch");
        Ok(self.identity.lock().unwrap().clone().unwrap())
    }
    async fn link_oidc(&self, _: &Identity, _: &OidcCredential) -> Result<Identity, KratosError> {
        self.write("link_oidc");
        Ok(self.identity.lock().unwrap().clone().unwrap())
    }
    async fn deactivate(&self, _: &IdentityId) -> Result<Identity, KratosError> {
        unreachable!("a login never deactivates")
    }
    async fn reactivate(&self, _: &IdentityId) -> Result<Identity, KratosError> {
        unreachable!("a login never reactivates")
    }
    async fn delete(&self, _: &IdentityId) -> Result<(), KratosError> {
        unreachable!("a login never deletes")
    }
    async fn revoke_sessions(&self, _: &IdentityId) -> Result<(), KratosError> {
        self.write("revoke_sessions");
        Ok(())
    }
    async fn list(&self, _: u32, _: Option<&str>) -> Result<IdentityPage, KratosError> {
        unreachable!("a login never lists")
    }
}

fn identity(id: &str, credential: &str, traits: Value) -> Identity {
    Identity {
        id: id.parse().unwrap(),
        schema_id: "default".into(),
        state: "active".into(),
        traits,
        metadata_public: None,
        metadata_admin: Some(json!({})),
        external_id: None,
        verifiable_addresses: vec![],
        credential_identifiers: [("oidc".to_owned(), vec![credential.to_owned()])].into(),
    }
}

/// okta-acme's admin Ada as Kratos holds her, with the credential `credential`.
fn ada_holding(credential: &str) -> Identity {
    identity(
        ADA,
        credential,
        json!({
            "email": "ada@acme.example", "tenant_id": "tenant-acme",
            "first_name": "Ada", "last_name": "Lovelace", "role": "admin",
        }),
    )
}

fn sample_fixture(provider: &str, case: &str) -> ScimInput {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("mappers")
        .join(provider)
        .join("tests")
        .join(format!("{case}.scim.json"));
    ScimInput::from_value(serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()).unwrap()
}

fn logins(kratos: &Arc<Held>) -> Logins<Arc<Held>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappers");
    let (providers, _) = Providers::load(&dir).unwrap();
    let engine = MapperEngine::start(
        providers.mapper_sources(),
        Limits::default(),
        1,
        Isolation::Threads,
    )
    .unwrap();
    Logins::new(
        Arc::clone(kratos),
        engine,
        Arc::new(providers),
        Arc::new(IdentitySchemas::builtin()),
    )
}

async fn provision(
    logins: &Logins<Arc<Held>>,
    provider: &Provider,
    input: &ScimInput,
    current: Current,
) -> Outcome {
    let login = Login::scim(provider, input, current, Duration::from_secs(5)).unwrap();
    logins.run(login).await.unwrap()
}

#[tokio::test]
async fn a_scim_create_carries_the_subject_credential_and_ignores_jit_create() {
    let kratos = Arc::new(Held::default());
    let logins = logins(&kratos);
    let mut provider = logins.providers().get("okta-acme").unwrap().clone();
    provider.settings.jit.create = false;
    provider.settings.jit.update = false;
    let input = sample_fixture("okta-acme", "scim-admin-by-group");

    let outcome = provision(&logins, &provider, &input, Current::ByCredential).await;

    assert_eq!(outcome.action, Action::Created, "{:?}", outcome.denial);
    assert_eq!(kratos.writes(), ["create"]);
    let created = kratos.created.lock().unwrap().clone().unwrap();
    // `[scim] subject = "userName"`: the credential the first SSO login through Polis finds.
    assert_eq!(created.oidc.identifier(), "okta-acme:ada@acme.example");
    assert_eq!(created.traits["role"], "admin");
    let provenance = &created.metadata_admin.unwrap()["kratos_jit"];
    assert_eq!(
        provenance["mapper_sha256"],
        provider.scim_mapper.as_ref().unwrap().sha256.as_str(),
        "the provenance names the SCIM mapper"
    );
}

#[tokio::test]
async fn a_scim_create_adopts_the_identity_an_sso_login_created() {
    let kratos = Held::holding(ada_holding("okta-acme:ada@acme.example"));
    let logins = logins(&kratos);
    let provider = logins.providers().get("okta-acme").unwrap();
    let input = sample_fixture("okta-acme", "scim-admin-by-group");

    let outcome = provision(&logins, provider, &input, Current::ByCredential).await;

    assert_eq!(outcome.action, Action::Unchanged, "{:?}", outcome.denial);
    assert_eq!(outcome.identity_id, Some(ADA.parse().unwrap()));
    assert!(kratos.writes().is_empty(), "{:?}", kratos.writes());
}

#[tokio::test]
async fn a_demotion_by_id_revokes_the_sessions_before_writing_the_role() {
    let kratos = Held::holding(ada_holding("okta-acme:ada@acme.example"));
    let logins = logins(&kratos);
    let provider = logins.providers().get("okta-acme").unwrap();
    let input = sample_fixture("okta-acme", "scim-demoted");

    let outcome = provision(
        &logins,
        provider,
        &input,
        Current::ById(ADA.parse().unwrap()),
    )
    .await;

    assert_eq!(outcome.action, Action::Updated, "{:?}", outcome.denial);
    assert_eq!(outcome.changed, ["traits.role"]);
    assert!(outcome.sessions_revoked);
    assert_eq!(kratos.writes(), ["revoke_sessions", "patch"]);
}

#[tokio::test]
async fn another_providers_identity_by_id_is_not_found_and_neither_mapped_nor_written() {
    let kratos = Held::holding(ada_holding("entra-globex:ada@acme.example"));
    let logins = logins(&kratos);
    let provider = logins.providers().get("okta-acme").unwrap();
    let input = sample_fixture("okta-acme", "scim-demoted");

    let outcome = provision(
        &logins,
        provider,
        &input,
        Current::ById(ADA.parse().unwrap()),
    )
    .await;

    assert_eq!(outcome.action, Action::NotFound);
    assert_eq!(outcome.identity_id, None);
    assert_eq!(outcome.output, None);
    assert_eq!(logins.engine().evaluations(), 0, "the mapper saw it");
    assert!(kratos.writes().is_empty(), "{:?}", kratos.writes());
}

#[tokio::test]
async fn an_id_kratos_does_not_hold_is_not_found_and_never_created() {
    let kratos = Arc::new(Held::default());
    let logins = logins(&kratos);
    let provider = logins.providers().get("okta-acme").unwrap();
    let input = sample_fixture("okta-acme", "scim-user");

    let outcome = provision(
        &logins,
        provider,
        &input,
        Current::ById(ADA.parse().unwrap()),
    )
    .await;

    assert_eq!(outcome.action, Action::NotFound);
    assert!(kratos.writes().is_empty(), "{:?}", kratos.writes());
}

#[tokio::test]
async fn an_identity_of_this_provider_under_another_subject_is_a_changed_subject() {
    let kratos = Held::holding(ada_holding("okta-acme:ada.lovelace@acme.example"));
    let logins = logins(&kratos);
    let provider = logins.providers().get("okta-acme").unwrap();
    let input = sample_fixture("okta-acme", "scim-demoted");

    let outcome = provision(
        &logins,
        provider,
        &input,
        Current::ById(ADA.parse().unwrap()),
    )
    .await;

    assert_eq!(outcome.action, Action::SubjectChanged);
    assert!(kratos.writes().is_empty(), "{:?}", kratos.writes());
}

#[tokio::test]
async fn a_foreign_e_mail_domain_over_scim_is_denied_with_nothing_written() {
    let kratos = Arc::new(Held::default());
    let logins = logins(&kratos);
    let provider = logins.providers().get("okta-acme").unwrap();
    let input = sample_fixture("okta-acme", "scim-foreign-domain");

    let outcome = provision(&logins, provider, &input, Current::ByCredential).await;

    assert_eq!(outcome.action, Action::Denied);
    assert_eq!(outcome.denial.unwrap().code(), "foreign_domain");
    assert!(kratos.writes().is_empty(), "{:?}", kratos.writes());
}

#[test]
fn a_scim_login_without_its_subject_attribute_names_the_attribute() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappers");
    let (providers, _) = Providers::load(&dir).unwrap();
    let umbrella = providers.get("okta-oidc-umbrella").unwrap();
    let input = ScimInput::from_value(json!({"userName": "jill@umbrella.example"})).unwrap();

    let error = Login::scim(
        umbrella,
        &input,
        Current::ByCredential,
        Duration::from_secs(1),
    )
    .err()
    .unwrap();

    assert!(error.to_string().contains("externalId"), "{error}");
}
