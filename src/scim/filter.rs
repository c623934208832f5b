//! SCIM filters (RFC 7644 §3.4.2.2): parsed by the `scim_v2` crate's grammar, checked against
//! the attribute table, evaluated here over a resource `Value`.
//!
//! The contract:
//!
//! - [`ScimFilter::parse`] accepts the whole grammar of RFC 7644 Figure 1 (`eq ne co sw ew pr gt
//!   ge lt le`, `and or not`, grouping, value paths, one sub-attribute, URN-prefixed paths;
//!   keywords and attribute names in any case). Input over [`MAX_FILTER_LEN`] bytes, nested
//!   deeper than the crate's 64 levels or with more than its 1024 terms is refused. Two forms
//!   the crate's grammar does not take are accepted by rewriting them before parsing: `not(`
//!   without a space (the RFC's ABNF allows it) and Entra's `emails[type eq "work"].value eq
//!   "x"` (read as `emails[type eq "work" and value eq "x"]`, the same element).
//! - [`ScimFilter::check`] refuses, for one resource type, what cannot be evaluated: an unknown
//!   attribute, a sub-attribute of a simple attribute, `gt`/`ge`/`lt`/`le` on a boolean or
//!   binary (RFC 7644 §3.4.2.2), `co`/`sw`/`ew` on a boolean or number, a comparison value of
//!   the wrong type, filtering on `password`. All are `invalidFilter` naming the attribute.
//! - [`ScimFilter::matches`] is total: strings compare case-insensitively unless the attribute
//!   is `caseExact` (`id`, `externalId`, `meta.version`); `gt`/`lt` on strings are
//!   lexicographic; `dateTime` values compare chronologically (xsd:dateTime, with zones);
//!   numbers numerically; on a multi-valued attribute a comparison matches if **any** value
//!   matches; a complex attribute named without a sub-attribute compares its `value`
//!   sub-attribute (`members eq "id"`, RFC 7643 §2.4). `ne` is the negation of `eq` (an
//!   unassigned attribute is `ne` anything); `eq null` matches an unassigned attribute.
//!   The resource must be the full representation a GET returns (with `id`, `meta`, a group's
//!   `members`), so every attribute can be filtered.
//! - [`ScimFilter::index_lookup`] names the index a store can answer from: the candidates it
//!   returns are a superset of the matches, so the service still runs `matches` over them.
//!
//! Error details name positions and attributes, never comparison values.

use std::cmp::Ordering;
use std::str::FromStr;

use scim_v2::ScimDateTime;
use scim_v2::filter::{
    AttrExp, AttrPath, CompValue, CompareOp, Filter, FilterActionError, ParseError, ValFilter,
};
use serde_json::Value;

use super::error::ScimError;
use super::resource::{lenient_bool, truncated};
use super::schema::{AttrType, Attribute, Located, ResourceKind, get_ci};

/// The longest filter text accepted, in bytes.
pub const MAX_FILTER_LEN: usize = 4096;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimFilter {
    filter: Filter,
}

/// Which index answers a lookup. Owned here, used by the store (`crate::store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IndexKey {
    /// The resource id, compared exactly.
    Id,
    /// A User's `userName`, compared case-insensitively.
    UserName,
    /// A resource's `externalId`, compared exactly.
    ExternalId,
    /// One of a User's `emails[].value`, compared case-insensitively.
    Email,
    /// A Group's `displayName`, compared case-insensitively (it is not `caseExact`).
    DisplayName,
    /// Groups having this user id as a member, compared exactly.
    Member,
}

impl IndexKey {
    /// Whether the store must compare this key without regard to case (RFC 7643 `caseExact`
    /// false), so that an index lookup never misses a match the filter would make.
    pub fn case_insensitive(self) -> bool {
        matches!(
            self,
            IndexKey::UserName | IndexKey::Email | IndexKey::DisplayName
        )
    }
}

/// An index lookup: resources whose `key` equals `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexLookup {
    pub key: IndexKey,
    pub value: String,
}

impl FromStr for ScimFilter {
    type Err = ScimError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ScimFilter::parse(text)
    }
}

impl ScimFilter {
    /// Parse a filter's text (already percent-decoded). Errors are `invalidFilter`.
    pub fn parse(text: &str) -> Result<Self, ScimError> {
        if text.len() > MAX_FILTER_LEN {
            return Err(ScimError::invalid_filter(format!(
                "the filter is {} bytes long; at most {MAX_FILTER_LEN} are accepted",
                text.len()
            )));
        }
        if text.trim().is_empty() {
            return Err(ScimError::invalid_filter("the filter is empty"));
        }
        match Filter::from_str(text) {
            Ok(filter) => Ok(ScimFilter { filter }),
            Err(original) => match rewrite(text).map(|t| Filter::from_str(&t)) {
                Some(Ok(filter)) => Ok(ScimFilter { filter }),
                _ => Err(parse_error(text, original)),
            },
        }
    }

