//! Applying a PATCH request (RFC 7644 §3.5.2) to a stored resource.
//!
//! [`apply_patch`] reads the body as JSON itself (never through a crate's PATCH model: a path
//! that fails to parse must be an error, not a silent fallback), parses each `path` with the
//! `scim_v2` grammar and applies the operations in order to a copy, so a failing operation
//! leaves nothing applied (the PATCH is atomic). The result goes through
//! [`super::resource::validate`]: a PATCH can never produce a resource a POST would refuse.
//!
//! Decisions, with their RFC 7644 sections:
//!
//! - `op` is compared case-insensitively (Entra sends `Add`, `Replace`, `Remove`).
//! - No `path` (add, replace): `value` is an object whose keys are attribute paths — names,
//!   `name.givenName`, `urn:…:enterprise:2.0:User:employeeNumber`, or an extension URN holding
//!   an object (Entra, docs/scim.md §3.2). A key `id` equal to the resource's id is ignored
//!   (Okta's group rename sends it); any other read-only target is `mutability`.
//! - add (§3.5.2.1): appends to a multi-valued attribute without duplicating an identical value
//!   (members are the same when their `value` is); sets the given sub-attributes of a complex
//!   one; a value filter that matches nothing, when it is a conjunction of `eq` comparisons
//!   (`emails[type eq "work"].value`), creates the element it describes, otherwise `noTarget`.
//! - remove (§3.5.2.2): no path → `noTarget`; a required attribute → `mutability`; a value
//!   filter that matches nothing is **not** an error (the values are already gone: a retried
//!   Okta `remove members[value eq "…"]` converges); `remove` of a multi-valued attribute
//!   **with** a `value` list removes only the listed values (Entra's member removal) and never
//!   the whole attribute.
//! - replace (§3.5.2.3): a multi-valued attribute without a filter has all its values
//!   replaced; a complex single-valued attribute gets the given sub-attributes (the others
//!   stay); a value filter that matches nothing is `noTarget`; a missing attribute is added.
//! - A new `primary: true` value clears `primary` on the attribute's other values (RFC 7643
//!   §2.4).
//! - `password` is accepted and discarded (never stored); `id`, `meta`, a user's `groups` and
//!   other read-only attributes are `mutability`; unknown attributes are `invalidPath`.

use std::str::FromStr;

use scim_v2::filter::{AttrExp, CompValue, CompareOp, PatchPath, ValFilter};
use serde_json::{Map, Value};

use super::error::ScimError;
use super::filter::{check_val_filter, describe_parse_error, eval_val};
use super::resource::{members, normalise_single, normalise_value, truncated, validate};
use super::schema::{AttrType, Attribute, Mutability, ResourceKind, Schema};

/// The URN of a PATCH request body (RFC 7644 §3.5.2).
pub const PATCH_OP_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// What a PATCH did.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOutcome {
    /// The patched resource, validated and normalised as [`validate`] returns it (a Group's
    /// `members` included).
    pub resource: Value,
    /// Member ids (`members[].value`) present after and not before, in order. The service
    /// must check that each is a user of the same provider.
    pub members_added: Vec<String>,
    /// Member ids present before and not after, in order.
    pub members_removed: Vec<String>,
    /// Whether the resource differs from before (members included).
    pub changed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Remove,
    Replace,
}

/// Apply the PATCH `body` to `current` (the stored form of a `kind` resource with id `id`; a
/// Group with its `members`).
pub fn apply_patch(
    kind: ResourceKind,
    current: &Value,
    id: &str,
    body: &Value,
) -> Result<PatchOutcome, ScimError> {
    let operations = operations_of(body)?;
    let before = validate(kind, current)?;
    let mut work = before.clone();
    for (index, operation) in operations.iter().enumerate() {
        apply_operation(kind, &mut work, id, operation).map_err(|e| ScimError {
            detail: format!("Operations[{index}]: {}", e.detail),
            ..e
        })?;
    }
    let after = validate(kind, &work)?;
    let (old, new) = (members(&before), members(&after));
    Ok(PatchOutcome {
        members_added: new.iter().filter(|m| !old.contains(m)).cloned().collect(),
        members_removed: old.iter().filter(|m| !new.contains(m)).cloned().collect(),
        changed: after != before,
        resource: after,
    })
}

fn operations_of(body: &Value) -> Result<&Vec<Value>, ScimError> {
    let Some(object) = body.as_object() else {
        return Err(ScimError::invalid_syntax(
            "a PATCH body must be a JSON object",
        ));
    };
    let member = |name: &str| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    let has_urn = member("schemas")
        .and_then(Value::as_array)
        .is_some_and(|list| {
            list.iter().any(|u| {
                u.as_str()
                    .is_some_and(|u| u.eq_ignore_ascii_case(PATCH_OP_URN))
            })
        });
    if !has_urn {
        return Err(ScimError::invalid_syntax(format!(
            "a PATCH body's schemas must list \"{PATCH_OP_URN}\""
        )));
    }
    match member("Operations").and_then(Value::as_array) {
        Some(list) if !list.is_empty() => Ok(list),
        _ => Err(ScimError::invalid_syntax(
            "a PATCH body needs a non-empty Operations array",
        )),
    }
}

