//! How deeply a mapper nests, measured on its tokens before the Jsonnet parser sees it.
//!
//! jrsonnet's parser and static analysis recurse once per nested expression and, unlike its
//! evaluator, never grow their stack: a mapper of a few hundred `[` (or `{a:`, or `local a = 1;`)
//! overflows an 8 MiB stack, and a stack overflow aborts the whole process — `check`, `serve`,
//! every provider with it. So [`check`] estimates, from the token stream alone, how much stack the
//! parser will need, and refuses a mapper whose estimate exceeds [`LIMIT_BYTES`] with a compile
//! error at the place where it nests too deeply; [`super::compile::prepare`] then parses on a
//! stack of [`PARSE_STACK_BYTES`], several times the limit, whatever thread it runs on.
//!
//! The estimate follows the parser's recursion: every open bracket and every construct whose body
//! is a nested expression (`local … ;`, `assert … ;`, `if`, `function`, `error`, `for`) adds a
//! level; a `,` ends a sibling and a `;` ends a binding's value, giving back what they opened;
//! unary and binary operators, which the parser also recurses on, add a small level each. The cost
//! of each level is what one level of that construct used in a debug build (which uses more stack
//! than a release build), measured by nesting each one until an 8 MiB stack overflowed: an object
//! field about 47 KiB, a bracket, `local`, `if` or `function` about 33–36 KiB, an operator about
//! 5.4 KiB. Real mappers stay far below the limit (the deepest sample mapper is estimated at
//! 1.6 MiB, a twentieth of it; `tests` in this module); only one nested some 700 levels deep
//! reaches it.

use jrsonnet_lexer::{Lexer, SyntaxKind};

/// The largest estimated parser stack a mapper may need.
pub const LIMIT_BYTES: u64 = 32 << 20;

/// The stack the parser runs on: three times the limit, as margin for what the estimate misses.
pub const PARSE_STACK_BYTES: usize = 96 << 20;

const OBJECT: u64 = 48 << 10;
const BRACKET: u64 = 36 << 10;
const KEYWORD: u64 = 36 << 10;
const OPERATOR: u64 = 6 << 10;

/// Where a mapper nests beyond [`LIMIT_BYTES`]: the byte offset of the token that crossed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooDeep {
    pub offset: usize,
}

struct Frame {
    /// The estimate just outside the bracket.
    base: u64,
    cost: u64,
}

/// Refuses a mapper whose parser would need more than [`LIMIT_BYTES`] of stack.
pub fn check(code: &str) -> Result<(), TooDeep> {
    match walk(code, |estimate| estimate > LIMIT_BYTES) {
        Some(offset) => Err(TooDeep { offset }),
        None => Ok(()),
    }
}

/// Walks the tokens keeping the estimate; stops at the first token after which `stop(estimate)`
/// holds, and answers that token's byte offset.
fn walk(code: &str, mut stop: impl FnMut(u64) -> bool) -> Option<usize> {
    let mut frames: Vec<Frame> = Vec::new();
    // Open `local`/`assert` bindings: (frame depth, estimate before the keyword).
    let mut bindings: Vec<(usize, u64)> = Vec::new();
    let mut estimate: u64 = 0;
    for token in Lexer::new(code) {
        use SyntaxKind::*;
        match token.kind {
            L_BRACE | L_BRACK | L_PAREN => {
                let cost = if token.kind == L_BRACE {
                    OBJECT
                } else {
                    BRACKET
                };
                frames.push(Frame {
                    base: estimate,
                    cost,
                });
                estimate += cost;
            }
            R_BRACE | R_BRACK | R_PAREN => {
                if let Some(frame) = frames.pop() {
                    estimate = frame.base;
                }
                bindings.retain(|&(depth, _)| depth <= frames.len());
            }
            COMMA => {
                if let Some(frame) = frames.last() {
                    estimate = frame.base + frame.cost;
                }
                bindings.retain(|&(depth, _)| depth < frames.len());
            }
            SEMI => {
                // The binding's value is done; its body stays nested inside the binding.
                if let Some(&(depth, before)) = bindings.last()
                    && depth == frames.len()
                {
                    bindings.pop();
                    estimate = before + KEYWORD;
                }
            }
            LOCAL_KW | ASSERT_KW => {
                bindings.push((frames.len(), estimate));
                estimate += KEYWORD;
            }
            IF_KW | FUNCTION_KW | ERROR_KW | FOR_KW => estimate += KEYWORD,
            OR | NULL_COAELSE | AND | BIT_OR | BIT_XOR | BIT_AND | EQ | NE | LT | GT | LE | GE
            | LHS | RHS | PLUS | MINUS | MUL | DIV | MODULO | NOT | BIT_NOT | IN_KW => {
                estimate += OPERATOR
            }
            _ => {}
        }
        if stop(estimate) {
            return Some(token.range.0 as usize);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The deepest estimate reached anywhere in `code`.
    fn deepest(code: &str) -> u64 {
        let mut worst = 0;
        walk(code, |estimate| {
            worst = worst.max(estimate);
            false
        });
        worst
    }

    #[test]
    fn the_sample_mappers_stay_far_below_the_limit() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/mappers");
        let mut seen = 0;
        for entry in std::fs::read_dir(root).unwrap() {
            let path = entry.unwrap().path().join("mapper.jsonnet");
            let code = std::fs::read_to_string(&path).unwrap();
            let worst = deepest(&code);
            assert!(worst < LIMIT_BYTES / 8, "{}: {worst} bytes", path.display());
            assert!(check(&code).is_ok());
            seen += 1;
        }
        assert!(seen >= 4);
    }

    #[test]
    fn each_nesting_construct_is_refused_once_deep_enough() {
        let cases = [
            ("[", "1", "]"),
            ("{a:", "1", "}"),
            ("(", "1", ")"),
            ("f(", "1", ")"),
            ("local a = 1; ", "1", ""),
            ("assert true; ", "1", ""),
            ("if true then 1 else ", "1", ""),
            ("function(x) ", "1", ""),
            ("error ", "1", ""),
            ("[x for x in ", "[1]", "]"),
            ("-", "1", ""),
            ("!", "true", ""),
            ("1 + ", "1", ""),
        ];
        for (open, inner, close) in cases {
            let deep = |n: usize| format!("{}{inner}{}", open.repeat(n), close.repeat(n));
            assert!(check(&deep(20)).is_ok(), "{open:?} x 20");
            let error = check(&deep(20_000)).expect_err(open);
            assert!(error.offset > 0 && error.offset < deep(20_000).len());
        }
    }

    #[test]
    fn siblings_and_finished_bindings_do_not_add_up() {
        // 5,000 fields, array items and top-level locals side by side: wide, not deep.
        let fields: String = (0..5_000)
            .map(|i| format!("f{i}: if true then [1] else {{}},"))
            .collect();
        assert!(check(&format!("{{{fields}}}")).is_ok());
        let items = "[1, {a: [2]}], ".repeat(5_000);
        assert!(check(&format!("[{items}]")).is_ok());
        let locals = "local a = if true then (1 + 2) else [3]; ".repeat(100);
        assert!(deepest(&format!("{locals}a")) <= 101 * KEYWORD + BRACKET + OPERATOR + KEYWORD);
    }

    #[test]
    fn brackets_inside_strings_and_comments_do_not_count() {
        let noise = "[[[[{{{{((((".repeat(10_000);
        let code = format!(
            "// {noise}\n/* {noise} */ local s = '{noise}'; local t = \"{noise}\";\n\
             local u = |||\n  {noise}\n|||; [s, t, u]"
        );
        assert!(check(&code).is_ok());
    }
}
