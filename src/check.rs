//! `kratos-jit check` and `kratos-jit map`: a customer's mappers, run against their fixtures.
//!
//! Both commands go through [`evaluate`], the same pipeline a live login uses before it touches
//! Kratos: mapper → Kratos's output contract → policy (tenant, domains, schema). So a fixture that
//! passes here is a login that behaves the same way in production.

use std::fmt::Write as _;

use serde_json::Value;

use crate::mapper::{MappedIdentity, MapperEngine, MapperError, identity_ext_var};
use crate::policy::{self, Denial};
use crate::provider::{Expectation, Fixture, Provider, Providers};
use crate::schema::IdentitySchemas;

/// What the pipeline made of one set of claims.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The mapper's raw output, exactly as Kratos would compute it (absent when the mapper failed).
    pub output: Option<Value>,
    /// Why the login would be refused, if it would.
    pub denial: Option<Denial>,
}

/// Runs a provider's mapper and the policy over one set of claims.
pub fn evaluate(
    engine: &MapperEngine,
    schemas: &IdentitySchemas,
    provider: &Provider,
    claims: &Value,
    current: Option<&Value>,
) -> Result<Evaluation, MapperError> {
    let output = match engine.evaluate_blocking(
        provider.id.as_str(),
        claims.clone(),
        identity_ext_var(current),
    ) {
        Ok(output) => output,
        Err(MapperError::Denied { message, .. }) => {
            return Ok(Evaluation {
                output: None,
                denial: Some(Denial::Mapper(message)),
            });
        }
        Err(e) => return Err(e),
    };
    let mapped = MappedIdentity::from_output(&output)?;
    let denial = policy::admit(provider, &mapped, schemas).err();
    Ok(Evaluation {
        output: Some(output),
        denial,
    })
}

/// The result of one fixture.
#[derive(Debug, Clone, PartialEq)]
pub struct FixtureResult {
    pub name: String,
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
}

/// Runs every fixture of every provider.
pub fn run(
    providers: &Providers,
    engine: &MapperEngine,
    schemas: &IdentitySchemas,
) -> Vec<ProviderReport> {
    providers
        .iter()
        .map(|provider| ProviderReport {
            provider: provider.id.to_string(),
            fixtures: provider
                .fixtures
                .iter()
                .map(|fixture| FixtureResult {
                    name: fixture.name.clone(),
                    failure: check_fixture(engine, schemas, provider, fixture).err(),
                })
                .collect(),
        })
        .collect()
}

fn check_fixture(
    engine: &MapperEngine,
    schemas: &IdentitySchemas,
    provider: &Provider,
    fixture: &Fixture,
) -> Result<(), String> {
    let claims_file = fixture.claims_path.display();
    let evaluation = evaluate(
        engine,
        schemas,
        provider,
        &fixture.claims,
        fixture.identity.as_ref(),
    )
    .map_err(|e| format!("{claims_file}: the mapper failed: {e}"))?;
    match (&fixture.expect, evaluation) {
        (
            Expectation::Identity(expected),
            Evaluation {
                output: Some(output),
                denial: None,
            },
        ) => {
            let actual = output.get("identity").cloned().unwrap_or(Value::Null);
            if &actual == expected {
                Ok(())
            } else {
                Err(format!(
                    "{}: the mapped identity differs from the expected one (- expected, + actual):\n{}",
                    fixture.expect_path.display(),
                    diff(expected, &actual)
                ))
            }
        }
        (
            Expectation::Identity(_),
            Evaluation {
                denial: Some(denial),
                ..
            },
        ) => Err(format!(
            "{}: expected an identity, but the login is denied: {denial}",
            fixture.expect_path.display()
        )),
        (
            Expectation::Denied(expected),
            Evaluation {
                denial: Some(denial),
                ..
            },
        ) => {
            let reason = denial.to_string();
            if reason.contains(expected.as_str()) {
                Ok(())
            } else {
                Err(format!(
                    "{}: denied, but for another reason:\n  expected a reason containing: {expected}\n  actual reason: {reason}",
                    fixture.expect_path.display()
                ))
            }
        }
        (
            Expectation::Denied(expected),
            Evaluation {
                output,
                denial: None,
            },
        ) => Err(format!(
            "{}: expected a denial containing \"{expected}\", but the login is allowed and maps to:\n{}",
            fixture.expect_path.display(),
            pretty(
                output
                    .as_ref()
                    .and_then(|o| o.get("identity"))
                    .unwrap_or(&Value::Null)
            )
        )),
        (
            Expectation::Identity(_),
            Evaluation {
                output: None,
                denial: None,
            },
        ) => Err(format!("{claims_file}: the mapper produced no output")),
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
