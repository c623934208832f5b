//! Structure-aware mutations of JSON documents.
//!
//! A valid document (a fixture) becomes a [`Doc`], a tree that can also hold what a parser must
//! survive but `serde_json::Value` cannot: duplicate keys, number literals as written (`1e400`,
//! `-0`, `18446744073709551616`), string contents as written (lone surrogates, invalid UTF-8
//! bytes) and raw splices (nesting thousands of levels deep, stray bytes). A [`Mutation`] is
//! applied at one node chosen by its index in document order; [`Edit`]s then work on the bytes.
//! Strategies are small and shrink towards the unmutated document.

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

/// A JSON document as bytes: see the module documentation.
#[derive(Clone, Debug)]
pub enum Doc {
    Null,
    Bool(bool),
    /// A number literal as written (it may not be valid JSON).
    Number(String),
    /// The bytes between the quotes, escapes included.
    Text(Vec<u8>),
    List(Vec<Doc>),
    /// Entries in order; keys are the bytes between the quotes, and may repeat.
    Object(Vec<(Vec<u8>, Doc)>),
    /// Spliced in verbatim.
    Raw(Vec<u8>),
}

impl Doc {
    pub fn from_value(value: &Value) -> Doc {
        match value {
            Value::Null => Doc::Null,
            Value::Bool(b) => Doc::Bool(*b),
            Value::Number(n) => Doc::Number(n.to_string()),
            Value::String(s) => Doc::Text(escaped(s)),
            Value::Array(items) => Doc::List(items.iter().map(Doc::from_value).collect()),
            Value::Object(entries) => Doc::Object(
                entries
                    .iter()
                    .map(|(k, v)| (escaped(k), Doc::from_value(v)))
                    .collect(),
            ),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Doc::Null => out.extend_from_slice(b"null"),
            Doc::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Doc::Number(n) => out.extend_from_slice(n.as_bytes()),
            Doc::Text(t) => {
                out.push(b'"');
                out.extend_from_slice(t);
                out.push(b'"');
            }
            Doc::List(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write(out);
                }
                out.push(b']');
            }
            Doc::Object(entries) => {
                out.push(b'{');
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.push(b'"');
                    out.extend_from_slice(key);
                    out.extend_from_slice(b"\":");
                    value.write(out);
                }
                out.push(b'}');
            }
            Doc::Raw(bytes) => out.extend_from_slice(bytes),
        }
    }

    /// The number of nodes, the document itself included.
    fn count(&self) -> usize {
        1 + match self {
            Doc::List(items) => items.iter().map(Doc::count).sum(),
            Doc::Object(entries) => entries.iter().map(|(_, v)| v.count()).sum(),
            _ => 0,
        }
    }

    /// The node at `target` in document order (0 is the document itself).
    fn node_mut(&mut self, target: usize) -> Option<&mut Doc> {
        if target == 0 {
            return Some(self);
        }
        let mut skipped = 1;
        let children: Vec<&mut Doc> = match self {
            Doc::List(items) => items.iter_mut().collect(),
            Doc::Object(entries) => entries.iter_mut().map(|(_, v)| v).collect(),
            _ => return None,
        };
        for child in children {
            let size = child.count();
            if target < skipped + size {
                return child.node_mut(target - skipped);
            }
            skipped += size;
        }
        None
    }

    /// The value under `key` of an object (the first one when the key repeats).
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Doc> {
        match self {
            Doc::Object(entries) => entries
                .iter_mut()
                .find(|(k, _)| k == key.as_bytes())
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// `text` as it appears between JSON quotes.
pub fn escaped(text: &str) -> Vec<u8> {
    let quoted = serde_json::to_string(text).expect("a string serializes");
    quoted.as_bytes()[1..quoted.len() - 1].to_vec()
}

/// One change at one node.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// Another value, usually of another type.
    Replace(Doc),
    /// An object entry or list item removed.
    Delete(Index),
    /// An object entry repeated (the same key, the same value), or a list item.
    Duplicate(Index),
    /// An object entry's key repeated with another value.
    Rebind(Index, Doc),
    /// A new entry (a key the parsers know, or any other), or a new list item.
    Insert(Vec<u8>, Doc),
    /// The node nested `depth` levels deep in lists (or in objects).
    Nest { depth: usize, objects: bool },
    /// An object's key changed (letter case, a lookalike, a suffix).
    Rename(Index, Vec<u8>),
}

impl Mutation {
    fn apply(&self, node: &mut Doc) {
        match (self, &mut *node) {
            (Mutation::Replace(doc), _) => *node = doc.clone(),
            (Mutation::Delete(i), Doc::Object(entries)) if !entries.is_empty() => {
                entries.remove(i.index(entries.len()));
            }
            (Mutation::Delete(i), Doc::List(items)) if !items.is_empty() => {
                items.remove(i.index(items.len()));
            }
            (Mutation::Duplicate(i), Doc::Object(entries)) if !entries.is_empty() => {
                let entry = entries[i.index(entries.len())].clone();
                entries.push(entry);
            }
            (Mutation::Duplicate(i), Doc::List(items)) if !items.is_empty() => {
                let item = items[i.index(items.len())].clone();
                items.push(item);
            }
            (Mutation::Rebind(i, doc), Doc::Object(entries)) if !entries.is_empty() => {
                let key = entries[i.index(entries.len())].0.clone();
                entries.push((key, doc.clone()));
            }
            (Mutation::Insert(key, doc), Doc::Object(entries)) => {
                entries.push((key.clone(), doc.clone()))
            }
            (Mutation::Insert(_, doc), Doc::List(items)) => items.push(doc.clone()),
            (Mutation::Rename(i, key), Doc::Object(entries)) if !entries.is_empty() => {
                let at = i.index(entries.len());
                entries[at].0 = key.clone();
            }
            (Mutation::Nest { depth, objects }, _) => {
                let inner = node.to_bytes();
                *node = Doc::Raw(nested(&inner, *depth, *objects));
            }
            // Entry mutations on a leaf: the leaf becomes an object holding it.
            (Mutation::Delete(_) | Mutation::Duplicate(_), _) => *node = Doc::Null,
            (Mutation::Rebind(_, doc) | Mutation::Insert(_, doc), _) => {
                let inner = std::mem::replace(node, Doc::Null);
                *node = Doc::Object(vec![(b"a".to_vec(), inner), (b"a".to_vec(), doc.clone())]);
            }
            (Mutation::Rename(_, key), _) => {
                let inner = std::mem::replace(node, Doc::Null);
                *node = Doc::Object(vec![(key.clone(), inner)]);
            }
        }
    }
}

/// `inner` nested `depth` levels deep, built without recursion.
pub fn nested(inner: &[u8], depth: usize, objects: bool) -> Vec<u8> {
    let (open, close): (&[u8], &[u8]) = if objects {
        (b"{\"a\":", b"}")
    } else {
        (b"[", b"]")
    };
    let mut out = Vec::with_capacity(inner.len() + depth * (open.len() + close.len()));
    for _ in 0..depth {
        out.extend_from_slice(open);
    }
    out.extend_from_slice(inner);
    for _ in 0..depth {
        out.extend_from_slice(close);
    }
    out
}

/// A change to the serialized bytes.
#[derive(Clone, Debug)]
pub enum Edit {
    /// Cut at a position.
    Truncate(Index),
    /// Bytes inserted at a position.
    Insert(Index, Vec<u8>),
    /// One byte changed.
    Flip(Index, u8),
}

impl Edit {
    fn apply(&self, bytes: &mut Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        match self {
            Edit::Truncate(at) => bytes.truncate(at.index(bytes.len())),
            Edit::Insert(at, inserted) => {
                let at = at.index(bytes.len() + 1);
                bytes.splice(at..at, inserted.iter().copied());
            }
            Edit::Flip(at, mask) => {
                let at = at.index(bytes.len());
                bytes[at] ^= mask.max(&1);
            }
        }
    }
}

/// A mutated document: the mutations at nodes, then the byte edits.
#[derive(Clone, Debug)]
pub struct Mutated {
    pub mutations: Vec<(Index, Mutation)>,
    pub edits: Vec<Edit>,
}

impl Mutated {
    pub fn apply(&self, doc: &Doc) -> Vec<u8> {
        let mut doc = doc.clone();
        for (at, mutation) in &self.mutations {
            let target = at.index(doc.count());
            if let Some(node) = doc.node_mut(target) {
                mutation.apply(node);
            }
        }
        let mut bytes = doc.to_bytes();
        for edit in &self.edits {
            edit.apply(&mut bytes);
        }
        bytes
    }
}

/// Up to `max_mutations` node mutations and, one time in four, a few byte edits.
pub fn mutated(max_mutations: usize) -> impl Strategy<Value = Mutated> {
    (
        prop::collection::vec((any::<Index>(), mutation()), 0..=max_mutations),
        prop_oneof![
            3 => Just(Vec::new()),
            1 => prop::collection::vec(edit(), 1..=3),
        ],
    )
        .prop_map(|(mutations, edits)| Mutated { mutations, edits })
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        6 => leaf().prop_map(Mutation::Replace),
        3 => any::<Index>().prop_map(Mutation::Delete),
        2 => any::<Index>().prop_map(Mutation::Duplicate),
        2 => (any::<Index>(), leaf()).prop_map(|(i, d)| Mutation::Rebind(i, d)),
        2 => (key(), leaf()).prop_map(|(k, d)| Mutation::Insert(k, d)),
        2 => (any::<Index>(), key()).prop_map(|(i, k)| Mutation::Rename(i, k)),
        1 => (depth(), any::<bool>()).prop_map(|(depth, objects)| Mutation::Nest { depth, objects }),
    ]
}

