//! The mapper's error vocabulary: why a mapper produced no usable output, and where in its file.
//!
//! Every layer of the mapper (compiler, evaluator, worker processes, engine) answers with a
//! [`MapperError`], and worker processes send it over their pipe, hence the serde derives. It
//! depends on nothing but std and serde, so the output contract can share it.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where in a mapper file something went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

fn computing(field: &Option<String>) -> String {
    field
        .as_ref()
        .map(|f| format!(" (while computing {f})"))
        .unwrap_or_default()
}

fn at(location: &Option<Location>) -> String {
    location
        .as_ref()
        .map(|l| format!(" at {l}"))
        .unwrap_or_default()
}

/// Why a mapper produced no usable output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MapperError {
    #[error("{location}: {message}")]
    Compile { location: Location, message: String },
    /// The mapper refused the login with `error "..."`.
    #[error("{message}")]
    Denied {
        message: String,
        location: Option<Location>,
    },
    #[error("the mapper reads the claim or field `{field}`, which is not there{}{}; guard it with std.objectHas or std.get", at(.location), computing(.output_field))]
    MissingField {
        field: String,
        location: Option<Location>,
        output_field: Option<String>,
    },
    #[error("the mapper failed{}{}: {message}", at(.location), computing(.output_field))]
    Runtime {
        message: String,
        location: Option<Location>,
        output_field: Option<String>,
    },
    #[error("the mapper did not finish within {0:?}")]
    Timeout(Duration),
    #[error("the mapper allocated more than {0} bytes")]
    TooMuchMemory(u64),
    #[error("the mapper recursed deeper than {0} calls")]
    StackOverflow(usize),
    #[error("the mapper output is larger than {0} bytes")]
    OutputTooLarge(usize),
    #[error("the mapper output is invalid: {0}")]
    InvalidOutput(String),
    #[error("the mapper's worker process failed: {0}")]
    WorkerCrashed(String),
    #[error("no mapper is loaded for provider `{0}`")]
    UnknownProvider(String),
    /// A SCIM input for a provider without `scim.jsonnet`.
    #[error("provider `{0}` has no SCIM mapper (scim.jsonnet)")]
    NoScimMapper(String),
    #[error("the mapper engine is not running")]
    EngineStopped,
}

impl MapperError {
    /// A denial the mapper chose (as opposed to a broken or runaway mapper).
    pub fn is_denial(&self) -> bool {
        matches!(self, MapperError::Denied { .. })
    }
}
