//! Converting between JSON and Jsonnet values at the edges of an evaluation.
//!
//! Output conversion is where laziness is forced, so it runs inside the guarded region and it
//! enforces the output limits Kratos applies (256 KiB, docs/kratos.md §2.4) while it walks the value
//! — a 10⁹-element array is refused after its first 256 KiB, never materialised.

use jrsonnet_evaluator::{Val, error::ErrorKind};
use serde::Deserialize as _;
use serde_json::{Map, Number, Value};

/// Nesting deeper than this is refused rather than recursed into.
const MAX_OUTPUT_DEPTH: usize = 128;

pub enum ConvertError {
    /// Forcing a lazy value failed: an error raised by the mapper itself, and the output field
    /// being computed (outermost first) when it happened.
    Eval(jrsonnet_evaluator::Error, Vec<String>),
    TooLarge,
    TooDeep,
    Function,
}

impl From<jrsonnet_evaluator::Error> for ConvertError {
    fn from(e: jrsonnet_evaluator::Error) -> Self {
        ConvertError::Eval(e, Vec::new())
    }
}

/// JSON → Jsonnet value, for ext vars. Never fails for a `serde_json::Value`.
pub fn to_val(value: &Value) -> Val {
    Val::deserialize(value).unwrap_or_else(|e| {
        // serde_json values are always representable; keep the evaluator total anyway.
        Val::Str(format!("unrepresentable value: {e}").into())
    })
}

/// Jsonnet value → JSON, counting the bytes of the minified JSON it stands for.
pub fn to_json(val: Val, max_bytes: usize) -> Result<Value, ConvertError> {
    let mut budget = max_bytes;
    walk(val, &mut budget, 0)
}

fn spend(budget: &mut usize, n: usize) -> Result<(), ConvertError> {
    if n > *budget {
        return Err(ConvertError::TooLarge);
    }
    *budget -= n;
    Ok(())
}

fn walk(val: Val, budget: &mut usize, depth: usize) -> Result<Value, ConvertError> {
    if depth > MAX_OUTPUT_DEPTH {
        return Err(ConvertError::TooDeep);
    }
    Ok(match val {
        Val::Null => {
            spend(budget, 4)?;
            Value::Null
        }
        Val::Bool(b) => {
            spend(budget, 5)?;
            Value::Bool(b)
        }
        Val::Num(n) => {
            spend(budget, 8)?;
            number(n.get())
        }
        Val::Str(s) => {
            let s = s.into_flat();
            spend(budget, s.len() + 2)?;
            Value::String(s.as_str().to_owned())
        }
        Val::Arr(arr) => {
            spend(budget, 2)?;
            let mut out = Vec::with_capacity((arr.len() as usize).min(1024));
            for item in arr.iter() {
                spend(budget, 1)?;
                let index = out.len();
                let item = item.and_then_field(|| format!("[{index}]"))?;
                out.push(
                    walk(item, budget, depth + 1).map_err(|e| e.inside(|| format!("[{index}]")))?,
                );
            }
            Value::Array(out)
        }
        Val::Obj(obj) => {
            spend(budget, 2)?;
            let mut out = Map::new();
            for (key, item) in obj.iter() {
                spend(budget, key.len() + 4)?;
                let item = item.and_then_field(|| format!(".{key}"))?;
                let item =
                    walk(item, budget, depth + 1).map_err(|e| e.inside(|| format!(".{key}")))?;
                out.insert(key.as_str().to_owned(), item);
            }
            Value::Object(out)
        }
        Val::Func(_) => return Err(ConvertError::Function),
    })
}

trait FieldResult {
    fn and_then_field(self, segment: impl FnOnce() -> String) -> Result<Val, ConvertError>;
}

impl FieldResult for jrsonnet_evaluator::Result<Val> {
    fn and_then_field(self, segment: impl FnOnce() -> String) -> Result<Val, ConvertError> {
        self.map_err(|e| ConvertError::Eval(e, vec![segment()]))
    }
}

impl ConvertError {
    /// Records the enclosing field of an evaluation error while unwinding.
    fn inside(self, segment: impl FnOnce() -> String) -> Self {
        match self {
            ConvertError::Eval(e, mut path) => {
                path.push(segment());
                ConvertError::Eval(e, path)
            }
            other => other,
        }
    }

    /// The output field being computed, e.g. `identity.traits.first_name`.
    pub fn field_path(path: &[String]) -> Option<String> {
        if path.is_empty() {
            return None;
        }
        let joined: String = path.iter().rev().map(String::as_str).collect();
        Some(joined.trim_start_matches('.').to_owned())
    }
}

/// Jsonnet numbers are f64; integral ones are written as integers, as go-jsonnet does.
fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        Value::Number(Number::from(n as i64))
    } else {
        Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

/// Whether an evaluator error is the one a tripped guard produces.
pub fn is_stack_overflow(e: &jrsonnet_evaluator::Error) -> bool {
    matches!(e.error(), ErrorKind::StackOverflow)
}
