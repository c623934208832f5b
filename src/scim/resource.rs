//! Validating and normalising a client's User or Group body (POST, PUT, and the result of a
//! PATCH) into the resource kratos-jit stores, and reading the indexed values back out of it.
//!
//! [`validate`] promises, for the `Value` it returns:
//!
//! - `schemas` lists the resource type's core URN first, then the extensions in use; a body
//!   without the core URN, or naming a schema kratos-jit does not serve, is `invalidValue`
//!   (RFC 7643 §3: `schemas` is REQUIRED). Entra's
//!   `http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/…` URNs are tolerated
//!   and dropped (Entra adds one to every group it creates, docs/scim.md §3.1).
//! - Every attribute name has the schema's spelling (names are case-insensitive, RFC 7643
//!   §2.1); extension attributes sit in the object keyed by the extension's URN (§3.3).
//! - **Unknown attributes are refused** with `invalidValue` naming each of them. RFC 7644 §3.3
//!   lets a server ignore content, but a silently dropped attribute hides a client mapping
//!   mistake and would make the stored resource differ from what the client believes it set.
//! - Types are checked (RFC 7643 §2.3); `"True"`/`"False"` strings are read as booleans
//!   (Entra, docs/scim.md §3.2); a one-element array given for a single-valued attribute is
//!   unwrapped (Entra's `manager`, §3.1) and a single value given for a multi-valued attribute
//!   is wrapped; at most one value of a multi-valued attribute is `primary` (RFC 7643 §2.4).
//! - `null`, empty arrays and empty complex values are unassigned and left out (RFC 7643 §2.5).
//! - Read-only attributes (`id`, `meta`, a user's `groups`, `manager.displayName`) are ignored
//!   on input (RFC 7644 §3.5.1; Okta's PUT echoes them); `password` is never stored.
//! - `userName` (User) and `displayName` (Group) are required, non-empty strings.
//!
//! The stored form has no `id`, `meta`, or user `groups`: [`super::meta::with_meta`] and the
//! service add them when answering. A Group's `members` stay in the validated value so that
//! the service can diff them; the store keeps memberships apart.

use scim_v2::ScimDateTime;
use serde_json::{Map, Value};

use super::error::ScimError;
use super::schema::{
    AttrType, Attribute, COMMON_ATTRIBUTES, Mutability, ResourceKind, Schema, get_ci,
};

/// Schema URNs Entra adds that kratos-jit accepts and drops (docs/scim.md §3.1).
const TOLERATED_URN_PREFIX: &str =
    "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/";

/// Validate and normalise a client's body for `kind` (see the module doc for the promises).
pub fn validate(kind: ResourceKind, body: &Value) -> Result<Value, ScimError> {
    let Some(object) = body.as_object() else {
        return Err(ScimError::invalid_syntax(format!(
            "a {} must be a JSON object",
            kind.name()
        )));
    };
    let core = kind.core_schema();
    let mut listed_extensions = schemas_of(kind, object)?;

    let mut out = Map::new();
    let mut unknown = Vec::new();
    for (key, value) in object {
        if key.eq_ignore_ascii_case("schemas") || is_tolerated_urn(key) {
            continue;
        }
        if let Some(extension) = kind.extension(key) {
            if let Some(normalised) = normalise_extension(extension, value, &mut unknown)? {
                insert_once(&mut out, extension.id, normalised)?;
                if !listed_extensions.contains(&extension) {
                    listed_extensions.push(extension);
                }
            }
            continue;
        }
        let attribute = COMMON_ATTRIBUTES
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(key))
            .or_else(|| core.attribute(key));
        let Some(attribute) = attribute else {
            unknown.push(key.clone());
            continue;
        };
        if !is_stored(attribute) {
            continue;
        }
        if let Some(normalised) = normalise_value(attribute, value, attribute.name)? {
            insert_once(&mut out, attribute.name, normalised)?;
        }
    }
    if !unknown.is_empty() {
        return Err(unknown_attributes(kind, &unknown));
    }
    let mut schemas = vec![Value::from(core.id)];
    schemas.extend(listed_extensions.iter().map(|s| Value::from(s.id)));
    out.insert("schemas".into(), Value::Array(schemas));

    let required = match kind {
        ResourceKind::User => "userName",
        ResourceKind::Group => "displayName",
    };
    match out.get(required).and_then(Value::as_str) {
        Some(text) if !text.trim().is_empty() => {}
        _ => {
            return Err(ScimError::invalid_value(format!(
                "{required} is required and must be a non-empty string"
            )));
        }
    }
    Ok(Value::Object(out))
}

