//! List queries (RFC 7644 §3.4.2) from a query string or a `SearchRequest` body (§3.4.3), and
//! the `ListResponse` they are answered with.
//!
//! - `startIndex` is 1-based; absent or below 1 reads as 1. `count` absent is `None`: a page
//!   of at most [`DEFAULT_PAGE_SIZE`] resources, the `filter.maxResults` discovery advertises;
//!   below 0 reads as 0; a `count` given is honoured as given, without a cap (§3.4.2.4).
//! - `filter` is parsed and checked for the resource type when one is given ([`ScimFilter`]).
//! - `sortBy`/`sortOrder` are read and kept, but `/ServiceProviderConfig` says
//!   `sort.supported: false` and the service ignores them (§3.4.2.3 allows that).
//! - Parameter names are case-insensitive; unknown parameters (`aadOptscim062020`, Entra's
//!   flag on every request) are ignored. A number that is not an integer is `invalidValue`.

use serde_json::{Value, json};

use super::error::ScimError;
use super::filter::ScimFilter;
use super::project::Projection;
use super::schema::{ResourceKind, get_ci};

/// The most resources a list answers when the request gives no `count`: discovery's
/// `filter.maxResults`. An IdP pages on with `startIndex`.
pub const DEFAULT_PAGE_SIZE: usize = 1000;

/// The URN of a list response (RFC 7644 §3.4.2).
pub const LIST_RESPONSE_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// The URN of a search request body (RFC 7644 §3.4.3).
pub const SEARCH_REQUEST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// `sortOrder`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    #[default]
    Ascending,
    Descending,
}

/// A parsed list query.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub filter: Option<ScimFilter>,
    /// 1-based.
    pub start_index: usize,
    /// `None`: the service's default page size.
    pub count: Option<usize>,
    pub sort_by: Option<String>,
    pub sort_order: SortOrder,
    pub projection: Projection,
}

struct Raw {
    filter: Option<String>,
    start_index: Option<i64>,
    count: Option<i64>,
    sort_by: Option<String>,
    sort_order: Option<String>,
    attributes: Option<String>,
    excluded: Option<String>,
}

