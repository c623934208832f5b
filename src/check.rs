//! `kratos-jit check` and `kratos-jit map`: a customer's mappers, run against their fixtures.
//!
//! Both run the login use case ([`crate::login`]) exactly as a live login does — mapper, Kratos's
//! output contract, policy, e-mail holder lookup, decision — against [`FixtureKratos`], a Kratos
//! port that holds the fixture's identity (if any) and writes nothing. So a fixture that passes
//! here is a login that behaves the same way in production. The reports are printed here too.
//!
//! A SCIM fixture (`<case>.scim.json`) runs the SCIM provisioning the same way: the provider's
//! SCIM mapper over the SCIM input, the subject from `[scim] subject`, the fixture's identity
//! held under that subject's credential. The report names the kind of each failing fixture and
//! counts SCIM fixtures apart.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::domain::scim::ScimSubjectError;
use crate::domain::{IdentityId, ScimInput, Subject};
use crate::kratos::Identity;
use crate::kratos::fixture::FixtureKratos;
use crate::login::{Action, Current, EntryPoint, Login, Logins, Outcome};
use crate::mapper::{Claims, Isolation, Limits, MapperEngine, MapperKind, WorkerProgram};
use crate::provider::{Expectation, Fixture, Provider, Providers, load_reporting};
use crate::schema::IdentitySchemas;

/// The id the fixture's current identity has (Kratos would have given it one).
const FIXTURE_IDENTITY_ID: &str = "00000000-0000-4000-8000-000000000001";

