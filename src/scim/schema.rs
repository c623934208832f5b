//! The attribute tables of the resources kratos-jit serves: the core User, the enterprise
//! extension and the core Group (RFC 7643 §4 and the schema listing of §8.7.1), plus the common
//! attributes `id`, `externalId` and `meta` (§3.1).
//!
//! This table is the one source for everything that depends on an attribute's characteristics:
//! validation of bodies ([`super::resource`]), case-insensitive name lookup, the comparison rules
//! of filters (`caseExact`, types: [`super::filter`]), PATCH targets ([`super::patch`]),
//! projection (`returned`: [`super::project`]) and the `/Schemas` documents
//! ([`super::discovery`]). An attribute kratos-jit does not list here is not accepted, not
//! filterable and not advertised.
//!
//! Defaults follow RFC 7643 §7 (not required, not case-exact, `readWrite`, `default`, `none`).

use serde_json::{Map, Value, json};

/// The core User schema URN (RFC 7643 §4.1).
pub const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The enterprise User extension URN (RFC 7643 §4.3).
pub const ENTERPRISE_USER_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// The core Group schema URN (RFC 7643 §4.2).
pub const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// An attribute's data type (RFC 7643 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Binary,
    Reference,
    Complex,
}

impl AttrType {
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Decimal => "decimal",
            AttrType::Integer => "integer",
            AttrType::DateTime => "dateTime",
            AttrType::Binary => "binary",
            AttrType::Reference => "reference",
            AttrType::Complex => "complex",
        }
    }
}

/// Whether and how a client may write an attribute (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

impl Mutability {
    pub fn as_str(self) -> &'static str {
        match self {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        }
    }
}

/// When an attribute is returned (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
    Request,
}

impl Returned {
    pub fn as_str(self) -> &'static str {
        match self {
            Returned::Always => "always",
            Returned::Never => "never",
            Returned::Default => "default",
            Returned::Request => "request",
        }
    }
}

/// How unique a value must be (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    None,
    Server,
    Global,
}

impl Uniqueness {
    pub fn as_str(self) -> &'static str {
        match self {
            Uniqueness::None => "none",
            Uniqueness::Server => "server",
            Uniqueness::Global => "global",
        }
    }
}

/// One attribute definition with its characteristics (RFC 7643 §7).
#[derive(Debug, Clone, Copy)]
pub struct Attribute {
    /// The schema's spelling; lookups compare case-insensitively (RFC 7643 §2.1).
    pub name: &'static str,
    pub kind: AttrType,
    pub multi_valued: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    pub sub_attributes: &'static [Attribute],
    pub canonical_values: &'static [&'static str],
    pub reference_types: &'static [&'static str],
    pub description: &'static str,
}

const fn attr(name: &'static str, kind: AttrType) -> Attribute {
    Attribute {
        name,
        kind,
        multi_valued: false,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        returned: Returned::Default,
        uniqueness: Uniqueness::None,
        sub_attributes: &[],
        canonical_values: &[],
        reference_types: &[],
        description: "",
    }
}

const fn string(name: &'static str) -> Attribute {
    attr(name, AttrType::String)
}

const fn complex(name: &'static str, subs: &'static [Attribute]) -> Attribute {
    let mut a = attr(name, AttrType::Complex);
    a.sub_attributes = subs;
    a
}

