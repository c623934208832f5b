//! `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5, §3.9) over a full resource.
//!
//! - Attributes with `returned: always` (`id`) and `schemas` are always kept; `returned: never`
//!   (`password`) is always dropped, even if named.
//! - `attributes` keeps only what it names (a whole attribute, one sub-attribute such as
//!   `name.familyName` or `emails.value`, an extension attribute by its URN-prefixed name, or a
//!   whole extension by its URN).
//! - `excludedAttributes` then removes what it names (never an `always` attribute). Both may be
//!   given: the RFC does not forbid it, so both apply, in that order.
//! - A name that is not an attribute of the resource type is `invalidValue` naming it.

use std::str::FromStr;

use scim_v2::filter::PatchPath;
use serde_json::{Map, Value};

use super::error::ScimError;
use super::resource::truncated;
use super::schema::{AttrType, Attribute, ResourceKind, Returned, Schema};

/// One selected name: an attribute (in an extension or not), maybe one of its sub-attributes;
/// or a whole extension.
#[derive(Debug, Clone, PartialEq)]
struct Selected {
    extension: Option<&'static str>,
    /// `None`: the whole extension object.
    attribute: Option<&'static str>,
    sub: Option<&'static str>,
}

/// A parsed projection for one resource type.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Projection {
    attributes: Option<Vec<Selected>>,
    excluded: Vec<Selected>,
}

impl Projection {
    /// Parse the comma-separated lists (absent or empty: no selection).
    pub fn parse(
        kind: ResourceKind,
        attributes: Option<&str>,
        excluded: Option<&str>,
    ) -> Result<Self, ScimError> {
        Projection::parse_across(&[kind], attributes, excluded)
    }

    /// Parse the lists of a query whose results mix `kinds` (the root `POST /.search`,
    /// RFC 7644 §3.4.3): a name counts when it is an attribute of any of them, and applies to
    /// the resources of each type that has it (`excludedAttributes=members` removes a Group's
    /// members and leaves the Users alone). A name none of them has is `invalidValue`.
    pub fn parse_across(
        kinds: &[ResourceKind],
        attributes: Option<&str>,
        excluded: Option<&str>,
    ) -> Result<Self, ScimError> {
        let list = |text: Option<&str>| -> Result<Vec<Selected>, ScimError> {
            let mut out = Vec::new();
            for name in text.unwrap_or("").split(',').map(str::trim) {
                if name.is_empty() {
                    continue;
                }
                let mut found = false;
                let mut refusal = None;
                for kind in kinds {
                    match selected(*kind, name) {
                        Ok(s) => {
                            found = true;
                            if !out.contains(&s) {
                                out.push(s);
                            }
                        }
                        Err(e) => refusal = refusal.or(Some(e)),
                    }
                }
                if !found {
                    return Err(match (kinds, refusal) {
                        ([_], Some(e)) => e,
                        _ => ScimError::invalid_value(format!(
                            "\"{}\" is not an attribute of any resource type",
                            truncated(name)
                        )),
                    });
                }
            }
            Ok(out)
        };
        let attributes = list(attributes)?;
        Ok(Projection {
            attributes: (!attributes.is_empty()).then_some(attributes),
            excluded: list(excluded)?,
        })
    }

    /// Whether nothing is selected (the default representation, less `returned: never`).
    pub fn is_default(&self) -> bool {
        self.attributes.is_none() && self.excluded.is_empty()
    }

    /// The projection of a full `kind` resource.
    pub fn apply(&self, kind: ResourceKind, resource: &Value) -> Value {
        let Some(object) = resource.as_object() else {
            return resource.clone();
        };
        let mut out = Map::new();
        for (key, value) in object {
            if key.eq_ignore_ascii_case("schemas") {
                out.insert(key.clone(), value.clone());
                continue;
            }
            if let Some(extension) = kind.extension(key) {
                if let Some(kept) = self.project_extension(extension, value) {
                    out.insert(key.clone(), kept);
                }
                continue;
            }
            let Some(located) = kind.resolve(None, key) else {
                continue; // not an attribute kratos-jit serves: never returned
            };
            if let Some(kept) = self.project_attribute(None, located.attribute, value) {
                out.insert(key.clone(), kept);
            }
        }
        Value::Object(out)
    }

