use super::*;
use crate::domain::LinkRefusal;
use crate::provider::{Provider, Providers};
use std::path::Path;

fn acme() -> Provider {
    let (providers, _) =
        Providers::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("mappers")).unwrap();
    providers.get("okta-acme").unwrap().clone()
}

fn provenance() -> Provenance {
    Provenance {
        provider: "okta-acme".parse().unwrap(),
        subject: Subject::parse("ada@acme.example").unwrap(),
        synced_at: "2026-11-24T06:00:00Z".into(),
        mapper_sha256: "ab12".into(),
    }
}

fn mapped(role: &str) -> MappedIdentity {
    MappedIdentity::from_output(&json!({"identity": {
        "traits": {"email": "ada@acme.example", "tenant_id": "tenant-acme", "first_name": "Ada",
                   "last_name": "Lovelace", "role": role},
        "verified_addresses": [{"value": "ada@acme.example", "via": "email"}]
    }}))
    .unwrap()
}

fn existing(traits: Value, metadata_admin: Value) -> Identity {
    Identity {
        id: "6f1d3c2b-8a7e-4b5c-9d0e-1a2b3c4d5e6f".parse().unwrap(),
        schema_id: "default".into(),
        state: "active".into(),
        traits,
        metadata_public: None,
        metadata_admin: Some(metadata_admin).filter(|v| !v.is_null()),
        external_id: None,
        verifiable_addresses: vec![],
        credential_identifiers: Default::default(),
    }
}

#[test]
fn a_first_login_creates_with_the_oidc_credential_and_provenance_in_admin_metadata() {
    let Decision::Create(new) = decide(
        &acme().rules(),
        &mapped("admin"),
        Found::Nothing,
        &provenance(),
    ) else {
        panic!()
    };
    assert_eq!(new.oidc.identifier(), "okta-acme:ada@acme.example");
    assert_eq!(new.traits["role"], "admin");
    assert_eq!(
        new.metadata_admin.as_ref().unwrap()[PROVENANCE_KEY]["mapper_sha256"],
        "ab12"
    );
    assert_eq!(new.metadata_public, None);
    assert_eq!(new.verified_addresses.len(), 1);
    assert!(new.verified_addresses[0].verified);
}

#[test]
fn a_first_login_is_denied_when_jit_create_is_off() {
    let mut provider = acme();
    provider.settings.jit.create = false;
    let decision = decide(
        &provider.rules(),
        &mapped("admin"),
        Found::Nothing,
        &provenance(),
    );
    assert_eq!(
        decision,
        Decision::Denied(Denial::CreateDisabled {
            provider: "okta-acme".parse().unwrap()
        })
    );
}

#[test]
fn the_same_claims_again_change_nothing() {
    let current = existing(
        Value::Object(mapped("admin").traits),
        json!({"kratos_jit": {"synced_at": "earlier"}}),
    );
    let decision = decide(
        &acme().rules(),
        &mapped("admin"),
        Found::Credential(&current),
        &provenance(),
    );
    assert_eq!(decision, Decision::Unchanged { id: current.id });
}

#[test]
fn a_demotion_at_the_idp_patches_only_the_role_and_keeps_other_fields() {
    let mut traits = mapped("admin").traits;
    traits.insert("nickname".into(), json!("set by the app"));
    let current = existing(Value::Object(traits), json!({"note": "set by an admin"}));
    let Decision::Update { ops, changed, .. } = decide(
        &acme().rules(),
        &mapped("user"),
        Found::Credential(&current),
        &provenance(),
    ) else {
        panic!()
    };
    assert_eq!(changed, vec!["traits.role"]);
    assert_eq!(
        ops,
        vec![
            PatchOp::Add {
                path: "/traits/role".into(),
                value: json!("user")
            },
            PatchOp::Add {
                path: "/metadata_admin/kratos_jit".into(),
                value: provenance().to_value()
            },
        ]
    );
}

#[test]
fn provenance_is_set_whole_when_admin_metadata_is_null() {
    let mut traits = mapped("admin").traits;
    traits.insert("last_name".into(), json!("Byron"));
    let current = existing(Value::Object(traits), Value::Null);
    let Decision::Update { ops, changed, .. } = decide(
        &acme().rules(),
        &mapped("admin"),
        Found::Credential(&current),
        &provenance(),
    ) else {
        panic!()
    };
    assert_eq!(changed, vec!["traits.last_name"]);
    assert_eq!(
        ops[1],
        PatchOp::Add {
            path: "/metadata_admin".into(),
            value: json!({"kratos_jit": provenance().to_value()})
        }
    );
}