impl Attribute {
    const fn multi(mut self) -> Self {
        self.multi_valued = true;
        self
    }
    const fn required(mut self) -> Self {
        self.required = true;
        self
    }
    const fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }
    const fn mutability(mut self, m: Mutability) -> Self {
        self.mutability = m;
        self
    }
    const fn returned(mut self, r: Returned) -> Self {
        self.returned = r;
        self
    }
    const fn unique(mut self, u: Uniqueness) -> Self {
        self.uniqueness = u;
        self
    }
    const fn canonical(mut self, values: &'static [&'static str]) -> Self {
        self.canonical_values = values;
        self
    }
    const fn refs(mut self, types: &'static [&'static str]) -> Self {
        self.reference_types = types;
        self
    }
    const fn describe(mut self, text: &'static str) -> Self {
        self.description = text;
        self
    }

    /// The sub-attribute called `name`, compared case-insensitively.
    pub fn sub_attribute(&self, name: &str) -> Option<&'static Attribute> {
        self.sub_attributes
            .iter()
            .find(|sub| sub.name.eq_ignore_ascii_case(name))
    }

    /// The sub-attribute a filter or a PATCH compares when a multi-valued (or reference-like)
    /// complex attribute is named without one: `value` (RFC 7643 §2.4 makes it the primary
    /// sub-attribute; Entra's `members eq "id"` relies on it).
    pub fn value_sub_attribute(&self) -> Option<&'static Attribute> {
        if self.kind == AttrType::Complex {
            self.sub_attribute("value")
        } else {
            None
        }
    }

    /// The attribute's definition as RFC 7643 §7 publishes it in `/Schemas`.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("name".into(), self.name.into());
        out.insert("type".into(), self.kind.as_str().into());
        out.insert("multiValued".into(), self.multi_valued.into());
        if !self.description.is_empty() {
            out.insert("description".into(), self.description.into());
        }
        out.insert("required".into(), self.required.into());
        if self.kind != AttrType::Complex {
            out.insert("caseExact".into(), self.case_exact.into());
        }
        if !self.canonical_values.is_empty() {
            out.insert("canonicalValues".into(), json!(self.canonical_values));
        }
        if !self.reference_types.is_empty() {
            out.insert("referenceTypes".into(), json!(self.reference_types));
        }
        out.insert("mutability".into(), self.mutability.as_str().into());
        out.insert("returned".into(), self.returned.as_str().into());
        out.insert("uniqueness".into(), self.uniqueness.as_str().into());
        if !self.sub_attributes.is_empty() {
            let subs: Vec<Value> = self.sub_attributes.iter().map(Attribute::to_json).collect();
            out.insert("subAttributes".into(), Value::Array(subs));
        }
        Value::Object(out)
    }
}

/// A schema: its URN, name and attributes.
#[derive(Debug)]
pub struct Schema {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub attributes: &'static [Attribute],
}

