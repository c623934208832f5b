//! The discovery documents (RFC 7644 §4, RFC 7643 §5–7): `/ServiceProviderConfig`,
//! `/ResourceTypes` and `/Schemas`, generated from [`super::schema`] so that what is advertised
//! is exactly what is validated, filtered and patched. Every `meta.location` is absolute, built
//! from the provider's SCIM base URL (e.g. `https://sso.example/scim/v2/okta-acme`).
//!
//! Advertised: PATCH yes; bulk no; filter yes with `maxResults`; changePassword no (a SCIM
//! password is never stored); sort no (`sortBy` is ignored); ETag yes ([`super::meta`] provides
//! the versions and `If-Match`); one `oauthbearertoken` scheme.

use serde_json::{Value, json};

use super::query::list_response;
use super::schema::{ALL_SCHEMAS, ResourceKind, Schema};

const SPC_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
const RESOURCE_TYPE_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SCHEMA_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

fn base(base_url: &str) -> &str {
    base_url.trim_end_matches('/')
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

/// One schema document.
pub fn schema_document(base_url: &str, schema: &Schema) -> Value {
    json!({
        "schemas": [SCHEMA_URN],
        "id": schema.id,
        "name": schema.name,
        "description": schema.description,
        "attributes": schema.attributes.iter().map(|a| a.to_json()).collect::<Vec<_>>(),
        "meta": {
            "resourceType": "Schema",
            "location": format!("{}/Schemas/{}", base(base_url), schema.id),
        }
    })
}

/// `GET /Schemas/{urn}`; `None` answers 404.
pub fn schema_by_id(base_url: &str, id: &str) -> Option<Value> {
    ALL_SCHEMAS
        .iter()
        .find(|s| s.id == id)
        .map(|s| schema_document(base_url, s))
}

/// `GET /Schemas` as a ListResponse.
pub fn schemas(base_url: &str) -> Value {
    let all: Vec<Value> = ALL_SCHEMAS
        .iter()
        .map(|s| schema_document(base_url, s))
        .collect();
    list_response(all.len(), 1, all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::schema::{ENTERPRISE_USER_URN, GROUP_URN, USER_URN};

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
        let all = schemas(BASE);
        assert_eq!(all["totalResults"], 3);
        let user = schema_by_id(BASE, USER_URN).unwrap();
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
        let group = schema_by_id(BASE, GROUP_URN).unwrap();
        assert_eq!(
            group["meta"]["location"],
            format!("{BASE}/Schemas/{GROUP_URN}")
        );
        assert!(schema_by_id(BASE, "urn:example:nothing").is_none());
    }
}
