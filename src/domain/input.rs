//! The rules every JSON input from outside meets before anything reads it: the provisioning
//! API's body (its `claims` included), both web hooks' bodies (the carried claims included) and
//! an ID token's header and payload.
//!
//! A JSON input is refused, with an [`InputError`] that names where (the key path, e.g.
//! `claims.raw_claims.groups`) and what, never the value, when it holds:
//!
//! - a **duplicate key** in any object: parsers disagree on which one wins (serde_json and Go
//!   keep the last, some keep the first), so a document with two `sub` keys could mean two users;
//! - objects and arrays nested more than [`MAX_DEPTH`] levels, counted from the top of the
//!   document: the mapper worker reads the claims with serde_json's limit of 128 levels, and no
//!   IdP nests claims anywhere near 64;
//! - a **number beyond the range of a double** (`1e400`): Jsonnet's numbers are doubles and
//!   Kratos decodes claims into Go's `float64`, which refuses them too. Numbers inside the range
//!   are accepted even where a double cannot hold them exactly (integers beyond ±2^53, long
//!   decimals): the mapper sees them rounded to the nearest double, exactly as Kratos rounds them
//!   for the same mapper. A number too small for a double reads as 0;
//! - text that is **not valid Unicode**: invalid UTF-8, or an escaped UTF-16 surrogate without
//!   its pair (`"\ud800"`);
//! - anything that is not JSON at all (the error then says where serde_json stopped).
//!
//! The checks are a `serde` visitor over serde_json's own parser, so there is one JSON parser;
//! [`parse`] builds the [`Value`] while checking, [`check`] checks text that is used as it is
//! (the hooks pass the carried claims to the mapper worker unparsed) and builds nothing.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Objects and arrays nest at most this many levels in any JSON input.
pub const MAX_DEPTH: usize = 64;

/// Key names are shown at most this many characters long in an [`InputError`].
const MAX_SHOWN_KEY_CHARS: usize = 64;

/// Why a JSON input was refused, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    path: KeyPath,
    problem: Problem,
}

/// What is wrong with a JSON input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    DuplicateKey,
    TooDeep,
    NumberOutOfRange,
    NotUnicode,
    /// Not JSON: serde_json's description of the syntax error, which is fixed text and a
    /// position, never the input.
    Syntax(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::DuplicateKey => f.write_str("duplicate key"),
            Problem::TooDeep => write!(f, "nested deeper than {MAX_DEPTH} levels"),
            Problem::NumberOutOfRange => {
                f.write_str("number out of range (beyond what a double can hold)")
            }
            Problem::NotUnicode => f.write_str(
                "not valid Unicode (invalid UTF-8, or an escaped UTF-16 surrogate without its pair)",
            ),
            Problem::Syntax(what) => write!(f, "not valid JSON: {what}"),
        }
    }
}

impl InputError {
    pub fn problem(&self) -> &Problem {
        &self.problem
    }

    /// The key path, e.g. `claims.raw_claims.groups[2]`; empty at the top of the document.
    pub fn path(&self) -> &KeyPath {
        &self.path
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            self.problem.fmt(f)
        } else {
            write!(f, "{}: {}", self.path, self.problem)
        }
    }
}

impl std::error::Error for InputError {}

/// Where in a document: object keys and array indexes, outermost first. Shown as
/// `claims.raw_claims["https://x/tenant"][0]`: a key of other characters than letters, digits,
/// `_` and `-` is quoted, and long keys and paths are cut short, so the caller's input is never
/// repeated at length.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

impl Segment {
    /// A key, kept only as long as it can be shown.
    fn key(key: &str) -> Segment {
        Segment::Key(key.chars().take(MAX_SHOWN_KEY_CHARS + 1).collect())
    }
}

