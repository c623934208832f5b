//! The discovery documents (RFC 7644 §4, RFC 7643 §5–7): `/ServiceProviderConfig`,
//! `/ResourceTypes` and `/Schemas`, generated from [`super::schema`] so that what is advertised
//! is exactly what is validated, filtered and patched. Every `meta.location` is absolute, built
//! from the provider's SCIM base URL (e.g. `https://sso.example/scim/v2/okta-acme`).
//!
//! Advertised: PATCH yes; bulk no; filter yes with `maxResults`; changePassword no (a SCIM
//! password is never stored); sort no (`sortBy` is ignored); ETag yes ([`super::meta`] provides
//! the versions and `If-Match`); one `oauthbearertoken` scheme.
//!
//! `/Schemas` is per provider in one respect: the attribute its `[scim] subject` names (the SSO
//! subject, `userName` by default) is published `immutable`, because the service refuses to
//! change it once the user is provisioned (400 `mutability`: a new subject would orphan the
//! identity's SSO credential). RFC 7643 §7 `immutable` says exactly that: set at creation or
//! in a PUT with the same value, never updated.

use serde_json::{Value, json};

use super::query::list_response;
use super::schema::{ALL_SCHEMAS, Mutability, ResourceKind, Schema, USER_URN};

const SPC_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
const RESOURCE_TYPE_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SCHEMA_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

fn base(base_url: &str) -> &str {
    base_url.trim_end_matches('/')
}

/// Whether `segment`, the first path segment under a provider's SCIM base, names a discovery
/// endpoint. Those answer GET only; any other method is 405 whatever the body (RFC 7644 §4),
/// so the HTTP layer must not refuse a missing or malformed body first.
pub fn is_endpoint(segment: &str) -> bool {
    matches!(
        segment,
        "ServiceProviderConfig" | "ResourceTypes" | "Schemas"
    )
}

/// `GET /ServiceProviderConfig`.
pub fn service_provider_config(base_url: &str, max_results: usize) -> Value {
    json!({
        "schemas": [SPC_URN],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": max_results},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "The provider's SCIM secret, sent as `Authorization: Bearer <secret>`.",
            "primary": true
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{}/ServiceProviderConfig", base(base_url)),
        }
    })
}

/// One `ResourceType` (`User` or `Group`).
pub fn resource_type(base_url: &str, kind: ResourceKind) -> Value {
    let extensions: Vec<Value> = kind
        .extensions()
        .iter()
        .map(|s| json!({"schema": s.id, "required": false}))
        .collect();
    let mut out = json!({
        "schemas": [RESOURCE_TYPE_URN],
        "id": kind.name(),
        "name": kind.name(),
        "endpoint": kind.endpoint(),
        "description": match kind {
            ResourceKind::User => "User Account",
            ResourceKind::Group => "Group",
        },
        "schema": kind.core_schema().id,
        "meta": {
            "resourceType": "ResourceType",
            "location": format!("{}/ResourceTypes/{}", base(base_url), kind.name()),
        }
    });
    if !extensions.is_empty() {
        out["schemaExtensions"] = Value::Array(extensions);
    }
    out
}

/// `GET /ResourceTypes/{id}`; `None` answers 404.
pub fn resource_type_by_id(base_url: &str, id: &str) -> Option<Value> {
    [ResourceKind::User, ResourceKind::Group]
        .into_iter()
        .find(|k| k.name() == id)
        .map(|k| resource_type(base_url, k))
}

/// `GET /ResourceTypes` as a ListResponse.
pub fn resource_types(base_url: &str) -> Value {
    let all = vec![
        resource_type(base_url, ResourceKind::User),
        resource_type(base_url, ResourceKind::Group),
    ];
    list_response(all.len(), 1, all)
}

/// One schema document. `subject` is the provider's `[scim] subject` setting (`userName`,
/// `externalId` or `email`); the attribute of that name, if the schema lists one, is
/// published `immutable`.
pub fn schema_document(base_url: &str, schema: &Schema, subject: &str) -> Value {
    let attributes: Vec<Value> = schema
        .attributes
        .iter()
        .map(|a| {
            let mut out = a.to_json();
            if schema.id == USER_URN && a.name == subject {
                out["mutability"] = Mutability::Immutable.as_str().into();
            }
            out
        })
        .collect();
    json!({
        "schemas": [SCHEMA_URN],
        "id": schema.id,
        "name": schema.name,
        "description": schema.description,
        "attributes": attributes,
        "meta": {
            "resourceType": "Schema",
            "location": format!("{}/Schemas/{}", base(base_url), schema.id),
        }
    })
}