/// Nesting depths around serde_json's recursion limit (128) and far beyond it.
pub fn depth() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(2usize),
        Just(100),
        Just(127),
        Just(128),
        Just(129),
        Just(500),
        Just(5_000),
        Just(40_000),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<Index>().prop_map(Edit::Truncate),
        (any::<Index>(), stray_bytes()).prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, m)| Edit::Flip(i, m)),
    ]
}

/// Bytes that are not (or not quite) JSON or UTF-8.
pub fn stray_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(vec![0xff]),
        Just(vec![0xc0, 0xaf]),
        Just(vec![0xed, 0xa0, 0x80]),
        Just(vec![0xf4, 0x90, 0x80, 0x80]),
        Just(vec![0]),
        Just(b"\\".to_vec()),
        Just(b"\"".to_vec()),
        Just(b",".to_vec()),
        Just(b"}".to_vec()),
        Just(b"]".to_vec()),
        Just(b"\xef\xbb\xbf".to_vec()),
        prop::collection::vec(any::<u8>(), 1..8),
    ]
}

/// Number literals that parsers disagree on, or that are not JSON at all.
pub const ODD_NUMBERS: &[&str] = &[
    "1e400",
    "-1e400",
    "1e-400",
    "-0",
    "0.0",
    "1.0",
    "1E2",
    "0.1e1",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "123456789012345678901234567890",
    "1795000000.5",
    "NaN",
    "Infinity",
    "-Infinity",
    "01",
    "1.",
    "-",
    "+1",
    ".5",
    "0x10",
];