impl KeyPath {
    /// The path of one key at the top of a document, e.g. to name an unexpected member.
    pub fn of_key(key: &str) -> KeyPath {
        KeyPath(vec![Segment::key(key)])
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A deep path shows its first six and its last two segments.
        const HEAD: usize = 6;
        const TAIL: usize = 2;
        let segments = &self.0;
        let cut = segments.len() > HEAD + TAIL;
        for (i, segment) in segments.iter().enumerate() {
            if cut && i >= HEAD && i < segments.len() - TAIL {
                if i == HEAD {
                    f.write_str("…")?;
                }
                continue;
            }
            let after_cut = cut && i == segments.len() - TAIL;
            match segment {
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Key(key) if is_plain(key) => {
                    if i > 0 && !after_cut {
                        f.write_str(".")?;
                    }
                    f.write_str(key)?;
                }
                Segment::Key(key) => {
                    let shown: String = key.chars().take(MAX_SHOWN_KEY_CHARS).collect();
                    let quoted = serde_json::to_string(&shown).map_err(|_| fmt::Error)?;
                    let more = if shown.len() < key.len() { "…" } else { "" };
                    write!(f, "[{}{more}\"]", &quoted[..quoted.len() - 1])?;
                }
            }
        }
        Ok(())
    }
}