    /// Parse and [`check`](Self::check) for one resource type.
    pub fn parse_for(kind: ResourceKind, text: &str) -> Result<Self, ScimError> {
        let filter = Self::parse(text)?;
        filter.check(kind)?;
        Ok(filter)
    }

    /// The syntax tree.
    pub fn ast(&self) -> &Filter {
        &self.filter
    }

    /// Refuse what cannot be evaluated over a `kind` resource (see the module doc).
    pub fn check(&self, kind: ResourceKind) -> Result<(), ScimError> {
        check_filter(&self.filter, kind)
    }

    /// Whether `resource` (a full `kind` representation) matches. A filter that did not pass
    /// [`check`](Self::check) for `kind` matches nothing it cannot evaluate.
    pub fn matches(&self, kind: ResourceKind, resource: &Value) -> bool {
        eval(&self.filter, kind, resource)
    }

    /// The index that yields a superset of this filter's matches, if there is one.
    pub fn index_lookup(&self, kind: ResourceKind) -> Option<IndexLookup> {
        index_lookup(&self.filter, kind)
    }
}

/// [`ScimFilter::index_lookup`] as a function.
pub fn index_lookup(filter: &Filter, kind: ResourceKind) -> Option<IndexLookup> {
    match filter {
        Filter::Attr(AttrExp::Comparison(path, CompareOp::Eq, CompValue::Str(value))) => {
            let located = kind.resolve(path.uri.as_deref(), &path.name)?;
            let key = index_key(kind, &located, path.sub_attr.as_deref())?;
            Some(IndexLookup {
                key,
                value: value.clone(),
            })
        }
        Filter::ValuePath(vp) if vp.attr.sub_attr.is_none() => {
            let located = kind.resolve(vp.attr.uri.as_deref(), &vp.attr.name)?;
            let key = index_key(kind, &located, Some("value"))?;
            let value = val_filter_value_eq(&vp.filter)?;
            Some(IndexLookup { key, value })
        }
        // The most selective indexable operand of a conjunction narrows the whole.
        Filter::And(operands) => operands
            .iter()
            .filter_map(|f| index_lookup(f, kind))
            .min_by_key(|lookup| selectivity(lookup.key)),
        _ => None,
    }
}

fn selectivity(key: IndexKey) -> u8 {
    match key {
        IndexKey::Id => 0,
        IndexKey::UserName => 1,
        IndexKey::ExternalId => 2,
        IndexKey::DisplayName => 3,
        IndexKey::Email => 4,
        IndexKey::Member => 5,
    }
}

fn index_key(kind: ResourceKind, located: &Located, sub: Option<&str>) -> Option<IndexKey> {
    if located.extension.is_some() {
        return None;
    }
    let name = located.attribute.name;
    let value_sub = sub.is_none_or(|s| s.eq_ignore_ascii_case("value"));
    match (kind, name) {
        (_, "id") if sub.is_none() => Some(IndexKey::Id),
        (_, "externalId") if sub.is_none() => Some(IndexKey::ExternalId),
        (ResourceKind::User, "userName") if sub.is_none() => Some(IndexKey::UserName),
        (ResourceKind::User, "emails") if value_sub => Some(IndexKey::Email),
        (ResourceKind::Group, "displayName") if sub.is_none() => Some(IndexKey::DisplayName),
        (ResourceKind::Group, "members") if value_sub => Some(IndexKey::Member),
        _ => None,
    }
}

/// The string of a `value eq "…"` inside a value filter, alone or in a conjunction.
fn val_filter_value_eq(filter: &ValFilter) -> Option<String> {
    match filter {
        ValFilter::Attr(AttrExp::Comparison(path, CompareOp::Eq, CompValue::Str(value)))
            if path.uri.is_none()
                && path.sub_attr.is_none()
                && path.name.eq_ignore_ascii_case("value") =>
        {
            Some(value.clone())
        }
        ValFilter::And(operands) => operands.iter().find_map(val_filter_value_eq),
        _ => None,
    }
}

// --- parse errors ---------------------------------------------------------------------------

fn parse_error(text: &str, error: ParseError) -> ScimError {
    ScimError::invalid_filter(describe_parse_error("the filter", text, error))
}