/// The extensions a body lists in `schemas`, after checking the list itself.
fn schemas_of(
    kind: ResourceKind,
    object: &Map<String, Value>,
) -> Result<Vec<&'static Schema>, ScimError> {
    let core = kind.core_schema();
    let missing =
        || ScimError::invalid_value(format!("schemas is required and must list \"{}\"", core.id));
    let listed = object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("schemas"))
        .map(|(_, v)| v)
        .ok_or_else(missing)?;
    let Some(listed) = listed.as_array() else {
        return Err(ScimError::invalid_value("schemas must be an array of URNs"));
    };
    let mut has_core = false;
    let mut extensions = Vec::new();
    for urn in listed {
        let Some(urn) = urn.as_str() else {
            return Err(ScimError::invalid_value("schemas must be an array of URNs"));
        };
        if urn.eq_ignore_ascii_case(core.id) {
            has_core = true;
        } else if let Some(extension) = kind.extension(urn) {
            if !extensions.contains(&extension) {
                extensions.push(extension);
            }
        } else if !is_tolerated_urn(urn) {
            return Err(ScimError::invalid_value(format!(
                "schemas lists \"{}\", which is not a schema of the {} resource type",
                truncated(urn),
                kind.name()
            )));
        }
    }
    if has_core {
        Ok(extensions)
    } else {
        Err(missing())
    }
}

fn normalise_extension(
    extension: &'static Schema,
    value: &Value,
    unknown: &mut Vec<String>,
) -> Result<Option<Value>, ScimError> {
    if value.is_null() {
        return Ok(None);
    }
    let Some(object) = value.as_object() else {
        return Err(ScimError::invalid_value(format!(
            "{} must be an object of the extension's attributes",
            extension.id
        )));
    };
    let mut out = Map::new();
    for (key, value) in object {
        let Some(attribute) = extension.attribute(key) else {
            unknown.push(format!("{}:{key}", extension.id));
            continue;
        };
        if !is_stored(attribute) {
            continue;
        }
        let path = format!("{}:{}", extension.id, attribute.name);
        if let Some(normalised) = normalise_value(attribute, value, &path)? {
            insert_once(&mut out, attribute.name, normalised)?;
        }
    }
    Ok((!out.is_empty()).then_some(Value::Object(out)))
}

/// Whether an attribute given by a client is kept: read-only ones are the server's, and a
/// write-only one (`password`) is never stored.
fn is_stored(attribute: &Attribute) -> bool {
    !matches!(
        attribute.mutability,
        Mutability::ReadOnly | Mutability::WriteOnly
    )
}

fn is_tolerated_urn(urn: &str) -> bool {
    urn.len() >= TOLERATED_URN_PREFIX.len()
        && urn[..TOLERATED_URN_PREFIX.len()].eq_ignore_ascii_case(TOLERATED_URN_PREFIX)
}

fn insert_once(out: &mut Map<String, Value>, name: &str, value: Value) -> Result<(), ScimError> {
    if out.insert(name.to_owned(), value).is_some() {
        return Err(ScimError::invalid_value(format!(
            "{name} is given more than once (attribute names are case-insensitive)"
        )));
    }
    Ok(())
}

fn unknown_attributes(kind: ResourceKind, names: &[String]) -> ScimError {
    let names: Vec<String> = names
        .iter()
        .take(10)
        .map(|n| format!("\"{}\"", truncated(n)))
        .collect();
    ScimError::invalid_value(format!(
        "unknown attribute(s) for a {}: {}",
        kind.name(),
        names.join(", ")
    ))
}