#[test]
fn with_jit_update_off_an_existing_identity_is_only_signed_in() {
    let mut provider = acme();
    provider.settings.jit.update = false;
    let current = existing(
        json!({"email": "ada@acme.example", "tenant_id": "tenant-acme", "role": "guest"}),
        Value::Null,
    );
    assert_eq!(
        decide(
            &provider.rules(),
            &mapped("admin"),
            Found::Credential(&current),
            &provenance()
        ),
        Decision::Unchanged { id: current.id }
    );
}

#[test]
fn an_identity_of_a_tenant_the_provider_is_not_bound_to_is_never_updated() {
    let current = existing(
        json!({"email": "ada@acme.example", "tenant_id": "tenant-globex", "role": "user"}),
        Value::Null,
    );
    let decision = decide(
        &acme().rules(),
        &mapped("admin"),
        Found::Credential(&current),
        &provenance(),
    );
    assert!(
        matches!(decision, Decision::Denied(Denial::ForeignTenant { ref tenant, .. }) if tenant.as_str() == "tenant-globex"),
        "{decision:?}"
    );
}

#[test]
fn linking_by_e_mail_is_refused_unless_allowed_verified_and_same_tenant() {
    let candidate = existing(
        json!({"email": "ada@acme.example", "tenant_id": "tenant-acme"}),
        Value::Null,
    );
    let mut provider = acme();
    let err = may_link(&provider.rules(), &mapped("admin"), &candidate).unwrap_err();
    assert!(
        err.to_string().contains("linking by e-mail is off"),
        "{err}"
    );

    provider.settings.jit.link_by_verified_email = true;
    assert_eq!(
        may_link(&provider.rules(), &mapped("admin"), &candidate),
        Ok(())
    );

    let mut unverified = mapped("admin");
    unverified.verified_addresses.clear();
    assert!(
        may_link(&provider.rules(), &unverified, &candidate)
            .unwrap_err()
            .to_string()
            .contains("did not assert")
    );

    let other_tenant = existing(
        json!({"email": "ada@acme.example", "tenant_id": "tenant-globex"}),
        Value::Null,
    );
    assert!(
        may_link(&provider.rules(), &mapped("admin"), &other_tenant)
            .unwrap_err()
            .to_string()
            .contains("another tenant")
    );
}

#[test]
fn an_identity_holding_the_e_mail_is_linked_in_one_write_with_the_owned_fields_set() {
    let mut provider = acme();
    provider.settings.jit.link_by_verified_email = true;
    let holder = existing(
        json!({"email": "ada@acme.example", "tenant_id": "tenant-acme", "role": "user",
               "nickname": "set by the application"}),
        json!({"note": "set by an admin"}),
    );
    let Decision::Link {
        identity,
        credential,
        changed,
    } = decide(
        &provider.rules(),
        &mapped("admin"),
        Found::EmailHolder(&holder),
        &provenance(),
    )
    else {
        panic!()
    };
    assert_eq!(credential.identifier(), "okta-acme:ada@acme.example");
    assert_eq!(changed[0], LINKED_FIELD);
    assert!(changed.contains(&"traits.role".to_owned()), "{changed:?}");
    assert_eq!(identity.id, holder.id);
    assert_eq!(identity.traits["role"], "admin");
    assert_eq!(identity.traits["nickname"], "set by the application");
    let admin = identity.metadata_admin.as_ref().unwrap();
    assert_eq!(admin["note"], "set by an admin");
    assert_eq!(admin[PROVENANCE_KEY]["mapper_sha256"], "ab12");
}

#[test]
fn an_identity_holding_the_e_mail_is_never_linked_against_the_rules() {
    let holder = existing(
        json!({"email": "ada@acme.example", "tenant_id": "tenant-acme"}),
        Value::Null,
    );
    let decision = decide(
        &acme().rules(),
        &mapped("admin"),
        Found::EmailHolder(&holder),
        &provenance(),
    );
    assert!(
        matches!(
            decision,
            Decision::Denied(Denial::Linking {
                why: LinkRefusal::Disabled,
                ..
            })
        ),
        "{decision:?}"
    );
    let mut no_create = acme();
    no_create.settings.jit.create = false;
    no_create.settings.jit.link_by_verified_email = true;
    let decision = decide(
        &no_create.rules(),
        &mapped("admin"),
        Found::EmailHolder(&holder),
        &provenance(),
    );
    assert!(matches!(
        decision,
        Decision::Denied(Denial::CreateDisabled { .. })
    ));
}

#[test]
fn pointer_tokens_are_escaped() {
    assert_eq!(token("a/b~c"), "a~1b~0c");
}
