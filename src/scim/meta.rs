//! The server's part of a resource: `id`, `meta` (RFC 7643 §3.1) and the weak ETag of
//! `meta.version` (RFC 7644 §3.14), plus the reference entries the service adds to a Group's
//! `members` and a User's `groups`.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::schema::ResourceKind;

/// The weak entity tag of a stored version: `W/"<n>"`.
pub fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// Whether an `If-Match` header value admits `version`: `*`, or a list of (weak or strong)
/// tags one of which names it.
pub fn if_match(header: &str, version: u64) -> bool {
    header.split(',').map(str::trim).any(|tag| {
        tag == "*" || tag.trim_start_matches("W/").trim_matches('"') == version.to_string()
    })
}

/// `{base_url}{endpoint}/{id}`, with at most one `/` between base and endpoint.
pub fn location(base_url: &str, kind: ResourceKind, id: &str) -> String {
    format!("{}{}/{id}", base_url.trim_end_matches('/'), kind.endpoint())
}

/// The resource as returned: `id` and `meta` (absolute `location`, `version` as a weak ETag,
/// times formatted as RFC 3339 with milliseconds) added to the stored form.
pub fn with_meta(
    resource: &Value,
    kind: ResourceKind,
    id: &str,
    created: SystemTime,
    last_modified: SystemTime,
    version: u64,
    base_url: &str,
) -> Value {
    let mut out = resource.clone();
    if let Some(object) = out.as_object_mut() {
        object.insert("id".into(), Value::from(id));
        object.insert(
            "meta".into(),
            json!({
                "resourceType": kind.name(),
                "created": humantime::format_rfc3339_millis(created).to_string(),
                "lastModified": humantime::format_rfc3339_millis(last_modified).to_string(),
                "location": location(base_url, kind, id),
                "version": etag(version),
            }),
        );
    }
    out
}

/// A Group's `members` entry for a user.
pub fn member_entry(base_url: &str, user_id: &str) -> Value {
    json!({
        "value": user_id,
        "$ref": location(base_url, ResourceKind::User, user_id),
        "type": "User",
    })
}

/// A User's `groups` entry (direct membership).
pub fn group_entry(base_url: &str, group_id: &str, display_name: &str) -> Value {
    json!({
        "value": group_id,
        "$ref": location(base_url, ResourceKind::Group, group_id),
        "display": display_name,
        "type": "direct",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn meta_carries_an_absolute_location_a_weak_etag_and_rfc3339_times() {
        let created = UNIX_EPOCH + Duration::from_millis(1_767_225_600_123);
        let out = with_meta(
            &json!({"userName": "ada"}),
            ResourceKind::User,
            "u-1",
            created,
            created + Duration::from_secs(60),
            3,
            "https://sso.example/scim/v2/okta-acme/",
        );
        assert_eq!(out["id"], "u-1");
        assert_eq!(
            out["meta"]["location"],
            "https://sso.example/scim/v2/okta-acme/Users/u-1"
        );
        assert_eq!(out["meta"]["version"], "W/\"3\"");
        assert_eq!(out["meta"]["created"], "2026-01-01T00:00:00.123Z");
        assert_eq!(out["meta"]["lastModified"], "2026-01-01T00:01:00.123Z");
        assert_eq!(out["meta"]["resourceType"], "User");
    }

    #[test]
    fn if_match_accepts_the_current_version_and_star_only() {
        assert!(if_match("W/\"3\"", 3));
        assert!(if_match("\"2\", W/\"3\"", 3));
        assert!(if_match("*", 9));
        assert!(!if_match("W/\"2\"", 3));
    }

    #[test]
    fn references_point_at_the_resource() {
        assert_eq!(
            member_entry("https://h/scim", "u-1")["$ref"],
            "https://h/scim/Users/u-1"
        );
        let group = group_entry("https://h/scim", "g-1", "Admins");
        assert_eq!(group["display"], "Admins");
        assert_eq!(group["$ref"], "https://h/scim/Groups/g-1");
    }
}
