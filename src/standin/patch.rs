//! JSON Patch (RFC 6902) as Kratos's `PATCH /admin/identities/{id}` accepts it.
//!
//! Kratos applies patches with `ory/x jsonx.ApplyJSONPatch`: only `add`, `remove` and `replace`
//! are allowed (`opAllowList`), every operation is checked against a deny-list before anything is
//! applied, and the whole document is patched or nothing is. Operations are applied with strict
//! RFC 6902 / RFC 6901 semantics (`~1`/`~0` escapes, `-` appends to an array, a parent must exist).
//! Kratos is slightly more tolerant (it turns a `replace` of a missing object member into an
//! `add` and creates missing parents on `add`), so a patch that this module accepts is also
//! accepted by Kratos, never the other way round.

use serde_json::Value;

/// What an operation does; the only three Kratos allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    Add,
    Remove,
    Replace,
}

/// One validated operation of a patch document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Operation {
    pub kind: OpKind,
    pub path: String,
    pub value: Option<Value>,
}

/// Parses a patch document and checks every operation, in order, the way `jsonx.ApplyJSONPatch`
/// does: an unsupported operation first, then the path, then the deny-list. The error strings are
/// Kratos's (`unsupported operation: test`, `patch includes denied path: /id`).
pub(crate) fn parse(
    document: &Value,
    is_denied: impl Fn(&str) -> bool,
) -> Result<Vec<Operation>, String> {
    let Value::Array(items) = document else {
        return Err(format!(
            "json: cannot unmarshal {} into Go value of type jsonpatch.Patch",
            json_kind(document)
        ));
    };
    let mut operations = Vec::with_capacity(items.len());
    for item in items {
        let Value::Object(fields) = item else {
            return Err(format!(
                "json: cannot unmarshal {} into Go value of type jsonpatch.Operation",
                json_kind(item)
            ));
        };
        let kind = match fields.get("op").and_then(Value::as_str) {
            Some("add") => OpKind::Add,
            Some("remove") => OpKind::Remove,
            Some("replace") => OpKind::Replace,
            Some(other) => return Err(format!("unsupported operation: {other}")),
            // evanphx/json-patch reports a missing or non-string op as kind "unknown".
            None => return Err("unsupported operation: unknown".to_owned()),
        };
        let Some(path) = fields.get("path").and_then(Value::as_str) else {
            return Err("error parsing patch operations: operation missing path field".to_owned());
        };
        if is_denied(path) {
            return Err(format!("patch includes denied path: {path}"));
        }
        let value = fields.get("value").cloned();
        if kind != OpKind::Remove && value.is_none() {
            return Err(format!("{} operation, missing value field", kind.name()));
        }
        operations.push(Operation {
            kind,
            path: path.to_owned(),
            value,
        });
    }
    Ok(operations)
}

/// Applies all operations to a copy of `target`; on the first failure nothing is returned, so
/// the caller's document is never half-patched.
pub(crate) fn apply(target: &Value, operations: &[Operation]) -> Result<Value, String> {
    let mut document = target.clone();
    for operation in operations {
        apply_one(&mut document, operation)?;
    }
    Ok(document)
}

impl OpKind {
    fn name(self) -> &'static str {
        match self {
            OpKind::Add => "add",
            OpKind::Remove => "remove",
            OpKind::Replace => "replace",
        }
    }
}

fn apply_one(document: &mut Value, operation: &Operation) -> Result<(), String> {
    let tokens = parse_pointer(&operation.path)?;
    let missing = || {
        format!(
            "{} operation does not apply: doc is missing path: {:?}: missing value",
            operation.kind.name(),
            operation.path
        )
    };
    let Some((last, parents)) = tokens.split_last() else {
        // The whole document: RFC 6902 allows it, Kratos's handler would then take a new `id`
        // from the body, so the stand-in refuses it like the deny-list does.
        return Err(format!("patch includes denied path: {}", operation.path));
    };
    let parent = navigate(document, parents).ok_or_else(missing)?;
    let value = || operation.value.clone().unwrap_or(Value::Null);
    match (operation.kind, parent) {
        (OpKind::Add, Value::Object(members)) => {
            members.insert(last.clone(), value());
        }
        (OpKind::Add, Value::Array(items)) => {
            let index = if last == "-" {
                items.len()
            } else {
                array_index(last)?
            };
            if index > items.len() {
                return Err(format!(
                    "add operation does not apply: index {index} is out of bounds for an array of length {}",
                    items.len()
                ));
            }
            items.insert(index, value());
        }
        (OpKind::Remove, Value::Object(members)) => {
            members.remove(last.as_str()).ok_or_else(missing)?;
        }
        (OpKind::Replace, Value::Object(members)) => {
            let slot = members.get_mut(last.as_str()).ok_or_else(missing)?;
            *slot = value();
        }
        (OpKind::Remove | OpKind::Replace, Value::Array(items)) => {
            let index = array_index(last)?;
            if index >= items.len() {
                return Err(missing());
            }
            if operation.kind == OpKind::Remove {
                items.remove(index);
            } else {
                items[index] = value();
            }
        }
        (_, _) => return Err(missing()),
    }
    Ok(())
}

fn navigate<'a>(document: &'a mut Value, tokens: &[String]) -> Option<&'a mut Value> {
    let mut current = document;
    for token in tokens {
        current = match current {
            Value::Object(members) => members.get_mut(token.as_str())?,
            Value::Array(items) => items.get_mut(array_index(token).ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// RFC 6901: `""` is the whole document, otherwise `/`-separated tokens where `~1` is `/` and
/// `~0` is `~` (in that order, so `~01` is `~1`).
fn parse_pointer(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!(
            "JSON pointer must be empty or start with a \"/\": {pointer:?}"
        ));
    };
    rest.split('/')
        .map(|token| unescape(token, pointer))
        .collect()
}

fn unescape(token: &str, pointer: &str) -> Result<String, String> {
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c != '~' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('~'),
            Some('1') => out.push('/'),
            _ => {
                return Err(format!(
                    "invalid escape sequence in JSON pointer: {pointer:?}"
                ));
            }
        }
    }
    Ok(out)
}

