//! Loading a providers tree for a command, with its problems printed for a person.

use std::io::Write;
use std::path::Path;

use super::Providers;

/// Loads `dir`, printing every warning and, when the tree is refused, every problem and a count
/// to `err`. `None` when the tree is refused.
pub fn load_reporting(dir: &Path, err: &mut impl Write) -> Option<Providers> {
    match Providers::load(dir) {
        Ok((providers, warnings)) => {
            for warning in warnings {
                let _ = writeln!(err, "warning: {warning}");
            }
            Some(providers)
        }
        Err(errors) => {
            for error in &errors {
                let _ = writeln!(err, "{error}");
            }
            let _ = writeln!(err, "{} problem(s) in {}", errors.len(), dir.display());
            None
        }
    }
}