/// A sentence naming where and why `text` (called `what`) did not parse; never its values.
pub(crate) fn describe_parse_error(what: &str, text: &str, error: ParseError) -> String {
    let at = |offset: usize| text.get(..offset).map_or(offset, |s| s.chars().count());
    let expected = |expected: &[String]| {
        if expected.is_empty() {
            String::new()
        } else {
            let list: Vec<&str> = expected.iter().take(12).map(String::as_str).collect();
            format!("; expected one of {}", list.join(", "))
        }
    };
    match error {
        ParseError::InvalidToken { location } => {
            format!(
                "{what} has an invalid character at position {}",
                at(location)
            )
        }
        ParseError::UnrecognizedEof {
            location,
            expected: e,
        } => format!(
            "{what} ends early at position {}{}",
            at(location),
            expected(&e)
        ),
        ParseError::UnrecognizedToken {
            token: (start, _, _),
            expected: e,
        } => format!(
            "{what} has an unexpected token at position {}{}",
            at(start),
            expected(&e)
        ),
        ParseError::ExtraToken {
            token: (start, _, _),
        } => format!("{what} has an extra token at position {}", at(start)),
        ParseError::User { error } => match error {
            FilterActionError::DepthExceeded(_) => format!(
                "{what} is nested more than {} levels deep",
                scim_v2::filter::MAX_FILTER_DEPTH
            ),
            FilterActionError::TooManyTerms(_) => format!(
                "{what} has more than {} comparisons",
                scim_v2::filter::MAX_FILTER_TERMS
            ),
            FilterActionError::InvalidCompValue(_) => format!(
                "{what} has a comparison value that is not a JSON string, number, boolean or null"
            ),
            other => format!(
                "{what} has an invalid attribute path: {}",
                truncated(&other.to_string())
            ),
        },
    }
}

/// Rewrite the two forms the grammar refuses (module doc); `None` when nothing changed.
fn rewrite(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 16);
    let mut open_brackets: Vec<usize> = Vec::new();
    let mut changed = false;
    let mut i = 0;
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let string_end = |start: usize| {
        // `start` is an opening quote; returns the index after the closing one.
        let mut j = start + 1;
        while j < chars.len() {
            match chars[j] {
                '\\' => j += 2,
                '"' => return j + 1,
                _ => j += 1,
            }
        }
        chars.len()
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            let end = string_end(i);
            out.extend(&chars[i..end]);
            i = end;
            continue;
        }
        let at_word_start =
            i == 0 || !(is_name_char(chars[i - 1]) || chars[i - 1] == '.' || chars[i - 1] == ':');
        if at_word_start
            && i + 3 < chars.len()
            && chars[i..i + 3]
                .iter()
                .collect::<String>()
                .eq_ignore_ascii_case("not")
            && chars[i + 3] == '('
        {
            out.extend(&chars[i..i + 3]);
            out.push(' ');
            i += 3;
            changed = true;
            continue;
        }
        if c == '[' {
            open_brackets.push(out.len());
        }
        if c == ']'
            && i + 2 < chars.len()
            && chars[i + 1] == '.'
            && chars[i + 2].is_ascii_alphabetic()
            && let Some(open) = open_brackets.pop()
        {
            // attr[inner].sub op value  →  attr[(inner) and sub op value]
            let mut j = i + 2;
            while j < chars.len() && is_name_char(chars[j]) {
                j += 1;
            }
            let sub: String = chars[i + 2..j].iter().collect();
            while j < chars.len() && chars[j] == ' ' {
                j += 1;
            }
            let op_start = j;
            while j < chars.len() && chars[j].is_ascii_alphabetic() {
                j += 1;
            }
            let op: String = chars[op_start..j].iter().collect();
            let mut comparison = format!("{sub} {op}");
            if !op.eq_ignore_ascii_case("pr") {
                while j < chars.len() && chars[j] == ' ' {
                    j += 1;
                }
                let value_start = j;
                if j < chars.len() && chars[j] == '"' {
                    j = string_end(j);
                } else {
                    while j < chars.len() && !matches!(chars[j], ' ' | ')' | ']') {
                        j += 1;
                    }
                }
                comparison.push(' ');
                comparison.extend(&chars[value_start..j]);
            }
            let inner = out.split_off(open + 1);
            out.push('(');
            out.push_str(&inner);
            out.push_str(") and ");
            out.push_str(&comparison);
            out.push(']');
            i = j;
            changed = true;
            continue;
        }
        if c == ']' {
            open_brackets.pop();
        }
        out.push(c);
        i += 1;
    }
    changed.then_some(out)
}

// --- check ----------------------------------------------------------------------------------

fn check_filter(filter: &Filter, kind: ResourceKind) -> Result<(), ScimError> {
    match filter {
        Filter::Attr(exp) => {
            let (path, op, value) = split(exp);
            let leaf = resolve_leaf(kind, path, op.is_none())?;
            check_comparison(&path.to_string(), leaf, op, value)
        }
        Filter::ValuePath(vp) => {
            let parent = resolve_value_path(kind, &vp.attr)?;
            check_val_filter(&vp.filter, parent, &vp.attr.to_string())
        }
        Filter::Not(inner) => check_filter(inner, kind),
        Filter::And(operands) | Filter::Or(operands) => {
            operands.iter().try_for_each(|f| check_filter(f, kind))
        }
    }
}

pub(crate) fn check_val_filter(
    filter: &ValFilter,
    parent: &'static Attribute,
    parent_name: &str,
) -> Result<(), ScimError> {
    match filter {
        ValFilter::Attr(exp) => {
            let (path, op, value) = split(exp);
            let sub = val_leaf(parent, path).ok_or_else(|| {
                ScimError::invalid_filter(format!(
                    "{parent_name} has no sub-attribute \"{}\" to filter on",
                    truncated(&path.to_string())
                ))
            })?;
            check_comparison(&format!("{parent_name}.{}", sub.name), sub, op, value)
        }
        ValFilter::Not(inner) => check_val_filter(inner, parent, parent_name),
        ValFilter::And(operands) | ValFilter::Or(operands) => operands
            .iter()
            .try_for_each(|f| check_val_filter(f, parent, parent_name)),
    }
}