/// String contents (as written between quotes) that parsers disagree on.
pub const ODD_TEXTS: &[&[u8]] = &[
    b"",
    b" ",
    b"\\ud800",
    b"\\udc00",
    b"\\ud800\\ud800",
    b"a\\udfffb",
    b"\\u0000",
    b"\\u00e9",
    b"\xff\xfe",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\\x41",
    b"\\",
    b"\t\n",
    b"\\u212Aelvin",
    b"ada@acme.example",
    b"ADA@ACME.EXAMPLE",
    b"ada@acme.example\\u0000",
    b"ada@globex.example",
    b"tenant-acme",
    b"tenant-globex",
    b"Acme-Admins",
    b"okta-acme",
    b"okta-oidc-umbrella",
    b"entra-globex",
    b"onelogin-initech",
    b"../okta-acme",
    b"oidc",
    b"true",
    b"2026-11-23T11:30:01Z",
    b"not a time",
    b"00000000-0000-0000-0000-000000000000",
];

/// Keys the parsers look for, their case and lookalike variants, and others.
pub const KEYS: &[&str] = &[
    "provider",
    "claims",
    "id_token",
    "sub",
    "iss",
    "aud",
    "iat",
    "exp",
    "email",
    "EMAIL",
    "Email",
    "email_verified",
    "locale",
    "updated_at",
    "amr",
    "raw_claims",
    "raw",
    "groups",
    "kratos_jit_claims",
    "metadata_public",
    "metadata_admin",
    "traits",
    "identity",
    "id",
    "session",
    "authenticated_at",
    "authentication_methods",
    "method",
    "flow_id",
    "verifiable_addresses",
    "https://your-app.com/tenant_id",
    "s\u{17F}b",
    "\u{212A}ey",
    "__proto__",
    "",
];

/// A value for a mutation: every JSON type, odd numbers and strings, huge strings, small
/// containers.
pub fn leaf() -> impl Strategy<Value = Doc> {
    let text = prop_oneof![
        prop::sample::select(ODD_TEXTS).prop_map(|t| t.to_vec()),
        "[ -~]{0,24}".prop_map(|s| escaped(&s)),
        any::<String>().prop_map(|s| escaped(&s)),
    ];
    prop_oneof![
        2 => Just(Doc::Null),
        2 => any::<bool>().prop_map(Doc::Bool),
        3 => prop::sample::select(ODD_NUMBERS).prop_map(|n| Doc::Number(n.to_owned())),
        1 => any::<i64>().prop_map(|n| Doc::Number(n.to_string())),
        1 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| Doc::Number(f.to_string())),
        4 => text.clone().prop_map(Doc::Text),
        1 => huge_text().prop_map(Doc::Text),
        1 => Just(Doc::List(Vec::new())),
        1 => Just(Doc::Object(Vec::new())),
        1 => prop::collection::vec(text.prop_map(Doc::Text), 1..4).prop_map(Doc::List),
        1 => (prop::sample::select(KEYS), Just(Doc::Null)).prop_map(|(k, v)| Doc::Object(vec![(escaped(k), v)])),
    ]
}

/// A name for a new or renamed key.
pub fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::sample::select(KEYS).prop_map(escaped),
        1 => "[a-zA-Z_]{1,12}".prop_map(|s| escaped(&s)),
        1 => prop::sample::select(ODD_TEXTS).prop_map(|t| t.to_vec()),
    ]
}

/// What huge strings are made of: one byte, two, a lone surrogate escape, an escaped backslash.
const HUGE_UNITS: &[&[u8]] = &[b"a", "é".as_bytes(), b"\\ud800", b"\\\\"];

/// Strings of the sizes limits are made of: a 42,000-character subject, and more than a body
/// limit of 64 KiB.
pub fn huge_text() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(&[255usize, 1_025, 42_000, 70_000][..]),
        prop::sample::select(HUGE_UNITS),
    )
        .prop_map(|(len, unit)| unit.repeat(len))
}