/// At most 100 characters of a name from a request, for an error message.
pub(crate) fn truncated(text: &str) -> String {
    if text.chars().count() > 100 {
        let mut short: String = text.chars().take(100).collect();
        short.push('…');
        short
    } else {
        text.to_owned()
    }
}

/// Normalise a client's value for `attribute`: `Ok(None)` means unassigned. `path` names the
/// attribute in errors.
pub(crate) fn normalise_value(
    attribute: &'static Attribute,
    value: &Value,
    path: &str,
) -> Result<Option<Value>, ScimError> {
    if value.is_null() {
        return Ok(None);
    }
    if attribute.multi_valued {
        let items: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(v) = normalise_single(attribute, item, path)? {
                out.push(v);
            }
        }
        let primaries = out
            .iter()
            .filter(|v| get_ci(v, "primary") == Some(&Value::Bool(true)))
            .count();
        if primaries > 1 {
            return Err(ScimError::invalid_value(format!(
                "{path} has {primaries} values marked primary; at most one may be (RFC 7643 §2.4)"
            )));
        }
        return Ok((!out.is_empty()).then_some(Value::Array(out)));
    }
    match value {
        Value::Array(items) if items.len() == 1 => normalise_single(attribute, &items[0], path),
        Value::Array(_) => Err(ScimError::invalid_value(format!(
            "{path} is single-valued but was given several values"
        ))),
        single => normalise_single(attribute, single, path),
    }
}

/// Normalise one value (not an array) of `attribute`.
pub(crate) fn normalise_single(
    attribute: &'static Attribute,
    value: &Value,
    path: &str,
) -> Result<Option<Value>, ScimError> {
    if value.is_null() {
        return Ok(None);
    }
    let wrong_type = || {
        ScimError::invalid_value(format!(
            "{path} must be of type {}{}",
            attribute.kind.as_str(),
            if attribute.kind == AttrType::Complex {
                " (a JSON object)"
            } else {
                ""
            }
        ))
    };
    let normalised = match attribute.kind {
        AttrType::String | AttrType::Reference | AttrType::Binary => match value {
            Value::String(_) => value.clone(),
            _ => return Err(wrong_type()),
        },
        AttrType::Boolean => Value::Bool(lenient_bool(value).ok_or_else(wrong_type)?),
        AttrType::Integer => match value {
            Value::Number(n) if n.is_i64() || n.is_u64() => value.clone(),
            _ => return Err(wrong_type()),
        },
        AttrType::Decimal => match value {
            Value::Number(_) => value.clone(),
            _ => return Err(wrong_type()),
        },
        AttrType::DateTime => match value {
            Value::String(text) if text.parse::<ScimDateTime>().is_ok() => value.clone(),
            _ => {
                return Err(ScimError::invalid_value(format!(
                    "{path} must be an xsd:dateTime string such as 2026-01-31T12:00:00Z"
                )));
            }
        },
        AttrType::Complex => {
            let Some(object) = value.as_object() else {
                return Err(wrong_type());
            };
            let mut out = Map::new();
            for (key, sub_value) in object {
                let Some(sub) = attribute.sub_attribute(key) else {
                    return Err(ScimError::invalid_value(format!(
                        "{path} has no sub-attribute \"{}\"",
                        truncated(key)
                    )));
                };
                if sub.mutability == Mutability::ReadOnly {
                    continue;
                }
                let sub_path = format!("{path}.{}", sub.name);
                if let Some(v) = normalise_single(sub, sub_value, &sub_path)? {
                    insert_once(&mut out, sub.name, v)?;
                }
            }
            if out.is_empty() {
                return Ok(None);
            }
            Value::Object(out)
        }
    };
    Ok(Some(normalised))
}

/// A boolean, or the strings `"true"`/`"false"` in any case (Entra sends `"False"`).
pub(crate) fn lenient_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(text) if text.eq_ignore_ascii_case("true") => Some(true),
        Value::String(text) if text.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// A User's `userName`.
