//! Provider folders → `Providers::load`: `mappers/okta-acme` copied into a temporary tree with its
//! `provider.toml` and `mapper.jsonnet` mutated (lines repeated, dropped, swapped or added —
//! known keys with values of every TOML type, table headers, deep arrays, huge strings —, then
//! bytes: stray bytes, invalid UTF-8, cuts).
//!
//! For every folder: no panic; either it loads, or every error names a file of the tree and,
//! being about the settings or the mapper, the line it is on.
//!
//! Loading runs on a thread with the 8 MiB stack of a main thread, as in `kratos-jit check` and
//! `serve`.

use std::path::Path;

use kratos_jit::provider::{LoadError, Providers};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::json::{Edit, stray_bytes};
use crate::tree::copy_dir;
use crate::valid::manifest_dir;

/// A change to a text file, line by line.
#[derive(Clone, Debug)]
pub enum LineEdit {
    Repeat(Index),
    Drop(Index),
    Swap(Index, Index),
    Add(Index, Vec<u8>),
    /// The value after the line's `=` replaced.
    Revalue(Index, Vec<u8>),
}

fn apply_lines(text: &[u8], edits: &[LineEdit]) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = text.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    for edit in edits {
        let n = lines.len().max(1);
        match edit {
            LineEdit::Repeat(i) if !lines.is_empty() => {
                let line = lines[i.index(n)].clone();
                lines.insert(i.index(n), line);
            }
            LineEdit::Drop(i) if !lines.is_empty() => {
                lines.remove(i.index(n));
            }
            LineEdit::Swap(i, j) if !lines.is_empty() => lines.swap(i.index(n), j.index(n)),
            LineEdit::Add(i, line) => lines.insert(i.index(n + 1).min(lines.len()), line.clone()),
            LineEdit::Revalue(i, value) if !lines.is_empty() => {
                let line = &mut lines[i.index(n)];
                if let Some(eq) = line.iter().position(|b| *b == b'=') {
                    line.truncate(eq + 1);
                    line.push(b' ');
                    line.extend_from_slice(value);
                }
            }
            _ => {}
        }
    }
    lines.join(&b'\n')
}

const TOML_KEYS: &[&str] = &[
    "schema_id",
    "create",
    "update",
    "link_by_verified_email",
    "id",
    "verified_domains",
    "issuer",
    "audiences",
    "jwks_url",
    "algorithms",
    "ca_bundle",
    "tenants",
    "jit",
    "token",
    "schema-id",
    "\"schema_id\"",
    "unknown",
];

const TOML_HEADERS: &[&str] = &[
    "[jit]",
    "[[tenants]]",
    "[token]",
    "[tenants]",
    "[[jit]]",
    "[token.extra]",
    "[[tenants.verified_domains]]",
    "[schema_id]",
    "[",
    "[[",
];

fn toml_value() -> impl Strategy<Value = Vec<u8>> {
    let fixed = prop::sample::select(
        &[
            "\"default\"",
            "\"\"",
            "\"tenant-acme\"",
            "\"tenant-globex\"",
            "[\"acme.example\"]",
            "[\"ACME.example\", \"acme.example\"]",
            "[\"*\"]",
            "[\"\"]",
            "[]",
            "[\"a\", 1]",
            "\"https://sso.example.test\"",
            "\"http://sso.example.test\"",
            "\"https://\"",
            "\"file:///etc/passwd\"",
            "\"../../etc/passwd\"",
            "\"/dev/zero\"",
            "[\"RS256\", \"HS256\"]",
            "[\"none\"]",
            "[\"ES256\", \"ES256\"]",
            "true",
            "false",
            "0",
            "-1",
            "9223372036854775807",
            "9223372036854775808",
            "1e400",
            "nan",
            "inf",
            "1979-05-27T07:32:00Z",
            "07:32:00",
            "{}",
            "{ id = \"x\" }",
            "\"\\ud800\"",
            "\"\\u0000\"",
            "'''multi\nline'''",
            "\"\"\"",
            "'",
        ][..],
    )
    .prop_map(|v: &str| v.as_bytes().to_vec());
    prop_oneof![
        6 => fixed,
        1 => (prop::sample::select(&[100usize, 1_000, 20_000][..])).prop_map(|d| {
            let mut v = "[".repeat(d).into_bytes();
            v.extend_from_slice("]".repeat(d).as_bytes());
            v
        }),
        1 => (prop::sample::select(&[1_000usize, 70_000][..])).prop_map(|n| format!("\"{}\"", "x".repeat(n)).into_bytes()),
        1 => stray_bytes(),
    ]
}

