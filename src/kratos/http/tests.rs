use super::*;

fn settings() -> KratosSettings {
    KratosSettings {
        admin_url: "http://kratos:4434".to_owned(),
        ..KratosSettings::default()
    }
}

#[test]
fn defaults_are_two_seconds_per_attempt_five_in_total_and_two_retries() {
    let defaults = KratosSettings::default();

    assert_eq!(defaults.request_timeout, Duration::from_secs(2));
    assert_eq!(defaults.deadline, Duration::from_secs(5));
    assert_eq!(defaults.max_retries, 2);
    assert!(HttpKratos::new(defaults).is_ok());
}

#[test]
fn secrets_never_show_in_debug_output() {
    let bearer = KratosSettings {
        bearer_token: Some(Secret::new("ory_pat_SUPERSECRET")),
        ..settings()
    };
    let basic = KratosSettings {
        basic_auth: Some(("proxy-user".to_owned(), Secret::new("hunter2-SUPERSECRET"))),
        ..settings()
    };
    let in_url = KratosSettings {
        admin_url: "http://user:SUPERSECRET@kratos:4434".to_owned(),
        ..settings()
    };
    assert!(!format!("{in_url:?}").contains("SUPERSECRET"));

    for settings in [bearer, basic] {
        let settings_debug = format!("{settings:?} {settings:#?}");
        let client_debug = format!("{:?}", HttpKratos::new(settings).expect("valid settings"));

        for text in [settings_debug, client_debug] {
            assert!(!text.contains("SUPERSECRET"), "{text}");
            assert!(text.contains("[redacted]"), "{text}");
        }
    }
}

#[test]
fn every_settings_problem_is_reported_at_once() {
    let settings = KratosSettings {
        admin_url: "ftp://user:pw@kratos/?x=1".to_owned(),
        bearer_token: Some(Secret::new("t")),
        basic_auth: Some(("u".to_owned(), Secret::new("p"))),
        request_timeout: Duration::ZERO,
        deadline: Duration::ZERO,
        max_retries: 2,
    };

    let Err(SettingsError::Invalid { problems }) = HttpKratos::new(settings) else {
        panic!("invalid settings accepted");
    };

    assert_eq!(problems.len(), 6, "{problems:#?}");
    assert!(
        problems.iter().all(|problem| !problem.contains("pw")),
        "{problems:#?}"
    );
}

#[test]
fn an_unparsable_admin_url_is_refused() {
    let settings = KratosSettings {
        admin_url: "kratos admin".to_owned(),
        ..settings()
    };

    assert!(matches!(
        HttpKratos::new(settings),
        Err(SettingsError::Invalid { .. })
    ));
}

#[test]
fn endpoint_urls_keep_a_path_prefix_and_normalize_the_identity_id() {
    let kratos = HttpKratos::new(KratosSettings {
        admin_url: "https://proxy.example/kratos/".to_owned(),
        ..settings()
    })
    .expect("valid settings");

    let id: IdentityId = "9B1C6A2E-8F3D-4C1E-9A63-2F7F1F0A2B11".parse().unwrap();
    let url = kratos.identity_url(&id, &["sessions"]).expect("a URL");

    assert_eq!(
        url.as_str(),
        "https://proxy.example/kratos/admin/identities/9b1c6a2e-8f3d-4c1e-9a63-2f7f1f0a2b11/sessions"
    );
}

#[test]
fn only_patches_of_whole_values_are_replayed_after_an_unknown_outcome() {
    let value = serde_json::json!(["eng"]);
    let add = PatchOp::Add {
        path: "/metadata_admin/groups".to_owned(),
        value: value.clone(),
    };
    let replace = PatchOp::Replace {
        path: "/state".to_owned(),
        value: value.clone(),
    };
    let append = PatchOp::Add {
        path: "/metadata_admin/groups/-".to_owned(),
        value,
    };
    let remove = PatchOp::Remove {
        path: "/metadata_public".to_owned(),
    };

    assert!(replay_safe(&[add.clone(), replace.clone()]));
    assert!(!replay_safe(&[add.clone(), append]));
    assert!(!replay_safe(&[replace, remove]));
}
