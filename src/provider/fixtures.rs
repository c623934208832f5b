//! A provider's golden fixtures (`tests/<case>.claims.json` for the claims mapper or
//! `tests/<case>.scim.json` for the SCIM mapper, `<case>.expect.json`, optional
//! `<case>.identity.json`): paired, parsed and shape-checked at load, so that running them can
//! only fail because the mapper's behaviour differs. A `.scim.json` is the value of
//! `std.extVar('scim')`: the SCIM User resource with its `groups` memberships
//! ([`crate::domain::ScimInput`]); everything else works as for claims fixtures.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserializer as _;
use serde::de::{self, MapAccess, Visitor};
use serde_json::error::Category;
use serde_json::{Map, Value};

use super::diagnostic::{LineIndex, LoadError, LoadWarning, closest, did_you_mean};
use crate::domain::ScimInput;
use crate::mapper::{MappedIdentity, MapperKind};

/// One golden test of a mapper.
#[derive(Debug, Clone, PartialEq)]
pub struct Fixture {
    /// The case name, `<case>` in the file names.
    pub name: String,
    /// Which mapper the fixture runs: `.claims.json` or `.scim.json`.
    pub kind: MapperKind,
    /// The `.claims.json` or `.scim.json` file.
    pub claims_path: PathBuf,
    /// The mapper's input: the claims object Kratos passes to a claims mapper, or the SCIM
    /// input (already checked to be one) for a SCIM mapper.
    pub claims: Value,
    /// The current identity (`{traits, metadata_public, metadata_admin}`) for a returning user;
    /// `None` for a first sign-in.
    pub identity: Option<Value>,
    pub expect: Expectation,
    pub expect_path: PathBuf,
}

/// What a fixture expects of the login.
#[derive(Debug, Clone, PartialEq)]
pub enum Expectation {
    /// The mapper's `identity` object, exactly.
    Identity(Value),
    /// The login is refused with a reason containing this text.
    Denied(String),
}

const CLAIMS: &str = ".claims.json";
const SCIM: &str = ".scim.json";
const EXPECT: &str = ".expect.json";
const IDENTITY: &str = ".identity.json";
const UNNAMED: &str = "the fixture has no case name: name it <case>.claims.json, <case>.scim.json, <case>.expect.json or <case>.identity.json";
const EMPTY_EXPECT: &str = "the expect file is empty: write {\"identity\": {...}} for the expected mapper output or {\"denied\": \"...\"} for an expected refusal";
const IDENTITY_KEYS: &[&str] = &["traits", "metadata_public", "metadata_admin"];

/// The files of one case, as found in the folder.
#[derive(Default)]
struct Case {
    claims: Option<PathBuf>,
    scim: Option<PathBuf>,
    expect: Option<PathBuf>,
    identity: Option<PathBuf>,
}

/// What loading one provider's `tests/` folder found.
#[derive(Default)]
pub(super) struct Loaded {
    pub fixtures: Vec<Fixture>,
    pub errors: Vec<LoadError>,
    pub warnings: Vec<LoadWarning>,
}

/// Loads every fixture in `dir` (a provider's `tests/` folder), sorted by case name.
pub(super) fn load(dir: &Path) -> Loaded {
    let mut loaded = Loaded::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            loaded.errors.push(LoadError::file(
                dir,
                format!("cannot list the fixtures ({e})"),
            ));
            return loaded;
        }
    };
    let mut cases: BTreeMap<String, Case> = BTreeMap::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                loaded.errors.push(LoadError::file(
                    dir,
                    format!("cannot list the fixtures ({e})"),
                ));
                continue;
            }
        };
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            loaded.warnings.push(LoadWarning::new(
                &path,
                "is ignored: the file name is not UTF-8",
            ));
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            loaded.warnings.push(LoadWarning::new(
                &path,
                "is ignored: fixtures live directly in tests/, not in sub-folders",
            ));
            continue;
        }
        let kind = [CLAIMS, SCIM, EXPECT, IDENTITY]
            .into_iter()
            .find_map(|suffix| Some((name.strip_suffix(suffix)?, suffix)));
        match kind {
            Some(("", _)) => loaded.errors.push(LoadError::file(&path, UNNAMED)),
            Some((case, suffix)) => {
                let case = cases.entry(case.to_owned()).or_default();
                let slot = match suffix {
                    CLAIMS => &mut case.claims,
                    SCIM => &mut case.scim,
                    EXPECT => &mut case.expect,
                    _ => &mut case.identity,
                };
                *slot = Some(path);
            }
            None => loaded
                .warnings
                .push(LoadWarning::new(&path, stray_file_message(&name))),
        }
    }
    for (name, case) in cases {
        load_case(name, case, &mut loaded);
    }
    loaded
}