fn apply_operation(
    kind: ResourceKind,
    work: &mut Value,
    id: &str,
    operation: &Value,
) -> Result<(), ScimError> {
    let Some(operation) = operation.as_object() else {
        return Err(ScimError::invalid_syntax(
            "an operation must be a JSON object",
        ));
    };
    let member = |name: &str| {
        operation
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    let op = match member("op").and_then(Value::as_str) {
        Some(op) if op.eq_ignore_ascii_case("add") => Op::Add,
        Some(op) if op.eq_ignore_ascii_case("remove") => Op::Remove,
        Some(op) if op.eq_ignore_ascii_case("replace") => Op::Replace,
        _ => {
            return Err(ScimError::invalid_syntax(
                "op must be \"add\", \"remove\" or \"replace\"",
            ));
        }
    };
    let value = member("value").filter(|v| !v.is_null());
    let path = match member("path") {
        None | Some(Value::Null) => None,
        Some(Value::String(path)) if path.trim().is_empty() => None,
        Some(Value::String(path)) => Some(path.as_str()),
        Some(_) => return Err(ScimError::invalid_path("path must be a string")),
    };
    match (op, path) {
        (Op::Remove, None) => Err(ScimError::no_target(
            "remove needs a path (RFC 7644 §3.5.2.2)",
        )),
        (Op::Remove, Some(path)) => match kind.extension(path.trim()) {
            Some(extension) => {
                remove_extension(work, extension);
                Ok(())
            }
            None => {
                let target = target(kind, path)?;
                remove(work, &target, value)
            }
        },
        (_, None) => {
            let Some(Value::Object(values)) = value else {
                return Err(ScimError::invalid_value(
                    "without a path, value must be an object of attributes",
                ));
            };
            for (key, value) in values {
                apply_keyed(kind, work, id, op, key, value)?;
            }
            Ok(())
        }
        (_, Some(path)) => {
            let Some(value) = value else {
                return Err(ScimError::invalid_value(format!(
                    "{} needs a value",
                    if op == Op::Add { "add" } else { "replace" }
                )));
            };
            match kind.extension(path.trim()) {
                Some(extension) => apply_extension_object(work, extension, op, value),
                None => {
                    let target = target(kind, path)?;
                    set(work, &target, op, value)
                }
            }
        }
    }
}

/// One key of a no-path add/replace value object.
fn apply_keyed(
    kind: ResourceKind,
    work: &mut Value,
    id: &str,
    op: Op,
    key: &str,
    value: &Value,
) -> Result<(), ScimError> {
    if key.eq_ignore_ascii_case("schemas") {
        return Ok(());
    }
    if key.eq_ignore_ascii_case("id") {
        return if value.as_str() == Some(id) {
            Ok(())
        } else {
            Err(ScimError::mutability("id is read-only"))
        };
    }
    if let Some(extension) = kind.extension(key) {
        return apply_extension_object(work, extension, op, value);
    }
    let target = target(kind, key)?;
    if value.is_null() {
        return match op {
            // Replacing with null unassigns (RFC 7643 §2.5); adding null adds nothing.
            Op::Replace => remove(work, &target, None),
            _ => Ok(()),
        };
    }
    set(work, &target, op, value)
}

fn apply_extension_object(
    work: &mut Value,
    extension: &'static Schema,
    op: Op,
    value: &Value,
) -> Result<(), ScimError> {
    let Some(values) = value.as_object() else {
        return Err(ScimError::invalid_value(format!(
            "{} must be an object of the extension's attributes",
            extension.id
        )));
    };
    for (key, value) in values {
        // An extension object serialised on its own carries its `schemas` (scim2-models
        // sends one as the value of `path: <extension URN>`): not an attribute, skipped.
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        let attribute = extension.attribute(key).ok_or_else(|| {
            ScimError::invalid_path(format!(
                "{} has no attribute \"{}\"",
                extension.id,
                truncated(key)
            ))
        })?;
        let target = Target {
            extension: Some(extension),
            attribute,
            filter: None,
            sub: None,
        };
        check_writable(&target)?;
        if value.is_null() {
            if op == Op::Replace {
                remove(work, &target, None)?;
            }
            continue;
        }
        set(work, &target, op, value)?;
    }
    Ok(())
}

/// `remove` with an extension's URN as the path: the whole extension object goes, and the
/// URN leaves `schemas` (none of its attributes is required, so this is always allowed).
fn remove_extension(work: &mut Value, extension: &'static Schema) {
    let Some(root) = work.as_object_mut() else {
        return;
    };
    root.retain(|key, _| !key.eq_ignore_ascii_case(extension.id));
    if let Some(Value::Array(schemas)) = root.get_mut("schemas") {
        schemas.retain(|urn| {
            !urn.as_str()
                .is_some_and(|u| u.eq_ignore_ascii_case(extension.id))
        });
    }
}

/// Where an operation applies.
struct Target {
    extension: Option<&'static Schema>,
    attribute: &'static Attribute,
    filter: Option<ValFilter>,
    sub: Option<&'static Attribute>,
}

impl Target {
    fn name(&self) -> String {
        let mut name = match self.extension {
            Some(schema) => format!("{}:{}", schema.id, self.attribute.name),
            None => self.attribute.name.to_owned(),
        };
        if self.filter.is_some() {
            name.push_str("[…]");
        }
        if let Some(sub) = self.sub {
            name.push('.');
            name.push_str(sub.name);
        }
        name
    }
}

fn target(kind: ResourceKind, path: &str) -> Result<Target, ScimError> {
    let parsed = PatchPath::from_str(path)
        .map_err(|e| ScimError::invalid_path(describe_parse_error("the path", path, e)))?;
    let (attr_path, filter, sub) = match parsed {
        PatchPath::Attr(attr) => {
            let sub = attr.sub_attr.clone();
            (attr, None, sub)
        }
        PatchPath::Value(vp) => {
            if vp.attr.sub_attr.is_some() {
                return Err(ScimError::invalid_path(format!(
                    "\"{}\": a value filter follows an attribute, not a sub-attribute",
                    truncated(path)
                )));
            }
            (vp.attr, Some(vp.filter), vp.sub_attr)
        }
    };
    let located = kind
        .resolve(attr_path.uri.as_deref(), &attr_path.name)
        .ok_or_else(|| {
            ScimError::invalid_path(format!(
                "\"{}\" is not an attribute of a {}",
                truncated(&attr_path.to_string()),
                kind.name()
            ))
        })?;
    let attribute = located.attribute;
    let sub = match sub {
        None => None,
        Some(sub) if attribute.kind == AttrType::Complex => {
            Some(attribute.sub_attribute(&sub).ok_or_else(|| {
                ScimError::invalid_path(format!(
                    "{} has no sub-attribute \"{}\"",
                    attribute.name,
                    truncated(&sub)
                ))
            })?)
        }
        Some(_) => {
            return Err(ScimError::invalid_path(format!(
                "{} has no sub-attributes",
                attribute.name
            )));
        }
    };
    if let Some(filter) = &filter {
        if attribute.kind != AttrType::Complex {
            return Err(ScimError::invalid_path(format!(
                "a value filter [ ] applies to a complex attribute, not to {}",
                attribute.name
            )));
        }
        check_val_filter(filter, attribute, attribute.name)
            .map_err(|e| ScimError::invalid_path(e.detail))?;
    }
    let target = Target {
        extension: located.extension,
        attribute,
        filter,
        sub,
    };
    check_writable(&target)?;
    Ok(target)
}

fn check_writable(target: &Target) -> Result<(), ScimError> {
    let read_only = |a: &Attribute| a.mutability == Mutability::ReadOnly;
    if read_only(target.attribute) || target.sub.is_some_and(read_only) {
        return Err(ScimError::mutability(format!(
            "{} is read-only",
            target.name()
        )));
    }
    Ok(())
}

fn is_write_only(target: &Target) -> bool {
    target.attribute.mutability == Mutability::WriteOnly
}

/// The object holding the target attribute (the resource or an extension's object).
fn container<'a>(work: &'a mut Value, target: &Target) -> &'a mut Map<String, Value> {
    let root = work
        .as_object_mut()
        .expect("a validated resource is an object");
    match target.extension {
        None => root,
        Some(schema) => {
            let entry = root
                .entry(schema.id)
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            entry.as_object_mut().expect("just made an object")
        }
    }
}