/// Why a fixture could not be run at all (as opposed to being refused).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CheckError {
    #[error("the claims have no `sub` (subject) string")]
    NoSubject,
    #[error("{0}")]
    ScimSubject(#[from] ScimSubjectError),
    #[error("{0}")]
    ScimInput(#[from] crate::domain::scim::InvalidScimInput),
    #[error("{0}")]
    Login(#[from] crate::login::LoginError),
}

/// The login use case over fixtures.
pub struct Checker {
    logins: Logins<FixtureKratos>,
    runtime: tokio::runtime::Runtime,
}

impl Checker {
    pub fn new(providers: Providers, engine: MapperEngine, schemas: IdentitySchemas) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime starts");
        Checker {
            logins: Logins::new(
                FixtureKratos::default(),
                engine,
                Arc::new(providers),
                Arc::new(schemas),
            ),
            runtime,
        }
    }

    pub fn providers(&self) -> &Providers {
        self.logins.providers()
    }

    /// One login of `provider` with `claims`, Kratos holding `current` (`{traits,
    /// metadata_public, metadata_admin}`) under this login's credential, or nothing.
    pub fn evaluate(
        &self,
        provider: &Provider,
        claims: &Value,
        current: Option<&Value>,
    ) -> Result<Outcome, CheckError> {
        self.evaluate_kind(provider, MapperKind::Claims, claims, current)
    }

    /// [`Self::evaluate`] for either kind of mapper: `input` is the claims, or the SCIM input
    /// of a SCIM provisioning (whose subject `[scim] subject` names).
    pub fn evaluate_kind(
        &self,
        provider: &Provider,
        kind: MapperKind,
        input: &Value,
        current: Option<&Value>,
    ) -> Result<Outcome, CheckError> {
        let scim = match kind {
            MapperKind::Claims => None,
            MapperKind::Scim => Some(ScimInput::from_value(input.clone())?),
        };
        let subject = match &scim {
            None => input
                .get("sub")
                .and_then(Value::as_str)
                .and_then(|s| Subject::parse(s).ok())
                .ok_or(CheckError::NoSubject)?,
            Some(scim) => scim.subject(provider.settings.scim.subject)?,
        };
        let held = current.map(|current| fixture_identity(provider, &subject, current));
        self.logins.kratos().hold(held);
        let login = Login {
            entry: EntryPoint::Check,
            provider,
            subject,
            claims: match &scim {
                None => Claims::Json(input),
                Some(scim) => Claims::Scim(scim),
            },
            current: Current::ByCredential,
            kratos_budget: Duration::from_secs(5),
            cleanup: vec![],
        };
        Ok(self.runtime.block_on(self.logins.run(login))?)
    }

    /// Runs every fixture of every provider.
    pub fn run(&self) -> Vec<ProviderReport> {
        self.providers()
            .iter()
            .map(|provider| ProviderReport {
                provider: provider.id.to_string(),
                fixtures: provider
                    .fixtures
                    .iter()
                    .map(|fixture| FixtureResult {
                        name: fixture.name.clone(),
                        kind: fixture.kind,
                        failure: self.check_fixture(provider, fixture).err(),
                    })
                    .collect(),
            })
            .collect()
    }

    fn check_fixture(&self, provider: &Provider, fixture: &Fixture) -> Result<(), String> {
        let claims_file = fixture.claims_path.display();
        let expect_file = fixture.expect_path.display();
        let outcome = self
            .evaluate_kind(
                provider,
                fixture.kind,
                &fixture.claims,
                fixture.identity.as_ref(),
            )
            .map_err(|e| format!("{claims_file}: the login could not run: {e}"))?;
        let identity = outcome
            .output
            .as_ref()
            .and_then(|o| o.get("identity"))
            .cloned()
            .unwrap_or(Value::Null);
        match (&fixture.expect, &outcome.denial) {
            (Expectation::Identity(expected), None) if &identity == expected => Ok(()),
            (Expectation::Identity(expected), None) => Err(format!(
                "{expect_file}: the mapped identity differs from the expected one (- expected, + actual):\n{}",
                diff(expected, &identity)
            )),
            (Expectation::Identity(_), Some(denial)) => Err(format!(
                "{expect_file}: expected an identity, but the login is denied: {denial}"
            )),
            (Expectation::Denied(expected), Some(denial)) => {
                let reason = denial.to_string();
                if reason.contains(expected.as_str()) {
                    Ok(())
                } else {
                    Err(format!(
                        "{expect_file}: denied, but for another reason:\n  expected a reason containing: {expected}\n  actual reason: {reason}"
                    ))
                }
            }
            (Expectation::Denied(expected), None) => Err(format!(
                "{expect_file}: expected a denial containing \"{expected}\", but the login is allowed and maps to:\n{}",
                pretty(&identity)
            )),
        }
    }
}

/// The identity Kratos would hold for a fixture's `identity.json`.
fn fixture_identity(provider: &Provider, subject: &Subject, current: &Value) -> Identity {
    let part = |key: &str| current.get(key).filter(|v| !v.is_null()).cloned();
    let identifier = format!("{}:{}", provider.id, subject.as_str());
    Identity {
        id: FIXTURE_IDENTITY_ID
            .parse::<IdentityId>()
            .expect("a valid UUID"),
        schema_id: provider.settings.schema_id.clone(),
        state: "active".into(),
        traits: part("traits").unwrap_or_else(|| Value::Object(Map::new())),
        metadata_public: part("metadata_public"),
        metadata_admin: part("metadata_admin"),
        external_id: None,
        verifiable_addresses: vec![],
        credential_identifiers: [("oidc".to_owned(), vec![identifier])].into(),
    }
}

/// The result of one fixture.
#[derive(Debug, Clone, PartialEq)]
pub struct FixtureResult {
    pub name: String,
    /// Which mapper the fixture ran.
    pub kind: MapperKind,
    /// `None` when the fixture passed; otherwise a readable explanation (with a diff).
    pub failure: Option<String>,
}

/// The results of one provider's fixtures.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderReport {
    pub provider: String,
    pub fixtures: Vec<FixtureResult>,
}

impl ProviderReport {
    pub fn failed(&self) -> usize {
        self.fixtures.iter().filter(|f| f.failure.is_some()).count()
    }

    /// How many of the fixtures ran the SCIM mapper.
    pub fn scim(&self) -> usize {
        self.fixtures
            .iter()
            .filter(|f| f.kind == MapperKind::Scim)
            .count()
    }
}