/// An array index per RFC 6901: `0` or digits without a leading zero.
fn array_index(token: &str) -> Result<usize, String> {
    let well_formed = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    if !well_formed {
        return Err(format!("invalid array index: {token:?}"));
    }
    token
        .parse()
        .map_err(|_| format!("invalid array index: {token:?}"))
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nothing_denied(_: &str) -> bool {
        false
    }

    fn patched(target: Value, patch: Value) -> Result<Value, String> {
        let ops = parse(&patch, nothing_denied)?;
        apply(&target, &ops)
    }

    #[test]
    fn add_inserts_a_member_and_replaces_an_existing_one() {
        let out = patched(
            json!({"a": 1}),
            json!([{"op": "add", "path": "/b", "value": 2}, {"op": "add", "path": "/a", "value": 3}]),
        );
        assert_eq!(out, Ok(json!({"a": 3, "b": 2})));
    }

    #[test]
    fn escaped_tokens_address_members_with_slashes_and_tildes() {
        let out = patched(
            json!({"a/b": 1, "m~n": 2}),
            json!([
                {"op": "replace", "path": "/a~1b", "value": 10},
                {"op": "replace", "path": "/m~0n", "value": 20},
                {"op": "add", "path": "/~01", "value": 30}
            ]),
        );
        assert_eq!(out, Ok(json!({"a/b": 10, "m~n": 20, "~1": 30})));
    }

    #[test]
    fn dash_appends_and_an_index_inserts_before() {
        let out = patched(
            json!({"groups": ["a", "c"]}),
            json!([
                {"op": "add", "path": "/groups/-", "value": "d"},
                {"op": "add", "path": "/groups/1", "value": "b"}
            ]),
        );
        assert_eq!(out, Ok(json!({"groups": ["a", "b", "c", "d"]})));
    }

    #[test]
    fn add_past_the_end_of_an_array_fails() {
        let out = patched(
            json!({"g": []}),
            json!([{"op": "add", "path": "/g/1", "value": 1}]),
        );
        assert!(out.is_err());
    }

    #[test]
    fn leading_zero_indexes_are_rejected() {
        let out = patched(
            json!({"g": [1, 2]}),
            json!([{"op": "remove", "path": "/g/01"}]),
        );
        assert!(out.unwrap_err().contains("invalid array index"));
    }

    #[test]
    fn add_under_a_missing_or_null_parent_fails_as_in_rfc_6902() {
        let missing = patched(
            json!({}),
            json!([{"op": "add", "path": "/m/groups", "value": []}]),
        );
        let null = patched(
            json!({"m": null}),
            json!([{"op": "add", "path": "/m/groups", "value": []}]),
        );
        assert!(missing.unwrap_err().contains("missing path"));
        assert!(null.is_err());
    }

    #[test]
    fn replace_and_remove_need_the_target_to_exist() {
        assert!(
            patched(
                json!({}),
                json!([{"op": "replace", "path": "/x", "value": 1}])
            )
            .is_err()
        );
        assert!(patched(json!({}), json!([{"op": "remove", "path": "/x"}])).is_err());
        assert!(patched(json!({"g": [1]}), json!([{"op": "remove", "path": "/g/-"}])).is_err());
    }

    #[test]
    fn remove_deletes_members_and_array_items() {
        let out = patched(
            json!({"a": 1, "g": [1, 2, 3]}),
            json!([{"op": "remove", "path": "/a"}, {"op": "remove", "path": "/g/0"}]),
        );
        assert_eq!(out, Ok(json!({"g": [2, 3]})));
    }

    #[test]
    fn a_failing_operation_leaves_the_input_untouched() {
        let target = json!({"a": 1});
        let ops = parse(
            &json!([{"op": "replace", "path": "/a", "value": 2}, {"op": "remove", "path": "/nope"}]),
            nothing_denied,
        )
        .expect("valid patch");
        assert!(apply(&target, &ops).is_err());
        assert_eq!(target, json!({"a": 1}));
    }

    #[test]
    fn only_add_remove_and_replace_are_supported() {
        for op in ["test", "move", "copy"] {
            let err = parse(
                &json!([{"op": op, "path": "/a", "from": "/b", "value": 1}]),
                nothing_denied,
            )
            .unwrap_err();
            assert_eq!(err, format!("unsupported operation: {op}"));
        }
    }

    #[test]
    fn denied_paths_are_reported_with_kratos_wording() {
        let err = parse(&json!([{"op": "remove", "path": "/id"}]), |p| p == "/id").unwrap_err();
        assert_eq!(err, "patch includes denied path: /id");
    }

    #[test]
    fn the_whole_document_cannot_be_replaced() {
        let out = patched(
            json!({"id": 1}),
            json!([{"op": "replace", "path": "", "value": {}}]),
        );
        assert!(out.unwrap_err().contains("denied path"));
    }

    #[test]
    fn a_patch_must_be_an_array_and_add_must_carry_a_value() {
        assert!(parse(&json!({"op": "add"}), nothing_denied).is_err());
        assert!(parse(&json!([{"op": "add", "path": "/a"}]), nothing_denied).is_err());
        assert!(
            parse(
                &json!([{"op": "add", "path": "/a", "value": null}]),
                nothing_denied
            )
            .is_ok()
        );
    }
}