fn split(exp: &AttrExp) -> (&AttrPath, Option<&CompareOp>, Option<&CompValue>) {
    match exp {
        AttrExp::Present(path) => (path, None, None),
        AttrExp::Comparison(path, op, value) => (path, Some(op), Some(value)),
    }
}

/// The attribute a filter's path compares: the named one, its sub-attribute, or for a complex
/// attribute compared without a sub-attribute its `value` (`present` tests the whole).
fn resolve_leaf(
    kind: ResourceKind,
    path: &AttrPath,
    present: bool,
) -> Result<&'static Attribute, ScimError> {
    let name = path.to_string();
    let located = kind
        .resolve(path.uri.as_deref(), &path.name)
        .ok_or_else(|| {
            ScimError::invalid_filter(format!(
                "the filter names \"{}\", which is not an attribute of a {}",
                truncated(&name),
                kind.name()
            ))
        })?;
    let attribute = located.attribute;
    if attribute.name == "password" {
        return Err(ScimError::invalid_filter("password cannot be filtered on"));
    }
    match (&path.sub_attr, attribute.kind) {
        (Some(sub), AttrType::Complex) => attribute.sub_attribute(sub).ok_or_else(|| {
            ScimError::invalid_filter(format!(
                "{} has no sub-attribute \"{}\"",
                attribute.name,
                truncated(sub)
            ))
        }),
        (Some(_), _) => Err(ScimError::invalid_filter(format!(
            "{} has no sub-attributes",
            attribute.name
        ))),
        (None, AttrType::Complex) if present => Ok(attribute),
        (None, AttrType::Complex) => attribute.value_sub_attribute().ok_or_else(|| {
            ScimError::invalid_filter(format!(
                "{} is complex: compare one of its sub-attributes (e.g. {}.{})",
                attribute.name,
                attribute.name,
                attribute.sub_attributes.first().map_or("value", |s| s.name)
            ))
        }),
        (None, _) => Ok(attribute),
    }
}

fn resolve_value_path(
    kind: ResourceKind,
    path: &AttrPath,
) -> Result<&'static Attribute, ScimError> {
    let located = kind
        .resolve(path.uri.as_deref(), &path.name)
        .ok_or_else(|| {
            ScimError::invalid_filter(format!(
                "the filter names \"{}\", which is not an attribute of a {}",
                truncated(&path.to_string()),
                kind.name()
            ))
        })?;
    if located.attribute.kind != AttrType::Complex || path.sub_attr.is_some() {
        return Err(ScimError::invalid_filter(format!(
            "a value filter [ ] applies to a complex attribute, not to {}",
            truncated(&path.to_string())
        )));
    }
    Ok(located.attribute)
}

/// The sub-attribute an attribute path inside `parent[ … ]` names.
fn val_leaf(parent: &'static Attribute, path: &AttrPath) -> Option<&'static Attribute> {
    if path.uri.is_some() || path.sub_attr.is_some() {
        return None;
    }
    parent.sub_attribute(&path.name)
}

fn check_comparison(
    name: &str,
    leaf: &Attribute,
    op: Option<&CompareOp>,
    value: Option<&CompValue>,
) -> Result<(), ScimError> {
    let (Some(op), Some(value)) = (op, value) else {
        return Ok(()); // pr
    };
    let refuse = |why: &str| Err(ScimError::invalid_filter(format!("{name}: {why}")));
    let ordering = matches!(
        op,
        CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
    );
    let substring = matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew);
    if matches!(value, CompValue::Null) {
        return if matches!(op, CompareOp::Eq | CompareOp::Ne) {
            Ok(())
        } else {
            refuse("null can only be compared with eq or ne")
        };
    }
    match leaf.kind {
        AttrType::Boolean => {
            if ordering || substring {
                return refuse(&format!(
                    "{op} cannot compare a boolean (RFC 7644 §3.4.2.2)"
                ));
            }
            if comp_bool(value).is_none() {
                return refuse("a boolean is compared with true or false");
            }
        }
        AttrType::Binary if ordering => {
            return refuse(&format!(
                "{op} cannot compare a binary value (RFC 7644 §3.4.2.2)"
            ));
        }
        AttrType::Integer | AttrType::Decimal => {
            if substring {
                return refuse(&format!("{op} cannot compare a number"));
            }
            if !matches!(value, CompValue::Number(_)) {
                return refuse("a number is compared with a number");
            }
        }
        AttrType::DateTime => {
            let CompValue::Str(text) = value else {
                return refuse("a dateTime is compared with a string");
            };
            if !substring && text.parse::<ScimDateTime>().is_err() {
                return refuse("the value is not an xsd:dateTime such as 2026-01-31T12:00:00Z");
            }
        }
        AttrType::String | AttrType::Reference | AttrType::Binary => {
            if !matches!(value, CompValue::Str(_)) {
                return refuse("a string is compared with a string");
            }
        }
        AttrType::Complex => return refuse("compare one of its sub-attributes"),
    }
    Ok(())
}

