//! Reading an audit file and checking its events against `docs/audit-event.schema.json`.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// An audit file in a temporary folder of its own, and the settings that make `serve` write it.
pub struct AuditFile {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
    /// How many events earlier calls of [`AuditFile::new_events`] returned.
    seen: std::cell::Cell<usize>,
}

impl AuditFile {
    pub fn new() -> AuditFile {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("audit.jsonl");
        AuditFile {
            _dir: dir,
            path,
            seen: Default::default(),
        }
    }

    /// `KRATOS_JIT__AUDIT__…` settings: this file, values `values` (plain or hashed).
    pub fn env(&self, values: &str) -> Vec<(&'static str, String)> {
        vec![
            ("KRATOS_JIT__AUDIT__SINK", "file".into()),
            ("KRATOS_JIT__AUDIT__FILE", self.path.display().to_string()),
            ("KRATOS_JIT__AUDIT__VALUES", values.into()),
            (
                "KRATOS_JIT__AUDIT__HASH_KEY",
                "audit-test-key-0123456789".into(),
            ),
        ]
    }

    /// Every event written so far, each checked against the schema.
    pub fn events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let validator = validator();
        text.lines()
            .map(|line| {
                let event: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("an audit line is not JSON ({e}): {line}"));
                let errors: Vec<String> = validator
                    .iter_errors(&event)
                    .map(|e| e.to_string())
                    .collect();
                assert!(errors.is_empty(), "{errors:?}\n{event:#}");
                event
            })
            .collect()
    }

    /// The events written since the previous call.
    pub fn new_events(&self) -> Vec<Value> {
        let all = self.events();
        let fresh = all[self.seen.get().min(all.len())..].to_vec();
        self.seen.set(all.len());
        fresh
    }

    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.path).unwrap_or_default()
    }
}

pub fn validator() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/audit-event.schema.json");
    let schema: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).expect("the audit schema compiles")
}

/// The actions of `events`, in order.
pub fn actions(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

/// What each of the stand-in's writes is, in the audit's words.
pub fn write_actions(writes: &[kratos_jit::standin::LoggedRequest]) -> Vec<String> {
    writes
        .iter()
        .map(|w| {
            let action = match (w.method.as_str(), w.path.ends_with("/sessions")) {
                ("DELETE", true) => "sessions_revoked",
                ("POST", false) => "created",
                ("PUT", false) => "linked",
                ("DELETE", false) => "deleted",
                ("PATCH", false) => {
                    let state = w.body.as_ref().and_then(|b| {
                        b.as_array()?
                            .iter()
                            .find(|op| op["path"] == "/state")
                            .map(|op| op["value"].clone())
                    });
                    match state.as_ref().and_then(Value::as_str) {
                        Some("inactive") => "deactivated",
                        Some("active") => "reactivated",
                        _ => "updated",
                    }
                }
                _ => "unknown",
            };
            action.to_owned()
        })
        .collect()
}
