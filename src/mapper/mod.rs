//! Kratos-compatible Jsonnet claims mappers: compiled once, evaluated under hard limits.
//!
//! The contract is Kratos's own (docs/kratos.md §2), so one mapper file works in Kratos's
//! `mapper_url` and here:
//!
//! - `std.extVar('claims')` is the claims object Kratos builds (standard claims + `raw_claims`);
//! - `std.extVar('identity')` is `{traits, metadata_public, metadata_admin}` of the current
//!   identity, empty objects for a new one (as Kratos master does);
//! - the output is `{identity: {traits, metadata_public?, metadata_admin?, verified_addresses?}}`;
//! - `error "..."` is a denial carrying that message.
//!
//! A provider may also have a SCIM mapper (`scim.jsonnet`, [`MapperKind::Scim`]) with the same
//! output contract, given `std.extVar('scim')` (the SCIM user with its groups:
//! [`crate::domain::ScimInput`]) and `std.extVar('identity')`, and never `claims`; a claims
//! mapper is never given `scim`. The input a caller passes ([`Claims`]) decides which mapper runs;
//! both kinds share the pool, the limits and the worker processes.
//!
//! Limits are at least as tight as Kratos's: no imports, 256 KiB of output, a bounded stack,
//! one second of evaluation, plus an allocation budget ([`guard`]). A runaway mapper ends in a
//! [`MapperError`] on its own thread; the process and the other evaluator threads carry on.
//!
//! jrsonnet's state is `!Send`, so evaluation happens where an [`Evaluator`] lives, with every
//! mapper compiled once: on dedicated threads, or (the default for `serve`, `check` and `map`)
//! in worker processes ([`process`]) that async callers reach directly while a worker is idle
//! and through relay threads when all are busy ([`MapperEngine`]). Callers hand over JSON and
//! get JSON back, from sync code or async code.
//!
//! One job per module:
//!
//! - Kratos's output contract ([`MappedIdentity`]) and the `identity` ext var live in the pure
//!   domain ([`crate::domain::mapped`]) and are re-exported here;
//! - `error`: [`MapperError`] and [`Location`], shared by every layer;
//! - `compile`: [`MapperSource`] and [`compile()`], with diagnostics against the file;
//! - `nesting`: the bound on how deeply a mapper nests, checked before the parser runs;
//! - `evaluator`: the [`Evaluator`] and its [`Limits`], guarded by [`guard`];
//! - `input`: the [`Claims`] callers hand over;
//! - `engine`: the [`MapperEngine`] façade and its jobs, whichever [`Isolation`] runs them;
//! - `threads` and `pool`: evaluator threads, and the pool of worker processes ([`process`]).

pub mod guard;
pub mod process;

mod compile;
mod convert;
mod engine;
mod error;
mod evaluator;
mod input;
mod nesting;
mod pool;
mod threads;

pub use crate::domain::mapped::{
    InvalidOutput, MappedIdentity, VerifiedAddress, empty_identity, identity_ext_var,
};
pub use compile::{MapperSource, compile};
pub use engine::{Isolation, MapperEngine, Workers};
pub use error::{Location, MapperError};
pub use evaluator::{Evaluator, Limits};
pub use input::{Claims, MapperKind};
pub use process::WorkerProgram;

#[cfg(test)]
mod tests;