fn comp_bool(value: &CompValue) -> Option<bool> {
    match value {
        CompValue::True => Some(true),
        CompValue::False => Some(false),
        CompValue::Str(text) => lenient_bool(&Value::from(text.as_str())),
        _ => None,
    }
}

// --- evaluation -----------------------------------------------------------------------------

fn eval(filter: &Filter, kind: ResourceKind, resource: &Value) -> bool {
    match filter {
        Filter::Attr(exp) => {
            let (path, op, value) = split(exp);
            let Ok(leaf) = resolve_leaf(kind, path, op.is_none()) else {
                return false;
            };
            let Some(located) = kind.resolve(path.uri.as_deref(), &path.name) else {
                return false;
            };
            let values = leaf_values(&located, leaf, resource);
            eval_values(leaf, &values, op, value)
        }
        Filter::ValuePath(vp) => {
            let Ok(parent) = resolve_value_path(kind, &vp.attr) else {
                return false;
            };
            let Some(located) = kind.resolve(vp.attr.uri.as_deref(), &vp.attr.name) else {
                return false;
            };
            elements(located.get(resource)).any(|element| eval_val(&vp.filter, parent, element))
        }
        Filter::Not(inner) => !eval(inner, kind, resource),
        Filter::And(operands) => operands.iter().all(|f| eval(f, kind, resource)),
        Filter::Or(operands) => operands.iter().any(|f| eval(f, kind, resource)),
    }
}

pub(crate) fn eval_val(filter: &ValFilter, parent: &'static Attribute, element: &Value) -> bool {
    match filter {
        ValFilter::Attr(exp) => {
            let (path, op, value) = split(exp);
            let Some(sub) = val_leaf(parent, path) else {
                return false;
            };
            let values: Vec<&Value> = get_ci(element, sub.name)
                .filter(|v| !v.is_null())
                .into_iter()
                .collect();
            eval_values(sub, &values, op, value)
        }
        ValFilter::Not(inner) => !eval_val(inner, parent, element),
        ValFilter::And(operands) => operands.iter().all(|f| eval_val(f, parent, element)),
        ValFilter::Or(operands) => operands.iter().any(|f| eval_val(f, parent, element)),
    }
}

/// A value and, if it is an array, its elements (a single value is one element).
fn elements(value: Option<&Value>) -> impl Iterator<Item = &Value> {
    let slice: &[Value] = match value {
        Some(Value::Array(items)) => items,
        Some(single) => std::slice::from_ref(single),
        None => &[],
    };
    slice.iter().filter(|v| !v.is_null())
}

/// The values a path designates in a resource: for `emails.value` every e-mail's value.
fn leaf_values<'a>(
    located: &Located,
    leaf: &'static Attribute,
    resource: &'a Value,
) -> Vec<&'a Value> {
    let top = located.get(resource);
    let attribute = located.attribute;
    if attribute.kind == AttrType::Complex && !std::ptr::eq(leaf, attribute) {
        // A sub-attribute (named, or `value` by default) of each element.
        elements(top)
            .filter_map(|element| get_ci(element, leaf.name))
            .filter(|v| !v.is_null())
            .collect()
    } else {
        elements(top).collect()
    }
}

fn eval_values(
    leaf: &Attribute,
    values: &[&Value],
    op: Option<&CompareOp>,
    expected: Option<&CompValue>,
) -> bool {
    let (Some(op), Some(expected)) = (op, expected) else {
        return values.iter().any(|v| is_present(v));
    };
    if matches!(expected, CompValue::Null) {
        let present = values.iter().any(|v| is_present(v));
        return match op {
            CompareOp::Eq => !present,
            CompareOp::Ne => present,
            _ => false,
        };
    }
    match op {
        CompareOp::Ne => !values
            .iter()
            .any(|v| compare(leaf, v, &CompareOp::Eq, expected)),
        _ => values.iter().any(|v| compare(leaf, v, op, expected)),
    }
}

fn is_present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => items.iter().any(is_present),
        Value::Object(map) => map.values().any(is_present),
        _ => true,
    }
}