    fn project_extension(&self, extension: &'static Schema, value: &Value) -> Option<Value> {
        let whole = |list: &[Selected]| {
            list.iter()
                .any(|s| s.extension == Some(extension.id) && s.attribute.is_none())
        };
        if whole(&self.excluded) {
            return None;
        }
        let mut out = Map::new();
        for (key, sub_value) in value.as_object()? {
            let Some(attribute) = extension.attribute(key) else {
                continue;
            };
            let keep_whole = self.attributes.as_deref().is_some_and(whole);
            let kept = if keep_whole {
                Projection {
                    attributes: None,
                    excluded: self.excluded.clone(),
                }
                .project_attribute(Some(extension.id), attribute, sub_value)
            } else {
                self.project_attribute(Some(extension.id), attribute, sub_value)
            };
            if let Some(kept) = kept {
                out.insert(key.clone(), kept);
            }
        }
        (!out.is_empty()).then_some(Value::Object(out))
    }

    fn project_attribute(
        &self,
        extension: Option<&'static str>,
        attribute: &'static Attribute,
        value: &Value,
    ) -> Option<Value> {
        match attribute.returned {
            Returned::Never => return None,
            Returned::Always => return Some(value.clone()),
            _ => {}
        }
        let names = |list: &[Selected]| -> (bool, Vec<&'static str>) {
            let mut whole = false;
            let mut subs = Vec::new();
            for s in list {
                if s.extension == extension && s.attribute == Some(attribute.name) {
                    match s.sub {
                        None => whole = true,
                        Some(sub) => subs.push(sub),
                    }
                }
            }
            (whole, subs)
        };
        let mut value = value.clone();
        if let Some(list) = &self.attributes {
            let (whole, subs) = names(list);
            if !whole {
                if subs.is_empty() {
                    return None;
                }
                value = keep_subs(&value, |name| subs.contains(&name));
            }
        }
        let (whole, subs) = names(&self.excluded);
        if whole {
            return None;
        }
        if !subs.is_empty() {
            value = keep_subs(&value, |name| !subs.contains(&name));
        }
        let empty = match &value {
            Value::Object(m) => m.is_empty(),
            Value::Array(a) => a.is_empty(),
            _ => false,
        };
        (!empty || attribute.kind != AttrType::Complex).then_some(value)
    }
}