/// add or replace with a path (or one key of a no-path value).
fn set(work: &mut Value, target: &Target, op: Op, value: &Value) -> Result<(), ScimError> {
    if is_write_only(target) {
        return Ok(()); // `password`: accepted, never stored
    }
    let attribute = target.attribute;
    let name = target.name();
    let holder = container(work, target);
    match (&target.filter, target.sub) {
        (None, None) if attribute.multi_valued => {
            let Some(Value::Array(new)) = normalise_value(attribute, value, &name)? else {
                if op == Op::Replace {
                    holder.remove(attribute.name);
                }
                return Ok(());
            };
            let list = match op {
                Op::Replace => new,
                _ => {
                    let mut list = holder
                        .get(attribute.name)
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    for element in new {
                        if !list.iter().any(|e| same_element(attribute, e, &element)) {
                            list.push(element);
                        }
                    }
                    list
                }
            };
            holder.insert(attribute.name.to_owned(), Value::Array(list));
            settle_primary(holder, attribute, value);
        }
        (None, None) if attribute.kind == AttrType::Complex => {
            let Some(Value::Object(new)) = normalise_value(attribute, value, &name)? else {
                return Ok(());
            };
            let existing = holder
                .entry(attribute.name)
                .or_insert_with(|| Value::Object(Map::new()));
            if !existing.is_object() {
                *existing = Value::Object(Map::new());
            }
            let existing = existing.as_object_mut().expect("just made an object");
            existing.extend(new);
        }
        (None, None) => match normalise_value(attribute, value, &name)? {
            Some(v) => {
                holder.insert(attribute.name.to_owned(), v);
            }
            None => {
                holder.remove(attribute.name);
            }
        },
        (None, Some(sub)) => {
            let new = normalise_single(sub, value, &name)?;
            if attribute.multi_valued {
                for element in elements_mut(holder, attribute) {
                    put_sub(element, sub, new.clone());
                }
            } else {
                let object = holder
                    .entry(attribute.name)
                    .or_insert_with(|| Value::Object(Map::new()));
                if !object.is_object() {
                    *object = Value::Object(Map::new());
                }
                put_sub(object, sub, new);
            }
        }
        (Some(filter), sub) => {
            let new = match sub {
                Some(sub) => normalise_single(sub, value, &name)?,
                None => normalise_single(attribute, value, &name)?,
            };
            let mut matched = 0;
            for element in elements_mut(holder, attribute) {
                if !eval_val(filter, attribute, element) {
                    continue;
                }
                matched += 1;
                match (sub, op, &new) {
                    (Some(sub), _, _) => put_sub(element, sub, new.clone()),
                    (None, Op::Add, Some(Value::Object(fields))) => {
                        if let Some(object) = element.as_object_mut() {
                            object.extend(fields.clone());
                        }
                    }
                    (None, _, Some(replacement)) => *element = replacement.clone(),
                    (None, _, None) => {}
                }
            }
            if matched == 0 {
                let created = (op == Op::Add)
                    .then(|| element_from_filter(filter, attribute))
                    .flatten();
                let Some(mut element) = created else {
                    return Err(ScimError::no_target(format!(
                        "the value filter of {name} matches no value"
                    )));
                };
                match (sub, new) {
                    (Some(sub), new) => put_sub(&mut element, sub, new),
                    (None, Some(Value::Object(fields))) => {
                        if let Some(object) = element.as_object_mut() {
                            object.extend(fields);
                        }
                    }
                    (None, _) => {}
                }
                push_element(holder, attribute, element);
            }
            if attribute.multi_valued {
                settle_primary(holder, attribute, value);
            }
        }
    }
    prune(holder, attribute);
    Ok(())
}

