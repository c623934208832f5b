//! What loading a `mappers/` tree reports: errors and warnings with a file and, where the problem
//! sits inside a file, a line and column (1-based, columns counted in characters).

use std::fmt;
use std::path::{Path, PathBuf};

/// A problem that keeps the tree from loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl LoadError {
    /// An error about a file or folder as a whole.
    pub(super) fn file(path: &Path, message: impl Into<String>) -> Self {
        LoadError {
            path: path.to_owned(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    /// An error at a line and column of a file.
    pub(super) fn at(
        path: &Path,
        (line, column): (usize, usize),
        message: impl Into<String>,
    ) -> Self {
        LoadError {
            path: path.to_owned(),
            line: Some(line),
            column: Some(column),
            message: message.into(),
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for LoadError {}

/// Something that does not keep the tree from loading but is probably a mistake (a stray file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadWarning {
    pub path: PathBuf,
    pub message: String,
}

impl LoadWarning {
    pub(super) fn new(path: &Path, message: impl Into<String>) -> Self {
        LoadWarning {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for LoadWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

/// Turns byte offsets into 1-based line and column numbers.
pub(crate) struct LineIndex<'t> {
    text: &'t str,
    /// Byte offset at which each line starts.
    starts: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { text, starts }
    }

    /// The 1-based line and column (in characters) of a byte offset.
    pub(crate) fn locate(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&start| start <= offset) - 1;
        let start = self.starts[line];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |prefix| prefix.chars().count());
        (line + 1, column + 1)
    }
}

/// ` (did you mean `x`?)` when one of `known` is a likely intended spelling of `word`.
pub(crate) fn did_you_mean(word: &str, known: &[&str]) -> String {
    closest(word, known)
        .map(|k| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default()
}

/// The entry of `known` closest to `word`, if any is close enough to be a plausible typo.
pub(super) fn closest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    let lower = word.to_lowercase();
    if let Some(same) = known.iter().find(|k| k.to_lowercase() == lower) {
        return Some(same);
    }
    known
        .iter()
        .map(|k| (edit_distance(&lower, k), *k))
        .filter(|&(distance, k)| {
            let longest = k.chars().count().max(lower.chars().count());
            distance <= (longest / 3).max(1)
                || (lower.len() >= 4 && (k.contains(lower.as_str()) || lower.contains(k)))
        })
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, k)| k)
}

/// Levenshtein distance, by characters. Keys are short, so the quadratic table is fine.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_one_based_lines_and_character_columns() {
        let index = LineIndex::new("a = 1\nnäme = 2\n");

        assert_eq!(index.locate(0), (1, 1));
        assert_eq!(index.locate(6), (2, 1));
        // `=` on line 2 follows "näme " (6 bytes, 5 characters).
        assert_eq!(index.locate(6 + 6), (2, 6));
        assert_eq!(index.locate(10_000), (3, 1));
    }

    #[test]
    fn a_typo_is_matched_to_the_intended_key_and_nonsense_is_not() {
        let known = ["create", "update", "link_by_verified_email"];

        assert_eq!(closest("crate", &known), Some("create"));
        assert_eq!(closest("UPDATE", &known), Some("update"));
        assert_eq!(
            closest("verified_email", &known),
            Some("link_by_verified_email")
        );
        assert_eq!(closest("colour", &known), None);
    }

    #[test]
    fn an_error_shows_path_line_and_column_like_a_compiler() {
        let error = LoadError::at(Path::new("mappers/a/provider.toml"), (3, 7), "bad");

        assert_eq!(error.to_string(), "mappers/a/provider.toml:3:7: bad");
        assert_eq!(
            LoadError::file(Path::new("mappers/a"), "bad").to_string(),
            "mappers/a: bad"
        );
    }
}
