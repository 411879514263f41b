//! Formatting of sizes and metadata values for tables and JSON.

use mm_gguf::{Value, ValueType};
use serde_json::{Value as Json, json};

/// `1234567` -> `"1.2 MiB"`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A metadata value in one line, arrays cut to `items` elements.
pub fn value_text(v: &Value<'_>, items: usize) -> String {
    match v {
        Value::String(s) => quote(s, 72),
        Value::Array(a) => {
            let mut parts: Vec<String> = Vec::new();
            for e in a.iter().take(items) {
                match e {
                    Ok(e) => parts.push(value_text(&e, items)),
                    Err(err) => {
                        parts.push(format!("<{err}>"));
                        break;
                    }
                }
            }
            let more = a.len().saturating_sub(parts.len() as u64);
            if more > 0 {
                parts.push(format!("... {more} more"));
            }
            format!("[{}]", parts.join(", "))
        }
        Value::F32(x) => format!("{x}"),
        Value::F64(x) => format!("{x}"),
        other => scalar_json(other).to_string(),
    }
}

/// The type column: `uint32`, `[string; 262144]`.
pub fn type_text(v: &Value<'_>) -> String {
    match v {
        Value::Array(a) => format!("[{}; {}]", a.element_type().name(), a.len()),
        other => other.value_type().name().to_string(),
    }
}

fn quote(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    format!("{out:?}")
}

fn scalar_json(v: &Value<'_>) -> Json {
    match *v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::F32(x) => json!(x),
        Value::Bool(x) => json!(x),
        Value::String(s) => json!(s),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::F64(x) => json!(x),
        Value::Array(_) => Json::Null,
    }
}

/// A metadata value as JSON; arrays give `{"type", "len", "head": [first items]}`.
pub fn value_json(v: &Value<'_>, items: usize) -> Json {
    match v {
        Value::Array(a) => {
            let head: Vec<Json> = a
                .iter()
                .take(items)
                .map_while(Result::ok)
                .map(|e| value_json(&e, items))
                .collect();
            json!({"type": "array", "element_type": a.element_type().name(), "len": a.len(), "head": head})
        }
        other => scalar_json(other),
    }
}

/// Name of a value type for JSON.
pub fn value_type_name(v: &Value<'_>) -> &'static str {
    if v.value_type() == ValueType::Array {
        "array"
    } else {
        v.value_type().name()
    }
}
