//! The evaluator: one jrsonnet state with every mapper compiled, run under [`Limits`].
//!
//! [`Evaluator::evaluate`] binds the `claims` and `identity` ext vars, runs one mapper inside the
//! [`guard`]'s armed region, unbinds them again and turns every jrsonnet failure
//! into a [`MapperError`] ([`classify`]). A SCIM mapper ([`MapperKind::Scim`],
//! [`Evaluator::evaluate_kind`]) gets `scim` instead of `claims`: the other kind's ext var is
//! not defined at all, and a mapper that asks for it fails with an error that says which ext
//! vars its kind is given. The evaluator is `!Send`: it lives on the thread or in
//! the worker process that made it. Its owner calls
//! [`Evaluator::collect_garbage_now_and_then`] after each answer, because jrsonnet never frees
//! reference cycles on its own.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jrsonnet_evaluator::error::ErrorKind;
use jrsonnet_evaluator::{PreparedSnippet, State, Val};
use serde_json::Value;

use super::compile::{MapperSource, error_location, new_state, prepare};
use super::error::MapperError;
use super::input::MapperKind;
use super::{convert, guard};

/// Limits applied to every evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall time for one evaluation, including forcing the output (Kratos: 1 s).
    pub timeout: Duration,
    /// Size of the minified JSON output (Kratos: 256 KiB).
    pub max_output_bytes: usize,
    /// Jsonnet call depth (go-jsonnet's default is 500).
    pub max_stack: usize,
    /// Bytes one evaluation may allocate in total.
    pub max_allocated_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(1),
            max_output_bytes: 256 * 1024,
            max_stack: 500,
            max_allocated_bytes: 512 * 1024 * 1024,
        }
    }
}

struct Compiled {
    snippet: PreparedSnippet,
    path: PathBuf,
    kind: MapperKind,
}

/// One thread's evaluator: a jrsonnet state with every mapper compiled. `!Send` by design.
pub struct Evaluator {
    /// Evaluations since the last cycle collection.
    since_collection: std::cell::Cell<u32>,
    state: State,
    std_ctx: jrsonnet_stdlib::ContextInitializer,
    /// By provider and kind.
    mappers: HashMap<(String, MapperKind), Compiled>,
    limits: Limits,
}

