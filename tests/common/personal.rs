//! What counts as someone's data when a test searches logs for leaks.

use serde_json::Value;

/// Every string in `value` long enough to be someone's data rather than a word of the schema.
pub fn personal_strings(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::String(s) if s.chars().count() >= 6 && !s.starts_with("http") => {
            into.push(s.clone());
        }
        Value::Array(items) => items.iter().for_each(|v| personal_strings(v, into)),
        Value::Object(map) => map.values().for_each(|v| personal_strings(v, into)),
        _ => {}
    }
}