/// Schemas are the same when their URNs are.
impl PartialEq for Schema {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Schema {
    /// The attribute called `name`, compared case-insensitively.
    pub fn attribute(&self, name: &str) -> Option<&'static Attribute> {
        self.attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

/// The sub-attributes shared by the multi-valued attributes of RFC 7643 §2.4.
const fn multi_valued_subs_with(
    value: Attribute,
    types: &'static [&'static str],
) -> [Attribute; 4] {
    [
        value,
        string("display"),
        string("type").canonical(types),
        attr("primary", AttrType::Boolean),
    ]
}

const EMAIL_SUBS: [Attribute; 4] =
    multi_valued_subs_with(string("value"), &["work", "home", "other"]);
const PHONE_SUBS: [Attribute; 4] = multi_valued_subs_with(
    string("value"),
    &["work", "home", "mobile", "fax", "pager", "other"],
);
const IMS_SUBS: [Attribute; 4] = multi_valued_subs_with(
    string("value"),
    &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"],
);
const PHOTO_SUBS: [Attribute; 4] = multi_valued_subs_with(
    attr("value", AttrType::Reference).refs(&["external"]),
    &["photo", "thumbnail"],
);
const PLAIN_SUBS: [Attribute; 4] = multi_valued_subs_with(string("value"), &[]);
const CERT_SUBS: [Attribute; 4] = multi_valued_subs_with(attr("value", AttrType::Binary), &[]);

const NAME_SUBS: [Attribute; 6] = [
    string("formatted"),
    string("familyName"),
    string("givenName"),
    string("middleName"),
    string("honorificPrefix"),
    string("honorificSuffix"),
];

const ADDRESS_SUBS: [Attribute; 8] = [
    string("formatted"),
    string("streetAddress"),
    string("locality"),
    string("region"),
    string("postalCode"),
    string("country"),
    string("type").canonical(&["work", "home", "other"]),
    attr("primary", AttrType::Boolean),
];

const USER_GROUP_SUBS: [Attribute; 4] = [
    string("value").mutability(Mutability::ReadOnly),
    attr("$ref", AttrType::Reference)
        .refs(&["User", "Group"])
        .mutability(Mutability::ReadOnly),
    string("display").mutability(Mutability::ReadOnly),
    string("type")
        .canonical(&["direct", "indirect"])
        .mutability(Mutability::ReadOnly),
];

const USER_ATTRIBUTES: [Attribute; 21] = [
    string("userName")
        .required()
        .unique(Uniqueness::Server)
        .describe("Unique identifier for the User, used to sign in; compared case-insensitively."),
    complex("name", &NAME_SUBS).describe("The components of the user's real name."),
    string("displayName"),
    string("nickName"),
    attr("profileUrl", AttrType::Reference).refs(&["external"]),
    string("title"),
    string("userType"),
    string("preferredLanguage"),
    string("locale"),
    string("timezone"),
    attr("active", AttrType::Boolean)
        .describe("Whether the user may sign in; false deactivates the Kratos identity."),
    string("password")
        .mutability(Mutability::WriteOnly)
        .returned(Returned::Never)
        .describe("Accepted and discarded: kratos-jit never stores a SCIM password."),
    complex("emails", &EMAIL_SUBS).multi(),
    complex("phoneNumbers", &PHONE_SUBS).multi(),
    complex("ims", &IMS_SUBS).multi(),
    complex("photos", &PHOTO_SUBS).multi(),
    complex("addresses", &ADDRESS_SUBS).multi(),
    complex("groups", &USER_GROUP_SUBS)
        .multi()
        .mutability(Mutability::ReadOnly)
        .describe("The groups the user is a direct member of; changed through the Groups."),
    complex("entitlements", &PLAIN_SUBS).multi(),
    complex("roles", &PLAIN_SUBS).multi(),
    complex("x509Certificates", &CERT_SUBS).multi(),
];

const MANAGER_SUBS: [Attribute; 3] = [
    string("value"),
    attr("$ref", AttrType::Reference).refs(&["User"]),
    string("displayName").mutability(Mutability::ReadOnly),
];

const ENTERPRISE_ATTRIBUTES: [Attribute; 6] = [
    string("employeeNumber"),
    string("costCenter"),
    string("organization"),
    string("division"),
    string("department"),
    complex("manager", &MANAGER_SUBS),
];

const MEMBER_SUBS: [Attribute; 4] = [
    string("value").mutability(Mutability::Immutable),
    attr("$ref", AttrType::Reference)
        .refs(&["User", "Group"])
        .mutability(Mutability::Immutable),
    string("type")
        .canonical(&["User", "Group"])
        .mutability(Mutability::Immutable),
    // Not in RFC 7643 §8.7.1, but Okta sends it in membership PATCH bodies (docs/scim.md §1.2).
    // Read-only: accepted and ignored, since memberships are stored by id alone and a Group's
    // members are answered without it (a client that sets it would never read it back).
    string("display").mutability(Mutability::ReadOnly),
];

const GROUP_ATTRIBUTES: [Attribute; 2] = [
    // RFC 7643 §4.2 prose makes it required; every vendor sends it; kratos-jit requires it.
    string("displayName")
        .required()
        .unique(Uniqueness::Server)
        .describe("A human-readable name for the Group, unique per provider."),
    complex("members", &MEMBER_SUBS)
        .multi()
        .describe("The members of the Group: users of the same provider, by id."),
];

const META_SUBS: [Attribute; 5] = [
    string("resourceType")
        .case_exact()
        .mutability(Mutability::ReadOnly),
    attr("created", AttrType::DateTime).mutability(Mutability::ReadOnly),
    attr("lastModified", AttrType::DateTime).mutability(Mutability::ReadOnly),
    attr("location", AttrType::Reference)
        .refs(&["uri"])
        .mutability(Mutability::ReadOnly),
    string("version")
        .case_exact()
        .mutability(Mutability::ReadOnly),
];

/// The common attributes of every resource (RFC 7643 §3.1). They are not part of any schema's
/// `attributes` in `/Schemas` (RFC 7643 §3.1 lets schemas leave them out).
pub static COMMON_ATTRIBUTES: [Attribute; 3] = [
    string("id")
        .case_exact()
        .mutability(Mutability::ReadOnly)
        .returned(Returned::Always)
        .unique(Uniqueness::Server),
    string("externalId").case_exact(),
    complex("meta", &META_SUBS).mutability(Mutability::ReadOnly),
];

pub static USER_SCHEMA: Schema = Schema {
    id: USER_URN,
    name: "User",
    description: "User Account",
    attributes: &USER_ATTRIBUTES,
};

pub static ENTERPRISE_USER_SCHEMA: Schema = Schema {
    id: ENTERPRISE_USER_URN,
    name: "EnterpriseUser",
    description: "Enterprise User",
    attributes: &ENTERPRISE_ATTRIBUTES,
};

pub static GROUP_SCHEMA: Schema = Schema {
    id: GROUP_URN,
    name: "Group",
    description: "Group",
    attributes: &GROUP_ATTRIBUTES,
};

/// Every schema kratos-jit publishes, in the order `/Schemas` lists them.
pub static ALL_SCHEMAS: [&Schema; 3] = [&USER_SCHEMA, &ENTERPRISE_USER_SCHEMA, &GROUP_SCHEMA];

static USER_EXTENSIONS: [&Schema; 1] = [&ENTERPRISE_USER_SCHEMA];

/// The two resource types served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    User,
    Group,
}