fn toml_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => (prop::sample::select(TOML_KEYS), toml_value()).prop_map(|(k, v)| {
            let mut line = format!("{k} = ").into_bytes();
            line.extend_from_slice(&v);
            line
        }),
        2 => prop::sample::select(TOML_HEADERS).prop_map(|h| h.as_bytes().to_vec()),
        1 => stray_bytes(),
    ]
}

fn line_edit(
    line: impl Strategy<Value = Vec<u8>>,
    value: impl Strategy<Value = Vec<u8>>,
) -> impl Strategy<Value = LineEdit> {
    prop_oneof![
        2 => any::<Index>().prop_map(LineEdit::Repeat),
        2 => any::<Index>().prop_map(LineEdit::Drop),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(i, j)| LineEdit::Swap(i, j)),
        3 => (any::<Index>(), line).prop_map(|(i, l)| LineEdit::Add(i, l)),
        3 => (any::<Index>(), value).prop_map(|(i, v)| LineEdit::Revalue(i, v)),
    ]
}

/// Nesting depths of brackets in a mapper: the deep ones (which once overflowed the loader's
/// stack and aborted `check` and `serve`) must be refused with a file and line.
const MAPPER_DEPTHS: &[usize] = &[10, 50, 100, 1_000, 5_000];

/// Jsonnet fragments: brackets, strings, imports, errors, deep nesting.
fn jsonnet_fragment() -> impl Strategy<Value = Vec<u8>> {
    let fixed = prop::sample::select(
        &[
            "{",
            "}",
            "[",
            "]",
            "(",
            ")",
            ",",
            ";",
            ":",
            "::",
            "+:",
            "'",
            "\"",
            "|||\n",
            "/*",
            "//",
            "#",
            "\\",
            "$",
            "self",
            "super",
            "local",
            "local x = 1;",
            "function(x) x",
            "error 'x'",
            "import 'x.jsonnet'",
            "importstr '/etc/passwd'",
            "importbin 'x'",
            "std.extVar('nope')",
            "std.native('x')",
            "1e400",
            "0x10",
            "assert false;",
            "if",
            "then",
            "else",
            "for x in []",
            "@'x'",
            "\u{0}",
            "\u{feff}",
            "\u{212A}",
        ][..],
    )
    .prop_map(|v: &str| v.as_bytes().to_vec());
    prop_oneof![
        8 => fixed,
        1 => (prop::sample::select(MAPPER_DEPTHS), prop::sample::select(&["[]", "()", "{}"][..])).prop_map(|(d, pair): (usize, &str)| {
            let (open, close) = pair.split_at(1);
            let mut v = open.repeat(d);
            if open == "{" {
                v = "{a:".repeat(d);
            }
            v.push('1');
            v.push_str(&close.repeat(d));
            v.into_bytes()
        }),
        1 => stray_bytes(),
    ]
}