/// Prints `check`'s report: a line per provider, each failure with its explanation, a summary.
/// Returns whether every fixture passed.
pub fn print_reports(reports: &[ProviderReport], out: &mut impl Write) -> std::io::Result<bool> {
    let width = reports.iter().map(|r| r.provider.len()).max().unwrap_or(0);
    let mut failed = 0;
    for report in reports {
        let total = report.fixtures.len();
        let kinds = match report.scim() {
            0 => String::new(),
            scim => format!(" ({} claims, {scim} scim)", total - scim),
        };
        match report.failed() {
            0 => writeln!(
                out,
                "ok    {:width$}  {total} fixture(s) passed{kinds}",
                report.provider
            )?,
            n => {
                failed += n;
                writeln!(
                    out,
                    "FAIL  {:width$}  {n} of {total} fixture(s) failed{kinds}",
                    report.provider
                )?;
                for fixture in report.fixtures.iter().filter(|f| f.failure.is_some()) {
                    writeln!(
                        out,
                        "  {} ({}): {}",
                        fixture.name,
                        fixture.kind,
                        fixture.failure.as_deref().unwrap_or_default()
                    )?;
                }
            }
        }
    }
    if failed == 0 {
        writeln!(out, "{} provider(s), all fixtures passed", reports.len())?;
    } else {
        writeln!(out, "{failed} fixture(s) failed")?;
    }
    Ok(failed == 0)
}

/// Prints `map`'s result: the mapper output on `out`, a refusal's reason on `err`. Returns
/// whether the login would be allowed.
pub fn print_map(
    outcome: &Outcome,
    out: &mut impl Write,
    err: &mut impl Write,
) -> std::io::Result<bool> {
    if let Some(output) = &outcome.output {
        writeln!(out, "{}", pretty(output))?;
    }
    match (&outcome.action, &outcome.denial) {
        (Action::Denied, Some(denial)) => {
            writeln!(err, "denied: {denial}")?;
            Ok(false)
        }
        _ => Ok(true),
    }
}

/// Pretty JSON with sorted keys (serde_json's map is ordered).
pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

fn diff(expected: &Value, actual: &Value) -> String {
    let (expected, actual) = (pretty(expected), pretty(actual));
    let mut out = String::new();
    let diff = similar::TextDiff::from_lines(&expected, &actual);
    for group in diff.grouped_ops(2) {
        for op in group {
            for change in diff.iter_changes(&op) {
                let sign = match change.tag() {
                    similar::ChangeTag::Delete => '-',
                    similar::ChangeTag::Insert => '+',
                    similar::ChangeTag::Equal => ' ',
                };
                let _ = write!(out, "    {sign} {}", change.value());
                if change.missing_newline() {
                    out.push('\n');
                }
            }
        }
        out.push_str("    …\n");
    }
    out
}

/// The mapper engine `check` and `map` use: worker processes, two per core.
fn start_engine(
    providers: &Providers,
    worker: WorkerProgram,
    err: &mut impl Write,
) -> Option<MapperEngine> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    match MapperEngine::start(
        providers.mapper_sources(),
        Limits::default(),
        threads,
        Isolation::Processes(worker),
    ) {
        Ok(engine) => Some(engine),
        Err(errors) => {
            for error in &errors {
                let _ = writeln!(err, "{error}");
            }
            None
        }
    }
}

fn checker(dir: &Path, worker: WorkerProgram, err: &mut impl Write) -> Option<Checker> {
    let providers = load_reporting(dir, err)?;
    let engine = start_engine(&providers, worker, err)?;
    Some(Checker::new(providers, engine, IdentitySchemas::builtin()))
}

/// `kratos-jit check DIR`: whether every fixture of every provider passed (reports on `out`,
/// load problems on `err`).
pub fn check_command(
    dir: &Path,
    worker: WorkerProgram,
    out: &mut impl Write,
    err: &mut impl Write,
) -> std::io::Result<bool> {
    let Some(checker) = checker(dir, worker, err) else {
        return Ok(false);
    };
    print_reports(&checker.run(), out)
}

/// `kratos-jit map`: whether the login would be allowed (the output on `out`, a refusal on `err`).
pub fn map_command(
    dir: &Path,
    provider: &str,
    claims: &Value,
    identity: Option<&Value>,
    worker: WorkerProgram,
    out: &mut impl Write,
    err: &mut impl Write,
) -> anyhow::Result<bool> {
    let Some(checker) = checker(dir, worker, err) else {
        return Ok(false);
    };
    let Some(provider) = checker.providers().get(provider) else {
        anyhow::bail!("no provider `{provider}` in {}", dir.display());
    };
    match checker.evaluate(provider, claims, identity) {
        Ok(outcome) => Ok(print_map(&outcome, out, err)?),
        Err(error) => {
            writeln!(err, "error: {error}")?;
            Ok(false)
        }
    }
}