impl ResourceKind {
    /// The resource type's name, also `meta.resourceType` and the `/ResourceTypes/{id}` id.
    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::User => "User",
            ResourceKind::Group => "Group",
        }
    }

    /// The endpoint under the base URL, with its leading slash.
    pub fn endpoint(self) -> &'static str {
        match self {
            ResourceKind::User => "/Users",
            ResourceKind::Group => "/Groups",
        }
    }

    pub fn core_schema(self) -> &'static Schema {
        match self {
            ResourceKind::User => &USER_SCHEMA,
            ResourceKind::Group => &GROUP_SCHEMA,
        }
    }

    /// The schema extensions the resource type allows (none required).
    pub fn extensions(self) -> &'static [&'static Schema] {
        match self {
            ResourceKind::User => &USER_EXTENSIONS,
            ResourceKind::Group => &[],
        }
    }

    /// The extension whose URN is `urn`, compared case-insensitively.
    pub fn extension(self, urn: &str) -> Option<&'static Schema> {
        self.extensions()
            .iter()
            .copied()
            .find(|schema| schema.id.eq_ignore_ascii_case(urn))
    }

    /// Resolve an attribute name, optionally URN-prefixed (RFC 7644 §3.10), to where it lives.
    ///
    /// Without a URN a name is looked up in the common attributes, then the core schema, then
    /// the extensions: Entra names `manager` without the enterprise URN (docs/scim.md §3.1).
    pub fn resolve(self, uri: Option<&str>, name: &str) -> Option<Located> {
        if let Some(uri) = uri {
            if uri.eq_ignore_ascii_case(self.core_schema().id) {
                return COMMON_ATTRIBUTES
                    .iter()
                    .find(|a| a.name.eq_ignore_ascii_case(name))
                    .or_else(|| self.core_schema().attribute(name))
                    .map(|attribute| Located {
                        extension: None,
                        attribute,
                    });
            }
            let schema = self.extension(uri)?;
            return schema.attribute(name).map(|attribute| Located {
                extension: Some(schema),
                attribute,
            });
        }
        if let Some(attribute) = COMMON_ATTRIBUTES
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
            .or_else(|| self.core_schema().attribute(name))
        {
            return Some(Located {
                extension: None,
                attribute,
            });
        }
        self.extensions().iter().find_map(|schema| {
            schema.attribute(name).map(|attribute| Located {
                extension: Some(*schema),
                attribute,
            })
        })
    }
}

/// Where an attribute lives in a resource: at the top level, or inside the object keyed by an
/// extension's URN (RFC 7643 §3.3).
#[derive(Debug, Clone, Copy)]
pub struct Located {
    pub extension: Option<&'static Schema>,
    pub attribute: &'static Attribute,
}