fn stray_file_message(name: &str) -> String {
    let mut parts = name.rsplitn(3, '.');
    let hint = match (parts.next(), parts.next(), parts.next()) {
        (Some("json"), Some(kind), Some(case)) => {
            closest(kind, &["claims", "scim", "expect", "identity"])
                .map(|kind| format!(" (did you mean {case}.{kind}.json?)"))
                .unwrap_or_default()
        }
        _ => String::new(),
    };
    format!(
        "is not a fixture and is ignored{hint}; fixtures are <case>.claims.json (or <case>.scim.json), <case>.expect.json and <case>.identity.json"
    )
}

fn load_case(name: String, mut case: Case, loaded: &mut Loaded) {
    let kind = match (&case.claims, case.scim.take()) {
        (Some(_), Some(scim_path)) => {
            let message = format!(
                "{name} has both {name}{CLAIMS} and {name}{SCIM}: a case runs one mapper, so name one of them differently"
            );
            loaded.errors.push(LoadError::file(&scim_path, message));
            return;
        }
        (None, Some(scim_path)) => {
            case.claims = Some(scim_path);
            MapperKind::Scim
        }
        _ => MapperKind::Claims,
    };
    let parser = match kind {
        MapperKind::Claims => parse_claims,
        MapperKind::Scim => parse_scim,
    };
    let claims = case
        .claims
        .as_deref()
        .and_then(|path| parse(path, loaded, parser));
    let identity = case
        .identity
        .as_deref()
        .and_then(|path| parse(path, loaded, parse_identity));
    let expect = case
        .expect
        .as_deref()
        .and_then(|path| parse(path, loaded, parse_expect));
    match (&case.claims, &case.expect) {
        (Some(claims_path), None) => {
            let message = format!(
                "has no {name}{EXPECT}: add what the mapper must produce ({{\"identity\": {{...}}}} or {{\"denied\": \"...\"}})"
            );
            loaded.errors.push(LoadError::file(claims_path, message));
        }
        (None, Some(expect_path)) => {
            let message = format!(
                "has no {name}{CLAIMS} (or {name}{SCIM}): add what the mapper receives, or remove this file"
            );
            loaded.errors.push(LoadError::file(expect_path, message));
        }
        (None, None) => {
            if let Some(identity_path) = &case.identity {
                let message = format!(
                    "belongs to no fixture: add {name}{CLAIMS} and {name}{EXPECT}, or remove this file"
                );
                loaded.errors.push(LoadError::file(identity_path, message));
            }
        }
        (Some(_), Some(_)) => {}
    }
    if let (Some(claims_path), Some(expect_path), Some(claims), Some(expect)) =
        (case.claims, case.expect, claims, expect)
    {
        // A broken identity file was reported above; the fixture is incomplete without it.
        if case.identity.is_some() && identity.is_none() {
            return;
        }
        loaded.fixtures.push(Fixture {
            name,
            kind,
            claims_path,
            claims,
            identity,
            expect,
            expect_path,
        });
    }
}

/// Reads and parses one fixture file, reporting any problem at its line and column.
fn parse<T>(
    path: &Path,
    loaded: &mut Loaded,
    parser: fn(&[u8]) -> Result<T, Invalid>,
) -> Option<T> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            loaded
                .errors
                .push(LoadError::file(path, format!("cannot read it ({e})")));
            return None;
        }
    };
    match parser(&bytes) {
        Ok(value) => Some(value),
        Err(Invalid::Json(e)) => {
            loaded.errors.push(json_error(path, &e));
            None
        }
        Err(Invalid::NotAnObject(message)) => {
            // The document parsed, so it is UTF-8; point at its first character.
            let text = String::from_utf8_lossy(&bytes);
            let start = text.len() - text.trim_start().len();
            let position = LineIndex::new(&text).locate(start);
            loaded.errors.push(LoadError::at(path, position, message));
            None
        }
    }
}

/// Why a fixture file was refused.
enum Invalid {
    Json(serde_json::Error),
    /// The document is JSON of the wrong shape; the message says which shape.
    NotAnObject(&'static str),
}

impl From<serde_json::Error> for Invalid {
    fn from(e: serde_json::Error) -> Self {
        Invalid::Json(e)
    }
}

fn json_error(path: &Path, error: &serde_json::Error) -> LoadError {
    // serde_json appends " at line L column C" to its message; the position has its own fields.
    let message = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    let message = message.strip_suffix(&suffix).unwrap_or(&message);
    let message = match error.classify() {
        Category::Syntax | Category::Eof => format!("not valid JSON: {message}"),
        Category::Data | Category::Io => message.to_owned(),
    };
    if error.line() == 0 {
        return LoadError::file(path, message);
    }
    LoadError::at(path, (error.line(), error.column().max(1)), message)
}

fn parse_claims(bytes: &[u8]) -> Result<Value, Invalid> {
    let value: Value = serde_json::from_slice(bytes)?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(Invalid::NotAnObject(
            "a claims fixture must be a JSON object: the claims Kratos passes to the mapper",
        ))
    }
}