impl Evaluator {
    pub fn new(sources: &[MapperSource], limits: Limits) -> Result<Self, Vec<MapperError>> {
        let (state, std_ctx) = new_state();
        let mut mappers = HashMap::with_capacity(sources.len());
        let mut errors = Vec::new();
        for source in sources {
            match prepare(&state, source) {
                Ok(snippet) => {
                    mappers.insert(
                        (source.provider.clone(), source.kind),
                        Compiled {
                            snippet,
                            path: source.path.clone(),
                            kind: source.kind,
                        },
                    );
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(Evaluator {
                since_collection: std::cell::Cell::new(0),
                state,
                std_ctx,
                mappers,
                limits,
            })
        } else {
            Err(errors)
        }
    }

    /// Runs `provider`'s claims mapper over `claims` and `identity`; returns the raw output value.
    pub fn evaluate(
        &self,
        provider: &str,
        claims: &Value,
        identity: &Value,
    ) -> Result<Value, MapperError> {
        self.evaluate_kind(provider, MapperKind::Claims, claims, identity)
    }

    /// Runs `provider`'s mapper of `kind` over `input` (bound as `claims` or `scim`) and
    /// `identity`.
    pub fn evaluate_kind(
        &self,
        provider: &str,
        kind: MapperKind,
        input: &Value,
        identity: &Value,
    ) -> Result<Value, MapperError> {
        self.evaluate_val(
            provider,
            kind,
            convert::to_val(input),
            convert::to_val(identity),
        )
    }

    /// [`Self::evaluate_kind`] over values already in Jsonnet form (the worker parses its
    /// requests straight into them).
    pub fn evaluate_val(
        &self,
        provider: &str,
        kind: MapperKind,
        input: Val,
        identity: Val,
    ) -> Result<Value, MapperError> {
        let compiled =
            self.mappers
                .get(&(provider.to_owned(), kind))
                .ok_or_else(|| match kind {
                    MapperKind::Claims => MapperError::UnknownProvider(provider.to_owned()),
                    MapperKind::Scim => MapperError::NoScimMapper(provider.to_owned()),
                })?;
        // Ext vars live in settings shared by every evaluation of this state: always rebind
        // them, and leave the other kind's input undefined.
        self.unbind_inputs();
        self.std_ctx.add_ext_var(kind.ext_var().into(), input);
        self.std_ctx.add_ext_var("identity".into(), identity);
        let limits = self.limits;

        guard::arm(limits.timeout, limits.max_allocated_bytes, limits.max_stack);
        let result = self
            .state
            .evaluate_prepared_snippet(&compiled.snippet)
            .map_err(convert::ConvertError::from)
            .and_then(|val| convert::to_json(val, limits.max_output_bytes));
        let tripped = guard::disarm(limits.max_stack);

        // Drop the request's data from the shared settings before anything else runs.
        self.unbind_inputs();
        self.std_ctx.add_ext_var("identity".into(), Val::Null);

        match (result, tripped) {
            (_, Some(guard::Trip::Time)) => Err(MapperError::Timeout(limits.timeout)),
            (_, Some(guard::Trip::Memory)) => {
                Err(MapperError::TooMuchMemory(limits.max_allocated_bytes))
            }
            (Ok(value), None) => Ok(value),
            (Err(convert::ConvertError::TooLarge), None) => {
                Err(MapperError::OutputTooLarge(limits.max_output_bytes))
            }
            (Err(convert::ConvertError::TooDeep), None) => Err(MapperError::InvalidOutput(
                "the output is nested more than 128 levels deep".into(),
            )),
            (Err(convert::ConvertError::Function), None) => Err(MapperError::InvalidOutput(
                "the output contains a function, which has no JSON form".into(),
            )),
            (Err(convert::ConvertError::Eval(e, path)), None) => Err(classify(
                &e,
                compiled,
                limits,
                convert::ConvertError::field_path(&path),
            )),
        }
    }

    /// Removes both kinds' input ext vars.
    fn unbind_inputs(&self) {
        let mut settings = self.std_ctx.settings_mut();
        for kind in [MapperKind::Claims, MapperKind::Scim] {
            settings.ext_vars.remove(&kind.ext_var().into());
        }
    }
}

/// Evaluations between two collections of jrsonnet's reference cycles. A collection costs a
/// fixed ~30k instructions (it walks every tracked object, the standard library's included)
/// plus ~22k per evaluation's garbage (callgrind, okta-acme). Every 4th evaluation spends a
/// third of the collection work of collecting after each one, and its pause (~0.1 ms, after the
/// answer is sent) stays far below the 1–3 ms that every 128th cost (bench/README.md).
pub(super) const COLLECT_EVERY: u32 = 4;

impl Evaluator {
    /// jrsonnet frees values by reference counting; objects that refer to themselves (every
    /// object with `self`, every closure over its own scope) form cycles that only its cycle
    /// collector frees, and nothing calls it on its own. A long-lived evaluator would keep every
    /// evaluation's cycles — about 50 KiB each for the sample mappers — until its worker hits
    /// the address-space limit. Collecting every few evaluations keeps memory flat at a small
    /// cost.
    ///
    /// Call it after the answer is on its way: a collection scans every tracked object, and
    /// inside an evaluation it would land on that request's latency.
    pub fn collect_garbage_now_and_then(&self) {
        if self.collection_due() {
            self.collect_garbage();
        }
    }

    /// Counts an evaluation; true when the cycles should be collected after this one.
    pub fn collection_due(&self) -> bool {
        let n = self.since_collection.get() + 1;
        let due = n >= COLLECT_EVERY;
        self.since_collection.set(if due { 0 } else { n });
        due
    }

    /// Collects jrsonnet's reference cycles now.
    pub fn collect_garbage(&self) {
        jrsonnet_gcmodule::collect_thread_cycles();
    }
}

fn classify(
    e: &jrsonnet_evaluator::Error,
    compiled: &Compiled,
    limits: Limits,
    output_field: Option<String>,
) -> MapperError {
    let path: &Path = &compiled.path;
    let location = error_location(e, path);
    match e.error() {
        _ if convert::is_stack_overflow(e) => MapperError::StackOverflow(limits.max_stack),
        ErrorKind::UndefinedExternalVariable(name) => MapperError::Runtime {
            message: undefined_ext_var(name, compiled.kind),
            location,
            output_field,
        },
        ErrorKind::RuntimeError(message) => MapperError::Denied {
            message: message.to_string(),
            location,
        },
        ErrorKind::NoSuchField(field, _) => MapperError::MissingField {
            field: field.to_string(),
            location,
            output_field,
        },
        other => MapperError::Runtime {
            message: other.to_string(),
            location,
            output_field,
        },
    }
}

/// What a mapper that asks for an ext var its kind is not given is told.
fn undefined_ext_var(name: &str, kind: MapperKind) -> String {
    match kind {
        MapperKind::Scim if name == MapperKind::Claims.ext_var() => "std.extVar('claims') is not given to a SCIM mapper (scim.jsonnet): it reads std.extVar('scim'), the SCIM user with its groups, and std.extVar('identity')".to_owned(),
        MapperKind::Claims if name == MapperKind::Scim.ext_var() => "std.extVar('scim') is given only to a provider's SCIM mapper (scim.jsonnet): a claims mapper reads std.extVar('claims') and std.extVar('identity')".to_owned(),
        _ => format!(
            "std.extVar('{name}') is not defined: a {} mapper is given std.extVar('{}') and std.extVar('identity')",
            kind.as_str(),
            kind.ext_var()
        ),
    }
}