fn remove(work: &mut Value, target: &Target, value: Option<&Value>) -> Result<(), ScimError> {
    let attribute = target.attribute;
    if attribute.required && target.filter.is_none() && target.sub.is_none() {
        return Err(ScimError::mutability(format!(
            "{} is required and cannot be removed",
            target.name()
        )));
    }
    if is_write_only(target) {
        return Ok(());
    }
    let holder = container(work, target);
    match (&target.filter, target.sub) {
        (None, None) => match value {
            // Entra: `remove members` with a value list removes only the listed values.
            Some(listed) if attribute.multi_valued => {
                let listed: Vec<Value> = match listed {
                    Value::Array(items) => items.clone(),
                    single => vec![single.clone()],
                };
                let listed: Vec<Value> = listed
                    .iter()
                    .filter_map(|v| {
                        normalise_single(attribute, v, attribute.name)
                            .ok()
                            .flatten()
                    })
                    .collect();
                if let Some(Value::Array(list)) = holder.get_mut(attribute.name) {
                    list.retain(|e| !listed.iter().any(|l| same_element(attribute, e, l)));
                }
            }
            _ => {
                holder.remove(attribute.name);
            }
        },
        (None, Some(sub)) => {
            if attribute.multi_valued {
                for element in elements_mut(holder, attribute) {
                    put_sub(element, sub, None);
                }
            } else if let Some(object) = holder.get_mut(attribute.name) {
                put_sub(object, sub, None);
            }
        }
        (Some(filter), sub) => {
            if let Some(Value::Array(list)) = holder.get_mut(attribute.name) {
                match sub {
                    None => list.retain(|e| !eval_val(filter, attribute, e)),
                    Some(sub) => {
                        for element in list.iter_mut() {
                            if eval_val(filter, attribute, element) {
                                put_sub(element, sub, None);
                            }
                        }
                    }
                }
            } else if let Some(object) = holder.get_mut(attribute.name)
                && eval_val(filter, attribute, object)
            {
                match sub {
                    None => {
                        holder.remove(attribute.name);
                    }
                    Some(sub) => put_sub(object, sub, None),
                }
            }
        }
    }
    prune(holder, attribute);
    Ok(())
}