/// A key shown as it is, after a dot: letters, digits, `_` and `-`, not too long.
fn is_plain(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_SHOWN_KEY_CHARS
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Parses a JSON input under the rules of this module.
pub fn parse(json: &[u8]) -> Result<Value, InputError> {
    run(json, true).map(|value| value.unwrap_or(Value::Null))
}

/// Checks JSON text under the rules of this module without building anything.
pub fn check(json: &[u8]) -> Result<(), InputError> {
    run(json, false).map(|_| ())
}

fn run(json: &[u8], build: bool) -> Result<Option<Value>, InputError> {
    let state = State::default();
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let result = Walk {
        state: &state,
        depth: 0,
        build,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    result.map_err(|error| {
        let State { path, problem } = state;
        let mut segments = path.into_inner();
        segments.reverse();
        InputError {
            path: KeyPath(segments),
            problem: problem.into_inner().unwrap_or_else(|| classify(&error)),
        }
    })
}

/// serde_json's own refusals, in this module's words. Its syntax messages are fixed text and a
/// position (the input is never quoted), so one not recognised here is shown as it is.
fn classify(error: &serde_json::Error) -> Problem {
    let text = error.to_string();
    let what = text
        .split(" at line ")
        .next()
        .unwrap_or(text.as_str())
        .to_owned();
    match what.as_str() {
        "number out of range" => Problem::NumberOutOfRange,
        "lone leading surrogate in hex escape"
        | "unexpected end of hex escape"
        | "invalid unicode code point" => Problem::NotUnicode,
        "recursion limit exceeded" => Problem::TooDeep,
        // Only this module's own refusals are data errors, and they record their problem.
        _ if error.is_data() => Problem::Syntax("an unexpected value".into()),
        _ => Problem::Syntax(format!(
            "{what} (line {}, column {})",
            error.line(),
            error.column()
        )),
    }
}

/// What one walk records on the way out of a refusal: the path, innermost segment first (each
/// level adds its own as the error passes), and the rule that refused, if it was one of ours.
#[derive(Default)]
struct State {
    path: RefCell<Vec<Segment>>,
    problem: RefCell<Option<Problem>>,
}

impl State {
    fn refuse<E: de::Error>(&self, problem: Problem) -> E {
        let message = problem.to_string();
        *self.problem.borrow_mut() = Some(problem);
        E::custom(message)
    }

    fn at_key<T, E>(&self, key: &str, result: Result<T, E>) -> Result<T, E> {
        if result.is_err() {
            self.path.borrow_mut().push(Segment::key(key));
        }
        result
    }
}

/// One JSON value at `depth` (the number of objects and arrays around it).
#[derive(Clone, Copy)]
struct Walk<'s> {
    state: &'s State,
    depth: usize,
    build: bool,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = Option<Value>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Walk<'_> {
    fn scalar(&self, value: impl FnOnce() -> Value) -> Option<Value> {
        self.build.then(value)
    }

    fn inner<E: de::Error>(&self) -> Result<Self, E> {
        if self.depth >= MAX_DEPTH {
            return Err(self.state.refuse(Problem::TooDeep));
        }
        Ok(Walk {
            depth: self.depth + 1,
            ..*self
        })
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(self.scalar(|| Value::Null))
    }

    fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
        Ok(self.scalar(|| Value::Bool(b)))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
        Ok(self.scalar(|| Value::from(n)))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
        Ok(self.scalar(|| Value::from(n)))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
        // serde_json refuses infinite literals itself; this keeps the rule whatever reads them.
        match serde_json::Number::from_f64(n) {
            Some(number) => Ok(self.scalar(|| Value::Number(number))),
            None => Err(self.state.refuse(Problem::NumberOutOfRange)),
        }
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(self.scalar(|| Value::String(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(self.scalar(|| Value::String(s)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let inner = self.inner()?;
        let mut items = Vec::new();
        let mut index = 0;
        loop {
            match seq.next_element_seed(inner) {
                Ok(Some(item)) => items.extend(item),
                Ok(None) => break,
                Err(error) => {
                    self.state.path.borrow_mut().push(Segment::Index(index));
                    return Err(error);
                }
            }
            index += 1;
        }
        Ok(self.build.then_some(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let inner = self.inner()?;
        let mut object = Map::new();
        let mut seen = Keys::default();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let duplicate = if self.build {
                object.contains_key(key.as_ref())
            } else {
                !seen.insert(key.clone())
            };
            if duplicate {
                let refusal = Err(self.state.refuse(Problem::DuplicateKey));
                return self.state.at_key(&key, refusal);
            }
            let value = self.state.at_key(&key, map.next_value_seed(inner))?;
            if let Some(value) = value {
                object.insert(key.into_owned(), value);
            }
        }
        Ok(self.build.then_some(Value::Object(object)))
    }
}

/// The keys of one object seen so far, for [`check`], which builds no map: a short list is
/// searched, a longer one hashed.
#[derive(Default)]
struct Keys<'de> {
    few: Vec<Cow<'de, str>>,
    many: HashSet<Cow<'de, str>>,
}

impl<'de> Keys<'de> {
    /// False when `key` was seen before.
    fn insert(&mut self, key: Cow<'de, str>) -> bool {
        const FEW: usize = 16;
        if self.many.is_empty() {
            if self.few.contains(&key) {
                return false;
            }
            if self.few.len() < FEW {
                self.few.push(key);
                return true;
            }
            self.many.extend(self.few.drain(..));
        }
        self.many.insert(key)
    }
}

/// An object key, borrowed from the input where it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refusal(json: &str) -> String {
        let built = parse(json.as_bytes()).unwrap_err();
        let checked = check(json.as_bytes()).unwrap_err();
        assert_eq!(built, checked, "parse and check disagree on {json}");
        built.to_string()
    }

    #[test]
    fn a_valid_document_parses_to_the_value_serde_json_reads() {
        let text = r#"{"sub": "ada", "n": [1, -2, 2.5, 18446744073709551615, 1e300], "o": {"": null, "t": true}}"#;
        let expected: Value = serde_json::from_str(text).unwrap();
        assert_eq!(parse(text.as_bytes()).unwrap(), expected);
        assert_eq!(check(text.as_bytes()), Ok(()));
    }

    #[test]
    fn a_duplicate_key_is_refused_at_any_depth_naming_its_path() {
        assert_eq!(refusal(r#"{"sub": "a", "sub": "b"}"#), "sub: duplicate key");
        assert_eq!(
            refusal(r#"{"claims": {"raw_claims": {"groups": [], "x": [{"k": 1, "k": 1}]}}}"#),
            "claims.raw_claims.x[0].k: duplicate key"
        );
        // The same key in sibling objects is no duplicate.
        assert_eq!(check(br#"[{"a": 1}, {"a": 1}, {"b": {"a": 1}}]"#), Ok(()));
    }

    #[test]
    fn a_duplicate_among_many_keys_is_found() {
        let members: Vec<String> = (0..100).map(|i| format!("\"k{i}\": {i}")).collect();
        let text = format!("{{{}, \"k57\": 0}}", members.join(", "));
        assert_eq!(refusal(&text), "k57: duplicate key");
        assert!(check(format!("{{{}}}", members.join(", ")).as_bytes()).is_ok());
    }

    #[test]
    fn keys_written_with_escapes_are_the_same_keys() {
        assert_eq!(
            refusal(r#"{"sub": 1, "s\u0075b": 2}"#),
            "sub: duplicate key"
        );
    }

    #[test]
    fn nesting_is_limited_to_64_levels() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(check(nested(MAX_DEPTH).as_bytes()).is_ok());
        assert!(parse(nested(MAX_DEPTH).as_bytes()).is_ok());
        let error = parse(nested(MAX_DEPTH + 1).as_bytes()).unwrap_err();
        assert_eq!(error.problem(), &Problem::TooDeep);
        assert_eq!(error.path().segments().len(), MAX_DEPTH);
        assert!(
            error
                .to_string()
                .starts_with("[0][0][0][0][0][0]…[0][0]: nested deeper than 64")
        );
        // Far beyond serde_json's own limit of 128, the answer is the same.
        assert_eq!(
            parse(nested(100_000).as_bytes()).unwrap_err().problem(),
            &Problem::TooDeep
        );
    }

    #[test]
    fn numbers_beyond_a_double_are_refused_and_others_are_rounded() {
        assert_eq!(
            refusal(r#"{"n": 1e400}"#),
            "n: number out of range (beyond what a double can hold)"
        );
        assert_eq!(
            refusal(r#"{"n": [-1e309]}"#).split(':').next(),
            Some("n[0]")
        );
        assert_eq!(
            parse(b"[123456789012345678901234567890, 9007199254740993, 1e-400]").unwrap(),
            json!([1.2345678901234568e29, 9007199254740993u64, 0.0])
        );
    }

    #[test]
    fn text_that_is_not_unicode_is_refused() {
        for text in [
            r#"{"name": "\ud800"}"#,
            r#"{"name": "\udc00"}"#,
            r#"{"name": "\ud800\u0041"}"#,
        ] {
            assert!(
                refusal(text).starts_with("name: not valid Unicode"),
                "{text}"
            );
        }
        let error = parse(b"{\"name\": \"\xff\"}").unwrap_err();
        assert_eq!(error.problem(), &Problem::NotUnicode);
        // A pair of surrogates is one valid character.
        assert_eq!(parse(br#""\ud83d\ude00""#).unwrap(), json!("😀"));
    }

    #[test]
    fn syntax_errors_say_where_and_never_quote_the_input() {
        let secret = "do-not-echo";
        for text in [
            format!(r#"{{"a": "{secret}"#),
            format!(r#"{{"a": "{secret}\x"}}"#),
            format!(r#"{{"a": {secret}}}"#),
            format!(r#"{{"a": 1}} {secret}"#),
        ] {
            let error = refusal(&text);
            assert!(error.contains("not valid JSON"), "{text}: {error}");
            assert!(!error.contains(secret), "{text}: {error}");
        }
        assert!(refusal(r#"{"a": {"b": tru}}"#).starts_with("a.b: not valid JSON"));
        // A key is where the error is, so it is shown (cut short, below).
        assert!(refusal(r#"{"key" 1}"#).starts_with("key: not valid JSON: expected `:`"));
    }

    #[test]
    fn key_paths_quote_unusual_keys_and_cut_long_ones() {
        assert_eq!(
            refusal(r#"{"https://x/tenant": {"a.b": 1, "a.b": 2}}"#),
            r#"["https://x/tenant"]["a.b"]: duplicate key"#
        );
        let long = "k".repeat(1000);
        let error = refusal(&format!(r#"{{"{long}": 1, "{long}": 2}}"#));
        assert!(error.len() < 100, "{error}");
        assert!(
            error.starts_with(&format!("[\"{}…\"]", "k".repeat(64))),
            "{error}"
        );
        assert_eq!(
            refusal(r#"{"a\nb": 1, "a\nb": 2}"#),
            r#"["a\nb"]: duplicate key"#
        );
    }
}
