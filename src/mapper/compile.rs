//! Loading and compiling mappers: parse and analyse once, report against the file.
//!
//! A [`MapperSource`] is a mapper as read from disk, with the hash recorded as provenance.
//! [`compile`] checks it without evaluating it; every failure is a [`MapperError::Compile`] that
//! names the file, line and column. The same jrsonnet state setup ([`new_state`]) serves the
//! evaluator, so a mapper that compiles here compiles there, and imports are refused in both.

use std::path::{Path, PathBuf};

use jrsonnet_evaluator::error::ErrorKind;
use jrsonnet_evaluator::{PreparedSnippet, State, trace::PathResolver};
use sha2::{Digest, Sha256};

use super::error::{Location, MapperError};
use super::input::MapperKind;
use super::nesting;
use crate::provider::LineIndex;

/// A mapper file as loaded from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapperSource {
    /// The provider the mapper belongs to.
    pub provider: String,
    /// Which of the provider's mappers this is: each provider has at most one of each kind.
    pub kind: MapperKind,
    /// Where it was read from; used in every diagnostic.
    pub path: PathBuf,
    pub code: String,
    /// Hex SHA-256 of the code: recorded as provenance on identities it produced.
    pub sha256: String,
}

impl MapperSource {
    /// A claims mapper (`mapper.jsonnet`).
    pub fn new(
        provider: impl Into<String>,
        path: impl Into<PathBuf>,
        code: impl Into<String>,
    ) -> Self {
        Self::of_kind(MapperKind::Claims, provider, path, code)
    }

    /// A SCIM mapper (`scim.jsonnet`).
    pub fn scim(
        provider: impl Into<String>,
        path: impl Into<PathBuf>,
        code: impl Into<String>,
    ) -> Self {
        Self::of_kind(MapperKind::Scim, provider, path, code)
    }

    pub fn of_kind(
        kind: MapperKind,
        provider: impl Into<String>,
        path: impl Into<PathBuf>,
        code: impl Into<String>,
    ) -> Self {
        let code = code.into();
        let sha256 = hex::encode(Sha256::digest(code.as_bytes()));
        MapperSource {
            provider: provider.into(),
            kind,
            path: path.into(),
            code,
            sha256,
        }
    }
}

pub(super) fn new_state() -> (State, jrsonnet_stdlib::ContextInitializer) {
    let std_ctx = jrsonnet_stdlib::ContextInitializer::new(PathResolver::Absolute);
    let mut builder = State::builder();
    builder.context_initializer(std_ctx.clone());
    // No import resolver: the default one refuses every import, as Kratos's ErrorImporter does.
    (builder.build(), std_ctx)
}

fn locate(span: &jrsonnet_evaluator::Span, path: &Path) -> Location {
    let [loc] = span.0.map_source_locations(&[span.1]);
    Location {
        path: path.to_owned(),
        line: loc.line,
        column: loc.column,
    }
}

/// The innermost location of an evaluation error that lies in the mapper file.
pub(super) fn error_location(e: &jrsonnet_evaluator::Error, path: &Path) -> Option<Location> {
    e.trace()
        .0
        .iter()
        .find_map(|el| el.location.as_ref())
        .map(|span| locate(span, path))
}

/// Parses and analyses a mapper without evaluating it.
pub fn compile(source: &MapperSource) -> Result<(), MapperError> {
    let (state, _) = new_state();
    prepare(&state, source).map(|_| ())
}

pub(super) fn prepare(
    state: &State,
    source: &MapperSource,
) -> Result<PreparedSnippet, MapperError> {
    if let Err(too_deep) = nesting::check(&source.code) {
        let (line, column) = LineIndex::new(&source.code).locate(too_deep.offset);
        return Err(MapperError::Compile {
            location: Location {
                path: source.path.clone(),
                line,
                column,
            },
            message: format!(
                "the mapper nests too deeply here: Jsonnet's parser would need more than {} MiB \
                 of stack; flatten it (fewer nested brackets, locals or conditions)",
                nesting::LIMIT_BYTES >> 20
            ),
        });
    }
    let name = source.path.display().to_string();
    // The parser never grows its own stack: give it one sized for what `nesting` admits,
    // whichever thread (2 MiB runtime worker, 8 MiB loader) calls.
    stacker::grow(nesting::PARSE_STACK_BYTES, || {
        state.prepare_snippet(name, source.code.as_str())
    })
    .map_err(|e| {
        let (message, location) = match e.error() {
            ErrorKind::ImportSyntaxError { path, error } => {
                let offset = error.location.1.min(path.code().len() as u32);
                let [loc] = path.map_source_locations(&[offset]);
                let location = Location {
                    path: source.path.clone(),
                    line: loc.line,
                    column: loc.column,
                };
                (format!("syntax error: {}", error.message), location)
            }
            ErrorKind::StaticAnalysisError(diagnostics) => {
                let first = diagnostics.first();
                let location = first
                    .and_then(|d| d.span.as_ref())
                    .map(|s| locate(s, &source.path))
                    .unwrap_or(Location {
                        path: source.path.clone(),
                        line: 1,
                        column: 1,
                    });
                let message = diagnostics
                    .iter()
                    .map(|d| d.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ");
                (message, location)
            }
            other => (
                other.to_string(),
                Location {
                    path: source.path.clone(),
                    line: 1,
                    column: 1,
                },
            ),
        };
        MapperError::Compile { location, message }
    })
}