impl Located {
    /// The attribute's value in a resource (keys compared case-insensitively), if set.
    pub fn get<'a>(&self, resource: &'a Value) -> Option<&'a Value> {
        let container = match self.extension {
            Some(schema) => get_ci(resource, schema.id)?,
            None => resource,
        };
        get_ci(container, self.attribute.name).filter(|v| !v.is_null())
    }

    /// A readable name for errors: `name`, or `urn:…:attribute` for an extension's attribute.
    pub fn display_name(&self) -> String {
        match self.extension {
            Some(schema) => format!("{}:{}", schema.id, self.attribute.name),
            None => self.attribute.name.to_owned(),
        }
    }
}

/// The member `key` of an object, compared case-insensitively (RFC 7643 §2.1); an exact match
/// wins over a case-insensitive one.
pub fn get_ci<'a>(object: &'a Value, key: &str) -> Option<&'a Value> {
    let map = object.as_object()?;
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_names_resolve_case_insensitively_to_the_schema_spelling() {
        let located = ResourceKind::User.resolve(None, "USERNAME").unwrap();
        assert_eq!(located.attribute.name, "userName");
        assert!(located.extension.is_none());
        let sub = ResourceKind::User
            .resolve(None, "name")
            .unwrap()
            .attribute
            .sub_attribute("GIVENNAME")
            .unwrap();
        assert_eq!(sub.name, "givenName");
    }

    #[test]
    fn an_extension_attribute_resolves_with_or_without_its_urn() {
        let with = ResourceKind::User
            .resolve(Some(ENTERPRISE_USER_URN), "employeeNumber")
            .unwrap();
        assert_eq!(with.extension.unwrap().id, ENTERPRISE_USER_URN);
        let without = ResourceKind::User.resolve(None, "manager").unwrap();
        assert_eq!(without.extension.unwrap().id, ENTERPRISE_USER_URN);
        assert!(
            ResourceKind::Group
                .resolve(Some(ENTERPRISE_USER_URN), "employeeNumber")
                .is_none()
        );
        assert!(ResourceKind::User.resolve(None, "members").is_none());
    }

    #[test]
    fn the_core_urn_prefix_reaches_common_and_core_attributes() {
        assert_eq!(
            ResourceKind::User
                .resolve(Some(USER_URN), "externalId")
                .unwrap()
                .attribute
                .name,
            "externalId"
        );
        assert!(
            ResourceKind::User
                .resolve(Some(GROUP_URN), "displayName")
                .is_none()
        );
    }

    #[test]
    fn the_characteristics_that_drive_behaviour_are_as_the_rfc_lists_them() {
        let user = ResourceKind::User;
        assert!(!user.resolve(None, "userName").unwrap().attribute.case_exact);
        assert!(user.resolve(None, "id").unwrap().attribute.case_exact);
        assert!(
            user.resolve(None, "externalId")
                .unwrap()
                .attribute
                .case_exact
        );
        let password = user.resolve(None, "password").unwrap().attribute;
        assert_eq!(password.returned, Returned::Never);
        assert_eq!(
            user.resolve(None, "groups").unwrap().attribute.mutability,
            Mutability::ReadOnly
        );
        assert_eq!(
            user.resolve(None, "emails")
                .unwrap()
                .attribute
                .value_sub_attribute()
                .unwrap()
                .name,
            "value"
        );
    }

    #[test]
    fn a_published_attribute_carries_every_characteristic() {
        let emails = USER_SCHEMA.attribute("emails").unwrap().to_json();
        assert_eq!(emails["multiValued"], true);
        assert_eq!(emails["type"], "complex");
        let subs = emails["subAttributes"].as_array().unwrap();
        let kind = subs.iter().find(|s| s["name"] == "type").unwrap();
        assert_eq!(kind["canonicalValues"], json!(["work", "home", "other"]));
        assert_eq!(kind["caseExact"], false);
        assert_eq!(kind["mutability"], "readWrite");
    }

    #[test]
    fn a_members_display_is_published_read_only() {
        // scim2-tester fills every writable sub-attribute and reads it back; memberships are
        // stored by id alone, so `display` must not be advertised as writable.
        let members = GROUP_SCHEMA.attribute("members").unwrap();
        assert_eq!(
            members.sub_attribute("display").unwrap().mutability,
            Mutability::ReadOnly
        );
        assert_eq!(
            members.sub_attribute("value").unwrap().mutability,
            Mutability::Immutable
        );
    }
}