/// `GET /Schemas/{urn}`; `None` answers 404. `subject`: as for [`schema_document`].
pub fn schema_by_id(base_url: &str, id: &str, subject: &str) -> Option<Value> {
    ALL_SCHEMAS
        .iter()
        .find(|s| s.id == id)
        .map(|s| schema_document(base_url, s, subject))
}

/// `GET /Schemas` as a ListResponse. `subject`: as for [`schema_document`].
pub fn schemas(base_url: &str, subject: &str) -> Value {
    let all: Vec<Value> = ALL_SCHEMAS
        .iter()
        .map(|s| schema_document(base_url, s, subject))
        .collect();
    list_response(all.len(), 1, all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::schema::{ENTERPRISE_USER_URN, GROUP_URN};

    const BASE: &str = "https://sso.example/scim/v2/okta-acme";

    #[test]
    fn the_service_provider_config_advertises_what_is_implemented() {
        let spc = service_provider_config(BASE, 1000);
        assert_eq!(spc["patch"]["supported"], true);
        assert_eq!(spc["bulk"]["supported"], false);
        assert_eq!(
            spc["filter"],
            json!({"supported": true, "maxResults": 1000})
        );
        assert_eq!(spc["sort"]["supported"], false);
        assert_eq!(spc["etag"]["supported"], true);
        assert_eq!(spc["authenticationSchemes"][0]["type"], "oauthbearertoken");
        assert_eq!(
            spc["meta"]["location"],
            format!("{BASE}/ServiceProviderConfig")
        );
    }

    #[test]
    fn the_user_resource_type_names_the_enterprise_extension() {
        let user = resource_type_by_id(&format!("{BASE}/"), "User").unwrap();
        assert_eq!(user["endpoint"], "/Users");
        assert_eq!(user["schema"], USER_URN);
        assert_eq!(
            user["schemaExtensions"],
            json!([{"schema": ENTERPRISE_USER_URN, "required": false}])
        );
        assert_eq!(
            user["meta"]["location"],
            format!("{BASE}/ResourceTypes/User")
        );
        assert!(resource_type_by_id(BASE, "Device").is_none());
        assert_eq!(resource_types(BASE)["totalResults"], 2);
    }

    #[test]
    fn the_schemas_are_generated_from_the_attribute_table() {
        let all = schemas(BASE, "externalId");
        assert_eq!(all["totalResults"], 3);
        let user = schema_by_id(BASE, USER_URN, "externalId").unwrap();
        let names: Vec<&str> = user["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"userName") && names.contains(&"emails"));
        let password = user["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "password")
            .unwrap();
        assert_eq!(password["returned"], "never");
        assert_eq!(password["mutability"], "writeOnly");
        let group = schema_by_id(BASE, GROUP_URN, "externalId").unwrap();
        assert_eq!(
            group["meta"]["location"],
            format!("{BASE}/Schemas/{GROUP_URN}")
        );
        assert!(schema_by_id(BASE, "urn:example:nothing", "userName").is_none());
    }

    fn mutability(schema: &Value, name: &str) -> Value {
        schema["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .unwrap()["mutability"]
            .clone()
    }

    #[test]
    fn the_discovery_endpoints_are_known_by_their_first_segment() {
        for segment in ["ServiceProviderConfig", "ResourceTypes", "Schemas"] {
            assert!(is_endpoint(segment), "{segment}");
        }
        for segment in ["Users", "Groups", ".search", "schemas", ""] {
            assert!(!is_endpoint(segment), "{segment}");
        }
    }

    #[test]
    fn the_sso_subject_is_published_immutable() {
        // The service answers a changed subject with 400 mutability; scim2-tester's PUT and
        // PATCH replace of a readWrite userName failed on it (RFC 7644 §3.5.1 allows that
        // answer only for an immutable attribute).
        let user = schema_by_id(BASE, USER_URN, "userName").unwrap();
        assert_eq!(mutability(&user, "userName"), "immutable");
        assert_eq!(mutability(&user, "displayName"), "readWrite");
        let user = schema_by_id(BASE, USER_URN, "externalId").unwrap();
        assert_eq!(mutability(&user, "userName"), "readWrite");
        let user = schema_by_id(BASE, USER_URN, "email").unwrap();
        assert_eq!(mutability(&user, "userName"), "readWrite");
        assert_eq!(mutability(&user, "emails"), "readWrite");
        let listed = schemas(BASE, "userName");
        assert_eq!(mutability(&listed["Resources"][0], "userName"), "immutable");
        let group = schema_by_id(BASE, GROUP_URN, "displayName").unwrap();
        assert_eq!(mutability(&group, "displayName"), "readWrite");
    }
}