fn elements_mut<'a>(
    holder: &'a mut Map<String, Value>,
    attribute: &Attribute,
) -> Box<dyn Iterator<Item = &'a mut Value> + 'a> {
    match holder.get_mut(attribute.name) {
        Some(Value::Array(list)) => Box::new(list.iter_mut()),
        Some(object @ Value::Object(_)) => Box::new(std::iter::once(object)),
        _ => Box::new(std::iter::empty()),
    }
}

fn push_element(holder: &mut Map<String, Value>, attribute: &Attribute, element: Value) {
    if attribute.multi_valued {
        let list = holder
            .entry(attribute.name)
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = list {
            list.push(element);
        } else {
            *list = Value::Array(vec![element]);
        }
    } else {
        holder.insert(attribute.name.to_owned(), element);
    }
}

fn put_sub(element: &mut Value, sub: &Attribute, value: Option<Value>) {
    if let Some(object) = element.as_object_mut() {
        match value {
            Some(value) => {
                object.insert(sub.name.to_owned(), value);
            }
            None => {
                object.remove(sub.name);
            }
        }
    }
}

/// The element a filter of `eq` comparisons describes (`type eq "work"` → `{"type":"work"}`).
fn element_from_filter(filter: &ValFilter, parent: &'static Attribute) -> Option<Value> {
    fn collect(
        filter: &ValFilter,
        parent: &'static Attribute,
        out: &mut Map<String, Value>,
    ) -> bool {
        match filter {
            ValFilter::Attr(AttrExp::Comparison(path, CompareOp::Eq, value))
                if path.uri.is_none() && path.sub_attr.is_none() =>
            {
                let Some(sub) = parent.sub_attribute(&path.name) else {
                    return false;
                };
                let value = match value {
                    CompValue::Str(s) => Value::from(s.as_str()),
                    CompValue::True => Value::Bool(true),
                    CompValue::False => Value::Bool(false),
                    CompValue::Number(n) => Value::Number(n.clone()),
                    CompValue::Null => return false,
                };
                out.insert(sub.name.to_owned(), value);
                true
            }
            ValFilter::And(operands) => operands.iter().all(|f| collect(f, parent, out)),
            _ => false,
        }
    }
    let mut out = Map::new();
    collect(filter, parent, &mut out).then_some(Value::Object(out))
}

/// Two values of a multi-valued attribute are the same: members by `value`, others when equal.
fn same_element(attribute: &Attribute, a: &Value, b: &Value) -> bool {
    if attribute.name == "members" {
        return a.get("value").is_some() && a.get("value") == b.get("value");
    }
    a == b
}

/// When the operation's value sets `primary: true`, only the last such value keeps it.
fn settle_primary(holder: &mut Map<String, Value>, attribute: &Attribute, given: &Value) {
    let sets_primary = match given {
        Value::Array(items) => items
            .iter()
            .any(|i| i.get("primary").and_then(super::resource::lenient_bool) == Some(true)),
        other => other.get("primary").and_then(super::resource::lenient_bool) == Some(true),
    };
    if !sets_primary || attribute.sub_attribute("primary").is_none() {
        return;
    }
    if let Some(Value::Array(list)) = holder.get_mut(attribute.name) {
        let last = list
            .iter()
            .rposition(|e| e.get("primary") == Some(&Value::Bool(true)));
        for (index, element) in list.iter_mut().enumerate() {
            if Some(index) != last
                && let Some(object) = element.as_object_mut()
                && object.get("primary") == Some(&Value::Bool(true))
            {
                object.insert("primary".into(), Value::Bool(false));
            }
        }
    }
}