fn parse_scim(bytes: &[u8]) -> Result<Value, Invalid> {
    let value: Value = serde_json::from_slice(bytes)?;
    match ScimInput::from_value(value) {
        Ok(input) => Ok(input.as_value().clone()),
        Err(crate::domain::scim::InvalidScimInput::NotAnObject) => Err(Invalid::NotAnObject(
            "a SCIM fixture must be a JSON object: the SCIM User resource the SCIM mapper receives, with its groups",
        )),
        Err(crate::domain::scim::InvalidScimInput::Groups) => Err(Invalid::NotAnObject(
            "a SCIM fixture's `groups` must be a list of memberships, each an object with a string `value` (the group id), `displayName` and `externalId`",
        )),
    }
}

fn parse_identity(bytes: &[u8]) -> Result<Value, Invalid> {
    from_slice_with(bytes, IdentityVisitor)
}

fn parse_expect(bytes: &[u8]) -> Result<Expectation, Invalid> {
    from_slice_with(bytes, ExpectVisitor)
}

/// Parses a whole document with `visitor`, refusing trailing characters as `from_slice` does.
fn from_slice_with<'de, V: Visitor<'de>>(
    bytes: &'de [u8],
    visitor: V,
) -> Result<V::Value, Invalid> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = deserializer.deserialize_map(visitor)?;
    deserializer.end()?;
    Ok(value)
}

/// `{traits, metadata_public, metadata_admin}`, each an object (metadata may be null), nothing else.
struct IdentityVisitor;

impl<'de> Visitor<'de> for IdentityVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "an identity object: {\"traits\": {...}, \"metadata_public\": {...}, \"metadata_admin\": {...}}",
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut identity = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if !IDENTITY_KEYS.contains(&key.as_str()) {
                return Err(de::Error::custom(format!(
                    "unknown key `{key}`{}; an identity fixture holds traits, metadata_public and metadata_admin",
                    did_you_mean(&key, IDENTITY_KEYS)
                )));
            }
            let value: Value = map.next_value()?;
            let allowed = value.is_object() || (key != "traits" && value.is_null());
            if !allowed {
                return Err(de::Error::custom(format!("`{key}` must be an object")));
            }
            if identity.insert(key.clone(), value).is_some() {
                return Err(de::Error::custom(format!("`{key}` appears twice")));
            }
        }
        Ok(Value::Object(identity))
    }
}

/// `{"identity": {...}}` or `{"denied": "..."}`.
struct ExpectVisitor;

impl<'de> Visitor<'de> for ExpectVisitor {
    type Value = Expectation;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an expectation: {\"identity\": {...}} or {\"denied\": \"...\"}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Expectation, A::Error> {
        let mut expectation = None;
        while let Some(key) = map.next_key::<String>()? {
            let next = match key.as_str() {
                "identity" => {
                    let identity: Value = map.next_value()?;
                    // The mapper contract (identity.traits an object, ...) applies to what is
                    // expected too: an expectation no mapper output can meet is a broken fixture.
                    let output = Value::Object(Map::from_iter([(key.clone(), identity)]));
                    MappedIdentity::from_output(&output).map_err(|e| {
                        de::Error::custom(format!(
                            "`identity` is not a possible mapper output: {e}"
                        ))
                    })?;
                    let Value::Object(mut output) = output else {
                        unreachable!("built as an object above")
                    };
                    Expectation::Identity(output.remove("identity").unwrap_or_default())
                }
                "denied" => {
                    let Value::String(reason) = map.next_value()? else {
                        return Err(de::Error::custom(
                            "`denied` must be a string: (part of) the reason the login is refused with",
                        ));
                    };
                    if reason.trim().is_empty() {
                        return Err(de::Error::custom(
                            "`denied` is empty: write (part of) the reason the login is refused with",
                        ));
                    }
                    Expectation::Denied(reason)
                }
                other => {
                    return Err(de::Error::custom(format!(
                        "unknown key `{other}`{}; an expect file holds either `identity` or `denied`",
                        did_you_mean(other, &["identity", "denied"])
                    )));
                }
            };
            if expectation.replace(next).is_some() {
                return Err(de::Error::custom(
                    "an expect file holds either `identity` or `denied`, not both",
                ));
            }
        }
        expectation.ok_or_else(|| de::Error::custom(EMPTY_EXPECT))
    }
}