fn compare(leaf: &Attribute, actual: &Value, op: &CompareOp, expected: &CompValue) -> bool {
    match leaf.kind {
        AttrType::Boolean => {
            let (Some(actual), Some(expected)) = (lenient_bool(actual), comp_bool(expected)) else {
                return false;
            };
            match op {
                CompareOp::Eq => actual == expected,
                _ => false,
            }
        }
        AttrType::Integer | AttrType::Decimal => {
            let (Some(actual), CompValue::Number(expected)) = (actual.as_f64(), expected) else {
                return false;
            };
            let Some(expected) = expected.as_f64() else {
                return false;
            };
            ordered(actual.partial_cmp(&expected), op)
        }
        AttrType::DateTime if !matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew) => {
            let (Some(actual), CompValue::Str(expected)) = (actual.as_str(), expected) else {
                return false;
            };
            let (Ok(actual), Ok(expected)) = (
                actual.parse::<ScimDateTime>(),
                expected.parse::<ScimDateTime>(),
            ) else {
                return false;
            };
            if matches!(op, CompareOp::Eq) {
                return actual.xsd_equivalent(&expected);
            }
            ordered(actual.xsd_partial_cmp(&expected), op)
        }
        _ => {
            let (Some(actual), CompValue::Str(expected)) = (actual.as_str(), expected) else {
                return false;
            };
            if leaf.case_exact {
                compare_strings(actual, expected, op)
            } else {
                compare_strings(&actual.to_lowercase(), &expected.to_lowercase(), op)
            }
        }
    }
}

fn compare_strings(actual: &str, expected: &str, op: &CompareOp) -> bool {
    match op {
        CompareOp::Co => actual.contains(expected),
        CompareOp::Sw => actual.starts_with(expected),
        CompareOp::Ew => actual.ends_with(expected),
        _ => ordered(Some(actual.cmp(expected)), op),
    }
}