/// Keep the sub-attributes of a complex value (or of each element) for which `keep` holds.
fn keep_subs(value: &Value, keep: impl Fn(&str) -> bool + Copy) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| keep_subs(item, keep))
                .filter(|item| !matches!(item, Value::Object(m) if m.is_empty()))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn selected(kind: ResourceKind, name: &str) -> Result<Selected, ScimError> {
    if let Some(extension) = kind.extension(name) {
        return Ok(Selected {
            extension: Some(extension.id),
            attribute: None,
            sub: None,
        });
    }
    let unknown = || {
        ScimError::invalid_value(format!(
            "\"{}\" is not an attribute of a {}",
            truncated(name),
            kind.name()
        ))
    };
    let Ok(PatchPath::Attr(path)) = PatchPath::from_str(name) else {
        return Err(unknown());
    };
    let located = kind
        .resolve(path.uri.as_deref(), &path.name)
        .ok_or_else(unknown)?;
    let sub = match &path.sub_attr {
        None => None,
        Some(sub) => Some(
            located
                .attribute
                .sub_attribute(sub)
                .ok_or_else(unknown)?
                .name,
        ),
    };
    Ok(Selected {
        extension: located.extension.map(|s| s.id),
        attribute: Some(located.attribute.name),
        sub,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::schema::{ENTERPRISE_USER_URN, GROUP_URN, USER_URN};
    use serde_json::json;

    fn user() -> Value {
        json!({
            "schemas": [USER_URN, ENTERPRISE_USER_URN],
            "id": "u-1",
            "userName": "ada",
            "password": "never",
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"value": "a@x.example", "type": "work"}],
            ENTERPRISE_USER_URN: {"employeeNumber": "7", "department": "R&D"},
            "meta": {"resourceType": "User", "location": "https://h/Users/u-1"}
        })
    }

    fn project(attributes: Option<&str>, excluded: Option<&str>) -> Value {
        Projection::parse(ResourceKind::User, attributes, excluded)
            .unwrap()
            .apply(ResourceKind::User, &user())
    }

    #[test]
    fn the_default_representation_never_holds_the_password() {
        let out = project(None, None);
        assert!(out.get("password").is_none());
        assert_eq!(out["userName"], "ada");
        assert_eq!(out["meta"]["resourceType"], "User");
    }

    #[test]
    fn attributes_keep_only_what_they_name_plus_id_and_schemas() {
        let out = project(Some("userName,name.familyName,emails.value"), None);
        assert_eq!(
            out,
            json!({
                "schemas": [USER_URN, ENTERPRISE_USER_URN],
                "id": "u-1",
                "userName": "ada",
                "name": {"familyName": "Lovelace"},
                "emails": [{"value": "a@x.example"}]
            })
        );
    }

    #[test]
    fn urn_prefixed_names_select_extension_attributes_or_the_whole_extension() {
        let out = project(
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"),
            None,
        );
        assert_eq!(out[ENTERPRISE_USER_URN], json!({"employeeNumber": "7"}));
        let out = project(Some(ENTERPRISE_USER_URN), None);
        assert_eq!(out[ENTERPRISE_USER_URN]["department"], "R&D");
        assert!(out.get("userName").is_none());
    }

    #[test]
    fn excluded_attributes_remove_what_they_name_but_never_the_id() {
        let out = project(None, Some("emails,name.givenName,id,meta"));
        assert!(out.get("emails").is_none());
        assert_eq!(out["name"], json!({"familyName": "Lovelace"}));
        assert_eq!(out["id"], "u-1");
        assert!(out.get("meta").is_none());
        let out = project(None, Some(ENTERPRISE_USER_URN));
        assert!(out.get(ENTERPRISE_USER_URN).is_none());
    }

    #[test]
    fn both_lists_apply_in_turn() {
        let out = project(Some("name"), Some("name.givenName"));
        assert_eq!(out["name"], json!({"familyName": "Lovelace"}));
    }

    #[test]
    fn names_are_case_insensitive_and_unknown_ones_are_refused() {
        let out = project(Some("USERNAME"), None);
        assert_eq!(out["userName"], "ada");
        let error =
            Projection::parse(ResourceKind::User, Some("userName,shoeSize"), None).unwrap_err();
        assert!(error.detail.contains("shoeSize"), "{}", error.detail);
        let error = Projection::parse(ResourceKind::Group, None, Some("emails")).unwrap_err();
        assert!(error.detail.contains("Group"));
    }

    #[test]
    fn a_root_search_applies_each_name_to_the_types_that_have_it() {
        // scim2-tester's POST /.search with excludedAttributes: the results mix Users and
        // Groups, and each name must still be honoured on the type that has it.
        let kinds = [ResourceKind::User, ResourceKind::Group];
        let group = json!({"schemas": [GROUP_URN], "id": "g", "displayName": "Admins",
                           "members": [{"value": "u-1"}]});
        let projection = Projection::parse_across(&kinds, None, Some("name,members")).unwrap();
        let out = projection.apply(ResourceKind::User, &user());
        assert!(out.get("name").is_none());
        assert_eq!(out["userName"], "ada");
        let out = projection.apply(ResourceKind::Group, &group);
        assert!(out.get("members").is_none());
        assert_eq!(out["displayName"], "Admins");

        let projection = Projection::parse_across(&kinds, Some("userName"), None).unwrap();
        assert_eq!(
            projection.apply(ResourceKind::User, &user()),
            json!({"schemas": [USER_URN, ENTERPRISE_USER_URN], "id": "u-1", "userName": "ada"})
        );
        assert_eq!(
            projection.apply(ResourceKind::Group, &group),
            json!({"schemas": [GROUP_URN], "id": "g"})
        );

        let error = Projection::parse_across(&kinds, None, Some("shoeSize")).unwrap_err();
        assert_eq!(error.scim_type, Some(crate::scim::ScimType::InvalidValue));
        assert!(
            error.detail.contains("any resource type"),
            "{}",
            error.detail
        );
    }

    #[test]
    fn entras_group_reads_exclude_members() {
        let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "g",
                           "displayName": "Admins", "members": [{"value": "u-1"}]});
        let out = Projection::parse(ResourceKind::Group, None, Some("members"))
            .unwrap()
            .apply(ResourceKind::Group, &group);
        assert!(out.get("members").is_none());
        assert_eq!(out["displayName"], "Admins");
    }
}