/// Empty objects, empty elements and empty arrays are unassigned (RFC 7643 §2.5).
fn prune(holder: &mut Map<String, Value>, attribute: &Attribute) {
    let empty = match holder.get_mut(attribute.name) {
        Some(Value::Array(list)) => {
            list.retain(|e| !matches!(e, Value::Object(m) if m.is_empty()) && !e.is_null());
            list.is_empty()
        }
        Some(Value::Object(map)) => map.is_empty(),
        Some(Value::Null) => true,
        _ => false,
    };
    if empty {
        holder.remove(attribute.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::ScimType;
    use crate::scim::schema::{ENTERPRISE_USER_URN, GROUP_URN, USER_URN};
    use serde_json::json;

    const ID: &str = "2819c223-7f76-453a-919d-413861904646";

    fn user() -> Value {
        json!({
            "schemas": [USER_URN],
            "userName": "ada@acme.example",
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "displayName": "Ada Lovelace",
            "active": true,
            "emails": [{"value": "ada@acme.example", "type": "work", "primary": true}]
        })
    }

    fn group(members: &[&str]) -> Value {
        let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
        json!({"schemas": [GROUP_URN], "displayName": "Admins", "members": members})
    }

    fn ops(operations: Value) -> Value {
        json!({"schemas": [PATCH_OP_URN], "Operations": operations})
    }

    fn patch_user(operations: Value) -> Result<PatchOutcome, ScimError> {
        apply_patch(ResourceKind::User, &user(), ID, &ops(operations))
    }

    fn patch_group(members: &[&str], operations: Value) -> Result<PatchOutcome, ScimError> {
        apply_patch(
            ResourceKind::Group,
            &group(members),
            "g-1",
            &ops(operations),
        )
    }

    #[test]
    fn the_enterprise_extension_urn_as_a_path_adds_replaces_and_removes_the_whole_object() {
        // scim2-tester sends the extension as serialised on its own, `schemas` included.
        let extension = json!({
            "schemas": [ENTERPRISE_USER_URN],
            "employeeNumber": "7",
            "department": "R&D"
        });
        for op in ["add", "replace"] {
            let outcome = patch_user(
                json!([{"op": op, "path": ENTERPRISE_USER_URN, "value": extension.clone()}]),
            )
            .unwrap();
            assert_eq!(
                outcome.resource[ENTERPRISE_USER_URN],
                json!({"employeeNumber": "7", "department": "R&D"}),
                "{op}"
            );
            assert_eq!(
                outcome.resource["schemas"],
                json!([USER_URN, ENTERPRISE_USER_URN])
            );
        }

        let mut current = user();
        current["schemas"] = json!([USER_URN, ENTERPRISE_USER_URN]);
        current[ENTERPRISE_USER_URN] = json!({"employeeNumber": "7"});
        let outcome = apply_patch(
            ResourceKind::User,
            &current,
            ID,
            &ops(json!([{"op": "remove", "path": ENTERPRISE_USER_URN}])),
        )
        .unwrap();
        assert!(outcome.resource.get(ENTERPRISE_USER_URN).is_none());
        assert_eq!(outcome.resource["schemas"], json!([USER_URN]));
        assert!(outcome.changed);
        // Removing an extension the user does not have changes nothing.
        let outcome = patch_user(json!([{"op": "remove", "path": ENTERPRISE_USER_URN}])).unwrap();
        assert!(!outcome.changed);
        // Any other key of the object must still be one of the extension's attributes.
        let error = patch_user(json!([{"op": "add", "path": ENTERPRISE_USER_URN,
                                       "value": {"shoeSize": "9"}}]))
        .unwrap_err();
        assert_eq!(error.scim_type, Some(ScimType::InvalidPath));
    }

    #[test]
    fn oktas_deactivation_without_a_path_sets_active_false() {
        let outcome = patch_user(json!([{"op": "replace", "value": {"active": false}}])).unwrap();
        assert_eq!(outcome.resource["active"], false);
        assert!(outcome.changed);
    }

    #[test]
    fn entras_capitalised_replace_with_a_string_false_deactivates() {
        let outcome =
            patch_user(json!([{"op": "Replace", "path": "active", "value": "False"}])).unwrap();
        assert_eq!(outcome.resource["active"], false);
        let outcome =
            patch_user(json!([{"op": "replace", "path": "active", "value": false}])).unwrap();
        assert_eq!(outcome.resource["active"], false);
    }

    #[test]
    fn entras_multi_attribute_replace_without_a_path_reads_keys_as_paths() {
        let outcome = patch_user(json!([
            {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "lovelace@acme.example"},
            {"op": "replace", "value": {
                "displayName": "Countess Lovelace",
                "name.givenName": "Augusta",
                "name.familyName": "King",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "701984"
            }}
        ]))
        .unwrap();
        let user = outcome.resource;
        assert_eq!(user["emails"][0]["value"], "lovelace@acme.example");
        assert_eq!(user["emails"][0]["type"], "work");
        assert_eq!(user["displayName"], "Countess Lovelace");
        assert_eq!(
            user["name"],
            json!({"givenName": "Augusta", "familyName": "King"})
        );
        assert_eq!(user[ENTERPRISE_USER_URN]["employeeNumber"], "701984");
        assert_eq!(user["schemas"], json!([USER_URN, ENTERPRISE_USER_URN]));
    }

    #[test]
    fn entras_one_replace_per_attribute_form_applies_each() {
        let outcome = patch_user(json!([
            {"op": "Replace", "path": "displayName", "value": "A L"},
            {"op": "Replace", "path": "name.givenName", "value": "Augusta"},
            {"op": "Replace", "path": "externalId", "value": "e-1"},
            {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "value": "7"},
            {"op": "Add", "path": "nickName", "value": "Babs"}
        ]))
        .unwrap();
        let user = outcome.resource;
        assert_eq!(user["displayName"], "A L");
        assert_eq!(user["name"]["givenName"], "Augusta");
        assert_eq!(user["name"]["familyName"], "Lovelace");
        assert_eq!(user["externalId"], "e-1");
        assert_eq!(user["nickName"], "Babs");
        assert_eq!(user[ENTERPRISE_USER_URN]["employeeNumber"], "7");
    }

    #[test]
    fn entras_manager_add_with_a_one_element_array_sets_the_manager() {
        let outcome = patch_user(json!([
            {"op": "Add", "path": "manager", "value": [{"$ref": null, "value": "m-1"}]}
        ]))
        .unwrap();
        assert_eq!(
            outcome.resource[ENTERPRISE_USER_URN]["manager"],
            json!({"value": "m-1"})
        );
    }

    #[test]
    fn entras_legacy_member_removal_removes_only_the_listed_members() {
        let outcome = patch_group(
            &["u1", "u2", "u3"],
            json!([{"op": "Remove", "path": "members", "value": [{"value": "u2"}]}]),
        )
        .unwrap();
        assert_eq!(members(&outcome.resource), vec!["u1", "u3"]);
        assert_eq!(outcome.members_removed, vec!["u2"]);
        assert!(outcome.members_added.is_empty());
    }

    #[test]
    fn entras_member_add_with_null_refs_adds_members_once() {
        let outcome = patch_group(
            &["u1"],
            json!([{"op": "Add", "path": "members", "value": [
                {"$ref": null, "value": "u1"},
                {"$ref": null, "value": "u2"}
            ]}]),
        )
        .unwrap();
        assert_eq!(members(&outcome.resource), vec!["u1", "u2"]);
        assert_eq!(outcome.members_added, vec!["u2"]);
    }

    #[test]
    fn oktas_membership_patch_removes_by_filter_and_adds_in_one_request() {
        let outcome = patch_group(
            &["u1", "u2"],
            json!([
                {"op": "remove", "path": "members[value eq \"u1\"]"},
                {"op": "add", "path": "members", "value": [{"value": "u3", "display": "Charles"}]}
            ]),
        )
        .unwrap();
        assert_eq!(members(&outcome.resource), vec!["u2", "u3"]);
        assert_eq!(outcome.members_added, vec!["u3"]);
        assert_eq!(outcome.members_removed, vec!["u1"]);
    }

    #[test]
    fn oktas_rename_with_its_own_id_in_the_value_is_accepted() {
        let outcome = patch_group(
            &["u1"],
            json!([{"op": "replace", "value": {"id": "g-1", "displayName": "Operators"}}]),
        )
        .unwrap();
        assert_eq!(outcome.resource["displayName"], "Operators");
        assert!(outcome.members_added.is_empty() && outcome.members_removed.is_empty());
        let error = patch_group(
            &["u1"],
            json!([{"op": "replace", "value": {"id": "g-2", "displayName": "Operators"}}]),
        )
        .unwrap_err();
        assert_eq!(error.scim_type, Some(ScimType::Mutability));
    }

    #[test]
    fn a_full_member_push_replaces_the_list() {
        let outcome = patch_group(
            &["u1", "u2"],
            json!([{"op": "replace", "path": "members", "value": [{"value": "u2"}, {"value": "u4"}]}]),
        )
        .unwrap();
        assert_eq!(members(&outcome.resource), vec!["u2", "u4"]);
        assert_eq!(outcome.members_added, vec!["u4"]);
        assert_eq!(outcome.members_removed, vec!["u1"]);
    }

    #[test]
    fn removing_all_members_without_a_value_empties_the_group() {
        let outcome =
            patch_group(&["u1", "u2"], json!([{"op": "remove", "path": "members"}])).unwrap();
        assert!(members(&outcome.resource).is_empty());
        assert_eq!(outcome.members_removed, vec!["u1", "u2"]);
    }

    #[test]
    fn a_remove_whose_filter_matches_nothing_changes_nothing_and_is_no_error() {
        let outcome = patch_group(
            &["u1"],
            json!([{"op": "remove", "path": "members[value eq \"gone\"]"}]),
        )
        .unwrap();
        assert!(!outcome.changed);
        assert_eq!(members(&outcome.resource), vec!["u1"]);
    }

    #[test]
    fn a_replace_whose_filter_matches_nothing_is_no_target() {
        let error = patch_user(json!([
            {"op": "replace", "path": "emails[type eq \"home\"].value", "value": "a@home.example"}
        ]))
        .unwrap_err();
        assert_eq!(error.scim_type, Some(ScimType::NoTarget));
        assert!(
            error.detail.starts_with("Operations[0]"),
            "{}",
            error.detail
        );
    }

    #[test]
    fn an_add_whose_eq_filter_matches_nothing_creates_the_element() {
        let outcome = patch_user(json!([
            {"op": "add", "path": "emails[type eq \"home\"].value", "value": "a@home.example"}
        ]))
        .unwrap();
        let emails = outcome.resource["emails"].as_array().unwrap().clone();
        assert_eq!(emails.len(), 2);
        assert_eq!(
            emails[1],
            json!({"type": "home", "value": "a@home.example"})
        );
    }

    #[test]
    fn remove_without_a_path_is_no_target_and_of_a_required_attribute_is_mutability() {
        let error = patch_user(json!([{"op": "remove"}])).unwrap_err();
        assert_eq!(error.scim_type, Some(ScimType::NoTarget));
        let error = patch_user(json!([{"op": "remove", "path": "userName"}])).unwrap_err();
        assert_eq!(error.scim_type, Some(ScimType::Mutability));
    }

    #[test]
    fn read_only_targets_are_mutability_errors() {
        for path in ["id", "meta.created", "groups", "meta"] {
            let error =
                patch_user(json!([{"op": "replace", "path": path, "value": "x"}])).unwrap_err();
            assert_eq!(error.scim_type, Some(ScimType::Mutability), "{path}");
        }
    }

    #[test]
    fn a_failing_operation_leaves_nothing_applied() {
        let error = patch_user(json!([
            {"op": "replace", "path": "displayName", "value": "Changed"},
            {"op": "replace", "path": "noSuchAttribute", "value": "x"}
        ]))
        .unwrap_err();
        assert_eq!(error.scim_type, Some(ScimType::InvalidPath));
        assert!(
            error.detail.starts_with("Operations[1]"),
            "{}",
            error.detail
        );
    }

    #[test]
    fn malformed_bodies_and_paths_name_the_problem() {
        let cases = [
            (
                json!({"Operations": [{"op": "add", "path": "title", "value": "x"}]}),
                ScimType::InvalidSyntax,
            ),
            (
                json!({"schemas": [PATCH_OP_URN], "Operations": []}),
                ScimType::InvalidSyntax,
            ),
            (
                ops(json!([{"op": "merge", "path": "title", "value": "x"}])),
                ScimType::InvalidSyntax,
            ),
            (
                ops(json!([{"op": "add", "path": "emails[type eq", "value": "x"}])),
                ScimType::InvalidPath,
            ),
            (
                ops(json!([{"op": "add", "path": 42, "value": "x"}])),
                ScimType::InvalidPath,
            ),
            (
                ops(json!([{"op": "add", "path": "title"}])),
                ScimType::InvalidValue,
            ),
            (
                ops(json!([{"op": "add", "path": "active", "value": "perhaps"}])),
                ScimType::InvalidValue,
            ),
            (
                ops(json!([{"op": "add", "value": "not an object"}])),
                ScimType::InvalidValue,
            ),
            (
                ops(json!([{"op": "add", "path": "name.nickname", "value": "x"}])),
                ScimType::InvalidPath,
            ),
            (
                ops(json!([{"op": "add", "path": "emails[kind eq \"work\"].value", "value": "x"}])),
                ScimType::InvalidPath,
            ),
        ];
        for (body, expected) in cases {
            let error = apply_patch(ResourceKind::User, &user(), ID, &body).unwrap_err();
            assert_eq!(error.scim_type, Some(expected), "{body}: {}", error.detail);
        }
    }

    #[test]
    fn a_password_is_accepted_and_never_stored() {
        let outcome =
            patch_user(json!([{"op": "replace", "path": "password", "value": "hunter2"}])).unwrap();
        assert!(outcome.resource.get("password").is_none());
        assert!(!outcome.changed);
    }

    #[test]
    fn a_new_primary_value_clears_the_old_one() {
        let outcome = patch_user(json!([
            {"op": "add", "path": "emails", "value": [{"value": "b@x.example", "type": "home", "primary": true}]}
        ]))
        .unwrap();
        let emails = &outcome.resource["emails"];
        assert_eq!(emails[0]["primary"], false);
        assert_eq!(emails[1]["primary"], true);
    }

    #[test]
    fn removing_a_sub_attribute_and_the_last_values_unassigns_them() {
        let outcome = patch_user(json!([
            {"op": "remove", "path": "name.givenName"},
            {"op": "remove", "path": "emails[type eq \"work\"]"}
        ]))
        .unwrap();
        assert_eq!(outcome.resource["name"], json!({"familyName": "Lovelace"}));
        assert!(outcome.resource.get("emails").is_none());
    }

    #[test]
    fn a_replace_to_the_same_value_reports_no_change() {
        let outcome = patch_user(json!([{"op": "replace", "value": {"active": true}}])).unwrap();
        assert!(!outcome.changed);
    }

    #[test]
    fn replacing_with_null_unassigns_and_an_extension_object_merges() {
        let outcome = patch_user(json!([
            {"op": "replace", "value": {"displayName": null}},
            {"op": "add", "path": ENTERPRISE_USER_URN, "value": {"department": "R&D"}},
            {"op": "add", "value": {ENTERPRISE_USER_URN: {"costCenter": "4130"}}}
        ]))
        .unwrap();
        assert!(outcome.resource.get("displayName").is_none());
        assert_eq!(
            outcome.resource[ENTERPRISE_USER_URN],
            json!({"department": "R&D", "costCenter": "4130"})
        );
    }
}