fn ordered(ordering: Option<Ordering>, op: &CompareOp) -> bool {
    let Some(ordering) = ordering else {
        return false;
    };
    match op {
        CompareOp::Eq => ordering == Ordering::Equal,
        CompareOp::Ne => ordering != Ordering::Equal,
        CompareOp::Gt => ordering == Ordering::Greater,
        CompareOp::Ge => ordering != Ordering::Less,
        CompareOp::Lt => ordering == Ordering::Less,
        CompareOp::Le => ordering != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::ScimType;
    use serde_json::json;

    fn user() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "externalId": "00uABC",
            "userName": "Ada.Lovelace@Acme.example",
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "title": "Countess",
            "active": true,
            "emails": [
                {"value": "ada@acme.example", "type": "work", "primary": true},
                {"value": "ada@home.example", "type": "home"}
            ],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "employeeNumber": "701984",
                "manager": {"value": "m-26118915"}
            },
            "meta": {
                "resourceType": "User",
                "created": "2026-01-10T08:00:00.000Z",
                "lastModified": "2026-03-05T12:30:00.000Z",
                "version": "W/\"3\""
            }
        })
    }

    fn group() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "id": "g-1",
            "displayName": "Admins",
            "members": [{"value": "u-1", "display": "Ada"}, {"value": "u-2"}]
        })
    }

    fn user_matches(text: &str) -> bool {
        let filter = ScimFilter::parse_for(ResourceKind::User, text)
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        filter.matches(ResourceKind::User, &user())
    }

    fn group_matches(text: &str) -> bool {
        let filter = ScimFilter::parse_for(ResourceKind::Group, text)
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        filter.matches(ResourceKind::Group, &group())
    }

    fn refused(kind: ResourceKind, text: &str) -> ScimError {
        ScimFilter::parse_for(kind, text).expect_err(text)
    }

    #[test]
    fn every_attribute_operator_compares_as_the_rfc_says() {
        for (text, expected) in [
            (r#"userName eq "ada.lovelace@acme.example""#, true),
            (r#"userName eq "ada""#, false),
            (r#"userName ne "ada""#, true),
            (r#"userName ne "ADA.LOVELACE@ACME.EXAMPLE""#, false),
            (r#"userName co "LOVELACE""#, true),
            (r#"userName sw "ada.""#, true),
            (r#"userName sw "love""#, false),
            (r#"userName ew "@acme.EXAMPLE""#, true),
            (r#"title pr"#, true),
            (r#"nickName pr"#, false),
            (r#"title gt "Count""#, true),
            (r#"title ge "countess""#, true),
            (r#"title lt "Count""#, false),
            (r#"title le "D""#, true),
        ] {
            assert_eq!(user_matches(text), expected, "{text}");
        }
    }

    #[test]
    fn case_exact_attributes_compare_exactly() {
        assert!(user_matches(r#"externalId eq "00uABC""#));
        assert!(!user_matches(r#"externalId eq "00uabc""#));
        assert!(!user_matches(
            r#"id eq "2819C223-7F76-453A-919D-413861904646""#
        ));
        assert!(user_matches(
            r#"id eq "2819c223-7f76-453a-919d-413861904646""#
        ));
    }

    #[test]
    fn attribute_names_and_keywords_are_case_insensitive() {
        assert!(user_matches(r#"USERNAME Eq "ada.lovelace@acme.example""#));
        assert!(user_matches(
            r#"name.GIVENNAME EQ "ada" AND Active EQ true"#
        ));
    }

    #[test]
    fn logical_operators_grouping_and_not_combine_with_rfc_precedence() {
        assert!(user_matches(
            r#"title eq "x" or userName sw "ada" and active eq true"#
        ));
        assert!(!user_matches(
            r#"(title eq "x" or userName sw "ada") and active eq false"#
        ));
        assert!(user_matches(r#"not (title eq "x")"#));
        assert!(user_matches(r#"not(title eq "x")"#), "not( without a space");
        assert!(!user_matches(r#"not (title pr) or (userName eq "nobody")"#));
    }

    #[test]
    fn a_multi_valued_attribute_matches_if_any_value_matches() {
        assert!(user_matches(r#"emails.value eq "ADA@home.example""#));
        assert!(
            user_matches(r#"emails co "home.example""#),
            "no sub-attribute: value"
        );
        assert!(!user_matches(r#"emails.value eq "nobody@x.example""#));
        assert!(user_matches(r#"emails.type eq "home""#));
    }

    #[test]
    fn value_paths_match_one_element_on_all_its_conditions() {
        assert!(user_matches(
            r#"emails[type eq "work" and value co "@acme.example"]"#
        ));
        assert!(!user_matches(
            r#"emails[type eq "home" and value co "@acme.example"]"#
        ));
        assert!(user_matches(r#"emails[primary eq true] and userName pr"#));
        assert!(user_matches(r#"name[givenName eq "ada"]"#));
    }

    #[test]
    fn entras_value_path_with_a_sub_attribute_comparison_is_accepted() {
        assert!(user_matches(
            r#"emails[type eq "work"].value eq "ada@acme.example""#
        ));
        assert!(!user_matches(
            r#"emails[type eq "home"].value eq "ada@acme.example""#
        ));
        assert!(user_matches(r#"emails[type eq "work"].value pr"#));
    }

    #[test]
    fn urn_prefixed_paths_reach_the_extension_and_the_core() {
        assert!(user_matches(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984""#
        ));
        assert!(user_matches(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "m-26118915""#
        ));
        assert!(user_matches(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "ada""#
        ));
        assert!(
            user_matches(r#"manager eq "m-26118915""#),
            "Entra names it without the URN"
        );
    }

    #[test]
    fn entras_reference_checks_evaluate() {
        assert!(user_matches(
            r#"id eq "2819c223-7f76-453a-919d-413861904646" and manager eq "m-26118915""#
        ));
        assert!(group_matches(r#"id eq "g-1" and members eq "u-2""#));
        assert!(!group_matches(r#"id eq "g-1" and members eq "u-3""#));
        assert!(group_matches(r#"members.value eq "u-1""#));
        assert!(group_matches(r#"displayName eq "admins""#));
    }

    #[test]
    fn date_times_compare_chronologically_across_zones() {
        assert!(user_matches(
            r#"meta.lastModified gt "2026-03-05T12:00:00Z""#
        ));
        assert!(!user_matches(
            r#"meta.lastModified gt "2026-03-05T13:00:00+00:00""#
        ));
        assert!(user_matches(
            r#"meta.lastModified eq "2026-03-05T13:30:00+01:00""#
        ));
        assert!(user_matches(r#"meta.created lt "2026-01-10T08:00:01Z""#));
        assert!(user_matches(r#"meta.created le "2026-01-10T08:00:00Z""#));
    }

    #[test]
    fn booleans_compare_with_true_false_and_entras_strings() {
        assert!(user_matches("active eq true"));
        assert!(!user_matches("active eq false"));
        assert!(user_matches(r#"active eq "True""#));
        let inactive = json!({"userName": "x", "active": "False"});
        let filter = ScimFilter::parse_for(ResourceKind::User, "active eq false").unwrap();
        assert!(filter.matches(ResourceKind::User, &inactive));
    }

    #[test]
    fn null_stands_for_unassigned() {
        assert!(user_matches("nickName eq null"));
        assert!(!user_matches("title eq null"));
        assert!(user_matches("title ne null"));
    }

    #[test]
    fn what_cannot_be_evaluated_is_an_invalid_filter_naming_the_attribute() {
        for (text, names) in [
            ("active gt true", "active"),
            (
                r#"x509Certificates.value lt "AA==""#,
                "x509Certificates.value",
            ),
            (r#"active co "t""#, "active"),
            (r#"favouriteColour eq "teal""#, "favouriteColour"),
            (r#"userName.first eq "a""#, "userName has no sub-attributes"),
            (r#"name eq "Ada""#, "name is complex"),
            (r#"name.nickname eq "a""#, "nickname"),
            ("userName eq 42", "userName"),
            (r#"meta.created gt "yesterday""#, "meta.created"),
            (r#"emails[kind eq "work"]"#, "kind"),
            (r#"userName[value eq "x"]"#, "userName"),
            (r#"password eq "secret""#, "password"),
            (r#"userName gt null"#, "null"),
        ] {
            let error = refused(ResourceKind::User, text);
            assert_eq!(error.scim_type, Some(ScimType::InvalidFilter), "{text}");
            assert!(error.detail.contains(names), "{text}: {}", error.detail);
        }
        let error = refused(ResourceKind::Group, r#"userName eq "a""#);
        assert!(error.detail.contains("not an attribute of a Group"));
    }

    #[test]
    fn parse_errors_name_the_position_and_not_the_value() {
        let error = ScimFilter::parse(r#"userName eq "secret" garbage"#).unwrap_err();
        assert_eq!(error.scim_type, Some(ScimType::InvalidFilter));
        assert!(error.detail.contains("position 21"), "{}", error.detail);
        assert!(!error.detail.contains("secret"));
        let error = ScimFilter::parse("userName eq").unwrap_err();
        assert!(error.detail.contains("position"), "{}", error.detail);
        assert!(ScimFilter::parse("").is_err());
        assert!(ScimFilter::parse(r#"userName eq "unterminated"#).is_err());
    }

    #[test]
    fn hostile_filters_are_refused_without_harm() {
        let long = format!(r#"userName eq "{}""#, "a".repeat(MAX_FILTER_LEN));
        let error = ScimFilter::parse(&long).unwrap_err();
        assert!(error.detail.contains("at most 4096"), "{}", error.detail);

        let deep = format!("{}userName pr{}", "(".repeat(500), ")".repeat(500));
        let error = ScimFilter::parse(&deep).unwrap_err();
        assert!(error.detail.contains("nested"), "{}", error.detail);

        let nots = format!("{}userName pr{}", "not (".repeat(100), ")".repeat(100));
        assert!(ScimFilter::parse(&nots).is_err());

        // A flat chain as long as the length cap allows still parses and evaluates.
        let chain = vec!["title pr"; 300].join(" or ");
        assert!(chain.len() <= MAX_FILTER_LEN);
        assert!(user_matches(&chain));
    }

    #[test]
    fn a_not_inside_a_string_is_left_alone() {
        assert!(!user_matches(r#"title eq "not(x)""#));
        let resource = json!({"userName": "u", "title": "not(x)"});
        let filter = ScimFilter::parse_for(ResourceKind::User, r#"title eq "not(x)""#).unwrap();
        assert!(filter.matches(ResourceKind::User, &resource));
    }

    #[test]
    fn the_index_lookups_a_store_can_answer_are_recognised() {
        let lookup = |kind, text: &str| {
            ScimFilter::parse_for(kind, text)
                .unwrap()
                .index_lookup(kind)
        };
        let of = |key, value: &str| {
            Some(IndexLookup {
                key,
                value: value.to_owned(),
            })
        };
        use IndexKey::*;
        let user = ResourceKind::User;
        let group = ResourceKind::Group;
        assert_eq!(lookup(user, r#"userName eq "Ada""#), of(UserName, "Ada"));
        assert_eq!(lookup(user, r#"USERNAME Eq "Ada""#), of(UserName, "Ada"));
        assert_eq!(
            lookup(user, r#"externalId eq "00u1""#),
            of(ExternalId, "00u1")
        );
        assert_eq!(lookup(user, r#"emails.value eq "a@x""#), of(Email, "a@x"));
        assert_eq!(lookup(user, r#"emails eq "a@x""#), of(Email, "a@x"));
        assert_eq!(lookup(user, r#"emails[value eq "a@x"]"#), of(Email, "a@x"));
        assert_eq!(
            lookup(user, r#"emails[type eq "work" and value eq "a@x"]"#),
            of(Email, "a@x")
        );
        assert_eq!(
            lookup(user, r#"emails[type eq "work"].value eq "a@x""#),
            of(Email, "a@x")
        );
        assert_eq!(lookup(user, r#"id eq "u-1""#), of(Id, "u-1"));
        assert_eq!(
            lookup(user, r#"id eq "u-1" and manager eq "m""#),
            of(Id, "u-1")
        );
        assert_eq!(
            lookup(group, r#"displayName eq "Admins""#),
            of(DisplayName, "Admins")
        );
        assert_eq!(
            lookup(group, r#"members.value eq "u-1""#),
            of(Member, "u-1")
        );
        assert_eq!(
            lookup(group, r#"members eq "u-1" and id eq "g-1""#),
            of(Id, "g-1")
        );
        assert_eq!(lookup(user, r#"userName co "Ada""#), None);
        assert_eq!(lookup(user, r#"userName eq "a" or userName eq "b""#), None);
        assert_eq!(lookup(user, r#"not (userName eq "a")"#), None);
        assert_eq!(
            lookup(user, r#"displayName eq "Ada""#),
            None,
            "not indexed for users"
        );
        assert_eq!(lookup(user, r#"emails.type eq "work""#), None);
    }

    #[test]
    fn the_keys_compared_without_case_are_the_non_case_exact_attributes() {
        assert!(IndexKey::UserName.case_insensitive());
        assert!(IndexKey::Email.case_insensitive());
        assert!(IndexKey::DisplayName.case_insensitive());
        assert!(!IndexKey::Id.case_insensitive());
        assert!(!IndexKey::ExternalId.case_insensitive());
        assert!(!IndexKey::Member.case_insensitive());
    }
}
