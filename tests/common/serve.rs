//! `serve`'s application built in-process, as `serve` builds it: the configuration from the
//! settings given (the process's own variables are not read), the providers it names, each
//! SCIM provider's secret, and the SCIM store the configuration names.

use kratos_jit::config;
use kratos_jit::http::{Application, open_scim_store};
use kratos_jit::mapper::WorkerProgram;
use kratos_jit::provider::Providers;
use kratos_jit::secret::Secret;

/// The application for `env`, bound and not yet running. Every SCIM provider's secret is
/// `scim_secret(<the name of its secret variable>)`.
pub async fn build(
    env: Vec<(String, String)>,
    scim_secret: impl Fn(&str) -> &'static str,
) -> Application {
    let mut config = config::load_from(None, env).unwrap_or_else(|e| panic!("{e:?}"));
    let (providers, _) = Providers::load(&config.providers).unwrap_or_else(|e| panic!("{e:?}"));
    config.scim.dev_secrets = kratos_jit::serve::dev_scim_secrets(&providers)
        .into_iter()
        .map(|(name, _)| {
            let secret = Secret::new(scim_secret(&name));
            (name, secret)
        })
        .collect();
    let store = open_scim_store(&config).await.unwrap();
    Application::build_with_store(
        &config,
        providers,
        WorkerProgram::new(env!("CARGO_BIN_EXE_kratos-jit")),
        store,
    )
    .unwrap()
}