pub fn user_name(user: &Value) -> Option<&str> {
    get_ci(user, "userName").and_then(Value::as_str)
}

/// A resource's `externalId`.
pub fn external_id(resource: &Value) -> Option<&str> {
    get_ci(resource, "externalId").and_then(Value::as_str)
}

/// A resource's `displayName` (a Group's name; a User's display name).
pub fn display_name(resource: &Value) -> Option<&str> {
    get_ci(resource, "displayName").and_then(Value::as_str)
}

/// Every e-mail address of a User (`emails[].value`), in order, as stored.
pub fn emails(user: &Value) -> Vec<String> {
    sub_values(user, "emails")
}

/// The User's primary e-mail: the one marked `primary`, else the first of type `work`, else the
/// first one.
pub fn primary_email(user: &Value) -> Option<&str> {
    let list = get_ci(user, "emails")?.as_array()?;
    let value = |entry: &&Value| get_ci(entry, "value").and_then(Value::as_str).is_some();
    let chosen = list
        .iter()
        .filter(value)
        .find(|e| get_ci(e, "primary").and_then(lenient_bool) == Some(true))
        .or_else(|| {
            list.iter().filter(value).find(|e| {
                get_ci(e, "type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.eq_ignore_ascii_case("work"))
            })
        })
        .or_else(|| list.iter().find(value))?;
    get_ci(chosen, "value").and_then(Value::as_str)
}

/// Whether a User is active: `active` unassigned means active (kratos-jit's choice: a client
/// that never sends `active`, as some do on create, means a usable account).
pub fn active(user: &Value) -> bool {
    get_ci(user, "active")
        .and_then(lenient_bool)
        .unwrap_or(true)
}

/// A Group's member ids (`members[].value`), in order, without duplicates.
pub fn members(group: &Value) -> Vec<String> {
    let mut ids = sub_values(group, "members");
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    ids
}

fn sub_values(resource: &Value, attribute: &str) -> Vec<String> {
    get_ci(resource, attribute)
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|entry| get_ci(entry, "value").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::scim::schema::{ENTERPRISE_USER_URN, GROUP_URN, USER_URN};

    fn okta_create() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "ada@acme.example",
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"primary": true, "value": "ada@acme.example", "type": "work"}],
            "displayName": "Ada Lovelace",
            "locale": "en-US",
            "externalId": "00u1",
            "groups": [],
            "password": "1mz050nq",
            "active": true
        })
    }

    #[test]
    fn an_okta_create_body_is_kept_without_its_password_and_groups() {
        let user = validate(ResourceKind::User, &okta_create()).unwrap();
        assert_eq!(user_name(&user), Some("ada@acme.example"));
        assert_eq!(user["name"]["givenName"], "Ada");
        assert!(user.get("password").is_none());
        assert!(user.get("groups").is_none());
        assert_eq!(user["schemas"], json!([USER_URN]));
        assert_eq!(external_id(&user), Some("00u1"));
        assert!(active(&user));
    }

    #[test]
    fn names_are_normalised_to_the_schema_spelling() {
        let body = json!({
            "SCHEMAS": [USER_URN],
            "USERNAME": "ada",
            "Name": {"GIVENNAME": "Ada"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user": {"EMPLOYEENUMBER": "42"}
        });
        let user = validate(ResourceKind::User, &body).unwrap();
        assert_eq!(user["userName"], "ada");
        assert_eq!(user["name"]["givenName"], "Ada");
        assert_eq!(user[ENTERPRISE_USER_URN]["employeeNumber"], "42");
        assert_eq!(user["schemas"], json!([USER_URN, ENTERPRISE_USER_URN]));
    }

    #[test]
    fn unknown_attributes_are_refused_by_name() {
        let mut body = okta_create();
        body["favouriteColour"] = json!("teal");
        body["shoeSize"] = json!(42);
        let error = validate(ResourceKind::User, &body).unwrap_err();
        assert_eq!(error.status, 400);
        assert_eq!(error.scim_type, Some(crate::scim::ScimType::InvalidValue));
        assert!(
            error.detail.contains("\"favouriteColour\""),
            "{}",
            error.detail
        );
        assert!(error.detail.contains("\"shoeSize\""), "{}", error.detail);
    }

    #[test]
    fn an_unknown_sub_attribute_is_refused_by_its_path() {
        let mut body = okta_create();
        body["name"]["nickname"] = json!("x");
        let error = validate(ResourceKind::User, &body).unwrap_err();
        assert!(
            error
                .detail
                .contains("name has no sub-attribute \"nickname\""),
            "{}",
            error.detail
        );
    }

    #[test]
    fn schemas_must_list_the_core_urn_and_only_known_ones() {
        let mut body = okta_create();
        body["schemas"] = json!([ENTERPRISE_USER_URN]);
        let error = validate(ResourceKind::User, &body).unwrap_err();
        assert!(error.detail.contains(USER_URN), "{}", error.detail);

        body["schemas"] = json!([USER_URN, GROUP_URN]);
        let error = validate(ResourceKind::User, &body).unwrap_err();
        assert!(
            error.detail.contains("not a schema of the User"),
            "{}",
            error.detail
        );

        body["schemas"] = json!([USER_URN, "urn:example:custom"]);
        let error = validate(ResourceKind::User, &body).unwrap_err();
        assert!(
            error.detail.contains("urn:example:custom"),
            "{}",
            error.detail
        );

        let mut no_schemas = okta_create();
        no_schemas.as_object_mut().unwrap().remove("schemas");
        assert_eq!(
            validate(ResourceKind::User, &no_schemas)
                .unwrap_err()
                .scim_type,
            Some(crate::scim::ScimType::InvalidValue)
        );
    }

    #[test]
    fn entras_group_with_its_extra_urn_and_empty_members_is_accepted() {
        let body = json!({
            "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
            "displayName": "Group1",
            "meta": {"resourceType": "Group"},
            "members": [],
            "schemas": [
                "urn:ietf:params:scim:schemas:core:2.0:Group",
                "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"
            ]
        });
        let group = validate(ResourceKind::Group, &body).unwrap();
        assert_eq!(group["schemas"], json!([GROUP_URN]));
        assert_eq!(display_name(&group), Some("Group1"));
        assert!(group.get("members").is_none());
        assert!(group.get("meta").is_none());
    }

    #[test]
    fn entras_string_booleans_and_nulls_are_read_as_scim_means_them() {
        let body = json!({
            "schemas": [USER_URN, ENTERPRISE_USER_URN],
            "userName": "ada",
            "active": "False",
            "title": null,
            "addresses": null,
            "phoneNumbers": [],
            "emails": [{"value": "ada@x.example", "type": "work", "primary": "True"}],
            "roles": [],
            ENTERPRISE_USER_URN: {"manager": null, "department": "R&D"}
        });
        let user = validate(ResourceKind::User, &body).unwrap();
        assert!(!active(&user));
        assert_eq!(user["active"], false);
        assert_eq!(user["emails"][0]["primary"], true);
        for gone in ["title", "addresses", "phoneNumbers", "roles"] {
            assert!(user.get(gone).is_none(), "{gone}");
        }
        assert_eq!(user[ENTERPRISE_USER_URN], json!({"department": "R&D"}));
    }

    #[test]
    fn a_single_element_array_for_a_single_valued_attribute_is_unwrapped() {
        let body = json!({
            "schemas": [USER_URN],
            "userName": "ada",
            ENTERPRISE_USER_URN: {"manager": [{"value": "m-1", "$ref": null}]}
        });
        let user = validate(ResourceKind::User, &body).unwrap();
        assert_eq!(
            user[ENTERPRISE_USER_URN]["manager"],
            json!({"value": "m-1"})
        );
        assert_eq!(user["schemas"], json!([USER_URN, ENTERPRISE_USER_URN]));
    }

    #[test]
    fn wrong_types_are_refused_naming_the_attribute_and_the_type() {
        for (attribute, value, expected) in [
            ("active", json!("maybe"), "active must be of type boolean"),
            ("userName", json!(42), "userName must be of type string"),
            ("name", json!("Ada"), "name must be of type complex"),
            (
                "emails",
                json!([{"value": 1}]),
                "emails.value must be of type string",
            ),
            (
                "displayName",
                json!(["a", "b"]),
                "displayName is single-valued",
            ),
        ] {
            let mut body = okta_create();
            body[attribute] = value;
            let error = validate(ResourceKind::User, &body).unwrap_err();
            assert!(
                error.detail.contains(expected),
                "{attribute}: {}",
                error.detail
            );
        }
    }

    #[test]
    fn two_primary_values_are_refused() {
        let mut body = okta_create();
        body["emails"] = json!([
            {"value": "a@x.example", "primary": true},
            {"value": "b@x.example", "primary": true}
        ]);
        let error = validate(ResourceKind::User, &body).unwrap_err();
        assert!(error.detail.contains("primary"), "{}", error.detail);
    }

    #[test]
    fn user_name_and_display_name_are_required() {
        let error = validate(
            ResourceKind::User,
            &json!({"schemas": [USER_URN], "userName": " "}),
        )
        .unwrap_err();
        assert!(error.detail.contains("userName is required"));
        let error = validate(ResourceKind::Group, &json!({"schemas": [GROUP_URN]})).unwrap_err();
        assert!(error.detail.contains("displayName is required"));
    }

    #[test]
    fn read_only_attributes_are_ignored_on_input() {
        let mut body = okta_create();
        body["id"] = json!("client-chosen");
        body["meta"] = json!({"resourceType": "User", "created": "2020-01-01T00:00:00Z"});
        body["groups"] = json!([{"value": "g"}]);
        let user = validate(ResourceKind::User, &body).unwrap();
        assert!(user.get("id").is_none() && user.get("meta").is_none());
        assert!(user.get("groups").is_none());
    }

    #[test]
    fn a_key_given_twice_in_different_cases_is_refused() {
        let body = json!({"schemas": [USER_URN], "userName": "a", "USERNAME": "b"});
        let error = validate(ResourceKind::User, &body).unwrap_err();
        assert!(error.detail.contains("more than once"));
    }

    #[test]
    fn a_body_that_is_not_an_object_is_invalid_syntax() {
        let error = validate(ResourceKind::User, &json!([1, 2])).unwrap_err();
        assert_eq!(error.scim_type, Some(crate::scim::ScimType::InvalidSyntax));
    }

    #[test]
    fn the_helpers_read_the_indexed_values() {
        let user = validate(
            ResourceKind::User,
            &json!({
                "schemas": [USER_URN],
                "userName": "ada",
                "emails": [
                    {"value": "home@x.example", "type": "home"},
                    {"value": "work@x.example", "type": "work"}
                ]
            }),
        )
        .unwrap();
        assert_eq!(emails(&user), vec!["home@x.example", "work@x.example"]);
        assert_eq!(primary_email(&user), Some("work@x.example"));
        assert!(active(&user));

        let group = validate(
            ResourceKind::Group,
            &json!({
                "schemas": [GROUP_URN],
                "displayName": "Admins",
                "members": [{"value": "u1", "display": "Ada"}, {"value": "u2"}, {"value": "u1"}]
            }),
        )
        .unwrap();
        assert_eq!(members(&group), vec!["u1", "u2"]);
        // A member's display is read-only: accepted (Okta sends it) and not stored.
        assert_eq!(group["members"][0], json!({"value": "u1"}));
    }

    #[test]
    fn a_marked_primary_email_wins_over_a_work_one() {
        let user = json!({"emails": [
            {"value": "work@x.example", "type": "work"},
            {"value": "main@x.example", "type": "other", "primary": true}
        ]});
        assert_eq!(primary_email(&user), Some("main@x.example"));
    }

    #[test]
    fn a_huge_unknown_name_is_truncated_in_the_error() {
        let mut body = okta_create();
        body["x".repeat(100_000)] = json!(1);
        let error = validate(ResourceKind::User, &body).unwrap_err();
        assert!(error.detail.len() < 400, "{}", error.detail.len());
    }
}