impl ListQuery {
    /// From a URL's query string (without `?`), percent-decoded here. `kind: None` is the root
    /// `/.search`: the filter is parsed but checked by the service per resource type.
    pub fn from_query_string(kind: Option<ResourceKind>, query: &str) -> Result<Self, ScimError> {
        let mut raw = Raw::empty();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let value = value.into_owned();
            let number = |name: &str| -> Result<i64, ScimError> {
                value
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| ScimError::invalid_value(format!("{name} must be an integer")))
            };
            match name.to_ascii_lowercase().as_str() {
                "filter" => raw.filter = Some(value.clone()),
                "startindex" => raw.start_index = Some(number("startIndex")?),
                "count" => raw.count = Some(number("count")?),
                "sortby" => raw.sort_by = Some(value.clone()),
                "sortorder" => raw.sort_order = Some(value.clone()),
                "attributes" => raw.attributes = Some(value.clone()),
                "excludedattributes" => raw.excluded = Some(value.clone()),
                _ => {} // unknown parameters are ignored (aadOptscim062020)
            }
        }
        raw.into_query(kind)
    }

    /// From a `POST …/.search` body (`SearchRequest`, RFC 7644 §3.4.3): `attributes` and
    /// `excludedAttributes` are arrays of names (a comma-separated string is accepted too).
    pub fn from_search_body(kind: Option<ResourceKind>, body: &Value) -> Result<Self, ScimError> {
        if !body.is_object() {
            return Err(ScimError::invalid_syntax(
                "a SearchRequest must be a JSON object",
            ));
        }
        let text = |name: &str| -> Result<Option<String>, ScimError> {
            match get_ci(body, name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(ScimError::invalid_value(format!("{name} must be a string"))),
            }
        };
        let names = |name: &str| -> Result<Option<String>, ScimError> {
            match get_ci(body, name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| {
                        i.as_str().map(str::to_owned).ok_or_else(|| {
                            ScimError::invalid_value(format!("{name} must list strings"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(|list| Some(list.join(","))),
                Some(_) => Err(ScimError::invalid_value(format!(
                    "{name} must be an array of attribute names"
                ))),
            }
        };
        let number = |name: &str| -> Result<Option<i64>, ScimError> {
            match get_ci(body, name) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| ScimError::invalid_value(format!("{name} must be an integer"))),
            }
        };
        Raw {
            filter: text("filter")?,
            start_index: number("startIndex")?,
            count: number("count")?,
            sort_by: text("sortBy")?,
            sort_order: text("sortOrder")?,
            attributes: names("attributes")?,
            excluded: names("excludedAttributes")?,
        }
        .into_query(kind)
    }

    /// The 0-based offset of the first resource of the page.
    pub fn offset(&self) -> usize {
        self.start_index - 1
    }

    /// How many resources the page may hold: `count`, or [`DEFAULT_PAGE_SIZE`].
    pub fn page_size(&self) -> usize {
        self.count.unwrap_or(DEFAULT_PAGE_SIZE)
    }
}

impl Raw {
    fn empty() -> Self {
        Raw {
            filter: None,
            start_index: None,
            count: None,
            sort_by: None,
            sort_order: None,
            attributes: None,
            excluded: None,
        }
    }

    fn into_query(self, kind: Option<ResourceKind>) -> Result<ListQuery, ScimError> {
        let filter = match self.filter.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(match kind {
                Some(kind) => ScimFilter::parse_for(kind, text)?,
                None => ScimFilter::parse(text)?,
            }),
        };
        let sort_order = match self.sort_order.as_deref() {
            None => SortOrder::Ascending,
            Some(o) if o.eq_ignore_ascii_case("ascending") => SortOrder::Ascending,
            Some(o) if o.eq_ignore_ascii_case("descending") => SortOrder::Descending,
            Some(_) => {
                return Err(ScimError::invalid_value(
                    "sortOrder must be \"ascending\" or \"descending\"",
                ));
            }
        };
        // The root `/.search` mixes Users and Groups: each name applies to the types that
        // have it.
        let kinds = match kind {
            Some(kind) => vec![kind],
            None => vec![ResourceKind::User, ResourceKind::Group],
        };
        let projection =
            Projection::parse_across(&kinds, self.attributes.as_deref(), self.excluded.as_deref())?;
        Ok(ListQuery {
            filter,
            start_index: self.start_index.map_or(1, |i| i.max(1) as usize),
            count: self.count.map(|c| c.max(0) as usize),
            sort_by: self.sort_by.filter(|s| !s.trim().is_empty()),
            sort_order,
            projection,
        })
    }
}

/// A `ListResponse` (RFC 7644 §3.4.2): every number a JSON integer (Okta requires it);
/// `itemsPerPage` is the number of resources actually returned.
pub fn list_response(total_results: usize, start_index: usize, resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_RESPONSE_URN],
        "totalResults": total_results,
        "startIndex": start_index.max(1),
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oktas_existence_check_parses_filter_and_paging() {
        let query = ListQuery::from_query_string(
            Some(ResourceKind::User),
            "filter=userName%20eq%20%22ada%40acme.example%22&startIndex=1&count=100",
        )
        .unwrap();
        let lookup = query
            .filter
            .unwrap()
            .index_lookup(ResourceKind::User)
            .unwrap();
        assert_eq!(lookup.value, "ada@acme.example");
        assert_eq!((query.start_index, query.count), (1, Some(100)));
    }

    #[test]
    fn out_of_range_numbers_are_clamped_and_unknown_parameters_ignored() {
        let query = ListQuery::from_query_string(
            Some(ResourceKind::User),
            "aadOptscim062020&startIndex=-4&count=-1&COUNT=-2",
        )
        .unwrap();
        assert_eq!(query.start_index, 1);
        assert_eq!(query.count, Some(0));
        assert_eq!(query.offset(), 0);
        assert!(query.filter.is_none());
        let query = ListQuery::from_query_string(Some(ResourceKind::User), "").unwrap();
        assert_eq!((query.start_index, query.count), (1, None));
    }

    #[test]
    fn a_non_integer_count_or_a_bad_filter_is_refused() {
        let error =
            ListQuery::from_query_string(Some(ResourceKind::User), "count=ten").unwrap_err();
        assert!(error.detail.contains("count"));
        let error = ListQuery::from_query_string(Some(ResourceKind::User), "filter=userName%20eq")
            .unwrap_err();
        assert_eq!(error.scim_type, Some(crate::scim::ScimType::InvalidFilter));
    }

    #[test]
    fn a_search_request_body_reads_like_the_query_string() {
        let body = json!({
            "schemas": [SEARCH_REQUEST_URN],
            "attributes": ["displayName", "userName"],
            "excludedAttributes": [],
            "filter": "displayName sw \"smith\"",
            "startIndex": 1,
            "count": 10,
            "sortOrder": "descending"
        });
        let query = ListQuery::from_search_body(Some(ResourceKind::User), &body).unwrap();
        assert!(query.filter.is_some());
        assert_eq!(query.count, Some(10));
        assert_eq!(query.sort_order, SortOrder::Descending);
        let projected = query.projection.apply(
            ResourceKind::User,
            &json!({"id": "u", "userName": "a", "title": "t"}),
        );
        assert_eq!(projected, json!({"id": "u", "userName": "a"}));
        let error = ListQuery::from_search_body(None, &json!({"count": "10"})).unwrap_err();
        assert!(error.detail.contains("count"));
    }

    #[test]
    fn a_root_search_request_honours_excluded_attributes_on_every_type() {
        // scim2-tester's search_with_attributes: POST /.search (no resource type) with
        // excludedAttributes; the projection used to be dropped for the root search.
        let body =
            json!({"schemas": [SEARCH_REQUEST_URN], "excludedAttributes": ["name", "members"]});
        let query = ListQuery::from_search_body(None, &body).unwrap();
        let user = query.projection.apply(
            ResourceKind::User,
            &json!({"id": "u", "userName": "a", "name": {"givenName": "A"}}),
        );
        assert_eq!(user, json!({"id": "u", "userName": "a"}));
        let group = query.projection.apply(
            ResourceKind::Group,
            &json!({"id": "g", "displayName": "G", "members": [{"value": "u"}]}),
        );
        assert_eq!(group, json!({"id": "g", "displayName": "G"}));
        let body = json!({"attributes": ["userName"]});
        let query = ListQuery::from_search_body(None, &body).unwrap();
        let group = query
            .projection
            .apply(ResourceKind::Group, &json!({"id": "g", "displayName": "G"}));
        assert_eq!(group, json!({"id": "g"}));
        let error =
            ListQuery::from_search_body(None, &json!({"attributes": "shoeSize"})).unwrap_err();
        assert_eq!(error.scim_type, Some(crate::scim::ScimType::InvalidValue));
    }

    #[test]
    fn the_list_response_uses_integers_and_the_true_page_size() {
        let response = list_response(0, 1, vec![]);
        assert_eq!(
            response,
            json!({
                "schemas": [LIST_RESPONSE_URN],
                "totalResults": 0, "startIndex": 1, "itemsPerPage": 0, "Resources": []
            })
        );
        let response = list_response(250, 101, vec![json!({"id": "a"}), json!({"id": "b"})]);
        assert_eq!(response["itemsPerPage"], 2);
        assert!(response["totalResults"].is_u64());
    }
}