fn byte_edit(inserted: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Edit> {
    prop_oneof![
        1 => any::<Index>().prop_map(Edit::Truncate),
        4 => (any::<Index>(), inserted).prop_map(|(i, b)| Edit::Insert(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, m)| Edit::Flip(i, m)),
    ]
}

#[derive(Clone, Debug)]
pub struct FolderCase {
    pub settings_lines: Vec<LineEdit>,
    pub settings_bytes: Vec<Edit>,
    pub mapper_lines: Vec<LineEdit>,
    pub mapper_bytes: Vec<Edit>,
}

fn folder_case() -> impl Strategy<Value = FolderCase> {
    (
        prop::collection::vec(line_edit(toml_line(), toml_value()), 0..4),
        prop_oneof![3 => Just(vec![]), 1 => prop::collection::vec(byte_edit(stray_bytes()), 1..3)],
        prop_oneof![
            2 => Just(vec![]),
            1 => prop::collection::vec(line_edit(jsonnet_fragment(), jsonnet_fragment()), 1..3),
        ],
        prop_oneof![
            2 => Just(vec![]),
            1 => prop::collection::vec(byte_edit(jsonnet_fragment()), 1..3),
        ],
    )
        .prop_map(
            |(settings_lines, settings_bytes, mapper_lines, mapper_bytes)| FolderCase {
                settings_lines,
                settings_bytes,
                mapper_lines,
                mapper_bytes,
            },
        )
}

fn apply_bytes(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    let doc = crate::json::Doc::Raw(std::mem::take(&mut bytes));
    crate::json::Mutated {
        mutations: vec![],
        edits: edits.to_vec(),
    }
    .apply(&doc)
}

/// Loads a copy of `mappers/okta-acme` holding `settings` and `mapper`, on an 8 MiB stack, and
/// checks the property: whether the folder loaded, or what breaks the property.
pub fn check_folder(settings: &[u8], mapper: &[u8]) -> Result<bool, String> {
    let tree = tempfile::tempdir().unwrap();
    let dir = tree.path().join("okta-acme");
    copy_dir(&manifest_dir().join("mappers/okta-acme"), &dir);
    std::fs::write(dir.join("provider.toml"), settings).unwrap();
    std::fs::write(dir.join("mapper.jsonnet"), mapper).unwrap();
    let root = tree.path().to_owned();
    let loaded = std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || Providers::load(&root).map(|(providers, _)| providers.len()))
        .unwrap()
        .join()
        .map_err(|panic| format!("loading panicked: {}", panic_text(&panic)))?;
    match loaded {
        Ok(1) => Ok(true),
        Ok(n) => Err(format!("loaded {n} providers from one folder")),
        Err(errors) if errors.is_empty() => Err("refused without an error".into()),
        Err(errors) => {
            for error in &errors {
                check_error(error, tree.path())?;
            }
            Ok(false)
        }
    }
}

fn check_error(error: &LoadError, tree: &Path) -> Result<(), String> {
    if !error.path.starts_with(tree) {
        return Err(format!("an error names a file outside the tree: {error}"));
    }
    let file = error.path.file_name().and_then(|n| n.to_str());
    if matches!(file, Some("provider.toml" | "mapper.jsonnet")) && error.line.is_none() {
        return Err(format!("an error about {file:?} has no line: {error}"));
    }
    if error.message.trim().is_empty() {
        return Err(format!(
            "an error without a message at {}",
            error.path.display()
        ));
    }
    Ok(())
}

pub fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(no message)".into())
}

#[test]
fn a_mutated_provider_folder_loads_or_every_error_has_a_file_and_line() {
    let folder = manifest_dir().join("mappers/okta-acme");
    let settings = std::fs::read(folder.join("provider.toml")).unwrap();
    let mapper = std::fs::read(folder.join("mapper.jsonnet")).unwrap();
    assert_eq!(
        check_folder(&settings, &mapper),
        Ok(true),
        "the sample folder loads"
    );
    let tally = crate::Tally::default();
    crate::check(crate::regressions!("providers"), folder_case(), |case| {
        let settings = apply_bytes(
            apply_lines(&settings, &case.settings_lines),
            &case.settings_bytes,
        );
        let mapper = apply_bytes(apply_lines(&mapper, &case.mapper_lines), &case.mapper_bytes);
        let loaded = check_folder(&settings, &mapper).map_err(TestCaseError::fail)?;
        tally.add(if loaded { "loaded" } else { "refused" });
        Ok(())
    });
    tally.require(&["loaded", "refused"]);
}
