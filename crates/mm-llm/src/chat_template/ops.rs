//! Checked operators: before a template compiles, every `~`, `+` and `*` in it is rewritten
//! into a call of one of the functions here, which refuse a result past the renderer's caps
//! before anything is allocated for it, then compute it as minijinja does.
//!
//! minijinja's own operators have no caps that a hostile template cannot get around:
//! `set s = s ~ s` in a loop doubles a string at every step, `[x] * n` is a lazy list of any
//! length (`([1] * 10**12) | last` collects a terabyte, `2 in [1] * 10**12` scans it for
//! hours, and a length past `usize` panics inside minijinja in a debug build). The
//! expressions are found with minijinja's own parser (`machinery::parse`), so the rewrite
//! sees exactly the syntax tree minijinja compiles; each operator's text is replaced by a
//! call on its operands' text, and a chain of one operator (`a ~ b ~ c`) becomes one call
//! with every operand, so a long chain does not become a deep nest of calls.
//!
//! The same rewrite puts every expression whose value outlives its tag (a `set`'s value, a
//! `with` value, a `for` loop's list, a call's arguments) through the value checks of
//! `values.rs`: `__mm_value((expr))`, or `__mm_store((expr), ns)` for `{% set ns.a = expr %}`.

use std::cmp::Reverse;
use std::sync::LazyLock;

use minijinja::machinery::{WhitespaceConfig, parse};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Rest, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Expression};

use super::{Built, MAX_BUILT_LEN, skip_string, too_long, values};

/// Names a template may not use: the checked operators are globals with this prefix.
pub(super) const RESERVED: &str = "__mm_";

/// Items a list built by `+` or `*` may hold.
pub(super) const MAX_ITEMS: usize = 1 << 20;

const CONCAT: &str = "__mm_concat";
const ADD: &str = "__mm_add";
const MUL: &str = "__mm_mul";
const COMPARE: &str = "__mm_compare";

/// Registers the checked operators in `env`.
pub(super) fn register(env: &mut Environment<'_>) {
    env.add_function(CONCAT, concat);
    env.add_function(ADD, add);
    env.add_function(MUL, mul);
    env.add_function(COMPARE, compare);
}

/// The template's syntax tree, as minijinja parses it in the renderer's environment.
fn syntax_tree(source: &str) -> Result<serde_json::Value, Error> {
    let whitespace = WhitespaceConfig {
        keep_trailing_newline: false,
        lstrip_blocks: true,
        trim_blocks: true,
    };
    // A unit struct unless minijinja's `custom_syntax` feature is on (another crate in the
    // build may turn it on), so it is built the way that works either way.
    #[allow(clippy::default_constructed_unit_structs)]
    let syntax = SyntaxConfig::default();
    let ast = parse(source, "chat", syntax, whitespace)?;
    serde_json::to_value(&ast).map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("reading the template's syntax tree: {e}"),
        )
    })
}

/// Statements whose body minijinja captures into a string instead of printing it.
const CAPTURES: [&str; 4] = ["SetBlock", "Macro", "CallBlock", "FilterBlock"];

/// `source` with both rewrites: raw text inside captured bodies printed through `{{ }}`
/// ([`print_captured_raw`]), then every `~`, `+` and `*` replaced by a call of its checked
/// function ([`guard_operators`]). The template is parsed once, or twice when the first
/// rewrite changed it.
///
/// # Errors
/// When minijinja cannot parse `source` (the same error compiling it would give).
pub(super) fn rewrite(source: &str) -> Result<String, Error> {
    let tree = syntax_tree(source)?;
    match print_captured_raw(source, &tree)? {
        Some(text) => {
            let tree = syntax_tree(&text)?;
            guard_operators(&text, &tree)
        }
        None => guard_operators(source, &tree),
    }
}

/// `source` (whose syntax tree is `tree`) with the raw text inside captured bodies (`{% set
/// %}` blocks, macros, `call` and `filter` blocks) printed through `{{ }}` instead:
/// minijinja writes raw text into a capture without the renderer's formatter, so a loop
/// inside a capture could repeat it without the print budget seeing it. Each rewritten text is the whole gap between its
/// two tags, whitespace that whitespace control removes included, replaced by a string
/// literal of the text minijinja would have written (the syntax tree's), followed inside
/// the tag by as many newlines as the gap held, so later lines keep their numbers. A `{%
/// raw %}` block's text is printed the same way, the block's two tags included in what is
/// replaced.
///
/// # Errors
/// When the syntax tree's offsets do not fit `source`.
fn print_captured_raw(source: &str, tree: &serde_json::Value) -> Result<Option<String>, Error> {
    let mut raws = Vec::new();
    collect_raw(tree, false, &mut raws);
    if raws.is_empty() {
        return Ok(None);
    }
    raws.sort_by_key(|r| r.0);
    let b = source.as_bytes();
    let mut out = String::with_capacity(source.len() + raws.len() * 16);
    let mut pos = 0;
    for (k, &(start, end, ref text)) in raws.iter().enumerate() {
        if start < pos || end > source.len() || start > end {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "the template's syntax tree has an offset outside its text",
            ));
        }
        let mut a = start;
        while a > pos && b[a - 1].is_ascii_whitespace() {
            a -= 1;
        }
        let mut z = end;
        while z < b.len() && b[z].is_ascii_whitespace() {
            z += 1;
        }
        if let Some(open) = raw_block_open(&source[..a]) {
            // The text of a `{% raw %}` block: the whole block, tags included, becomes the
            // print, with the whitespace around it that no text node holds (what the tags'
            // whitespace control removed).
            let Some(close) = raw_block_close(b, end) else {
                continue;
            };
            (a, z) = (open, close);
            while a > pos && b[a - 1].is_ascii_whitespace() {
                a -= 1;
            }
            let next = raws.get(k + 1).map_or(b.len(), |r| r.0);
            while z < b.len().min(next) && b[z].is_ascii_whitespace() {
                z += 1;
            }
        }
        out.push_str(&source[pos..a]);
        out.push_str("{{ \"");
        for c in text.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c => out.push(c),
            }
        }
        out.push('"');
        out.extend(std::iter::repeat_n(
            '\n',
            source[a..z].matches('\n').count(),
        ));
        out.push_str(" }}");
        pos = z;
    }
    out.push_str(&source[pos..]);
    Ok(Some(out))
}

/// Where the `{% raw %}` tag starts when the text that ends at a raw text's gap ends with
/// one (the text is then that block's).
fn raw_block_open(before: &str) -> Option<usize> {
    let head = before.strip_suffix("%}")?;
    let open = head.rfind("{%")?;
    let tag = head[open + 2..].trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
    (tag == "raw").then_some(open)
}

/// Where the `{% endraw %}` tag that closes a raw block's text ends, from the text's end
/// `from` (only whitespace, which the tag's whitespace control removed, between them).
fn raw_block_close(b: &[u8], from: usize) -> Option<usize> {
    let mut k = from;
    while k < b.len() && b[k].is_ascii_whitespace() {
        k += 1;
    }
    let mut rest = b.get(k..)?.strip_prefix(b"{%")?;
    if let [b'-' | b'+', tail @ ..] = rest {
        rest = tail;
    }
    let rest = rest.trim_ascii_start().strip_prefix(b"endraw")?;
    let after = rest.trim_ascii_start();
    let after = after.strip_prefix(b"-").unwrap_or(after);
    after.starts_with(b"%}").then(|| b.len() - after.len() + 2)
}

/// The raw text nodes under `v` that lie inside a captured body: (start, end, text).
fn collect_raw(v: &serde_json::Value, captured: bool, raws: &mut Vec<(usize, usize, String)>) {
    match v {
        serde_json::Value::Object(m) => {
            let stmt = v.get("stmt").and_then(|s| s.as_str());
            if captured
                && stmt == Some("EmitRaw")
                && let Some((node, span)) = node_and_span(v)
                && let Some(text) = node.get("raw").and_then(|t| t.as_str())
                && let Some((a, b)) = offsets(span)
            {
                raws.push((a, b, text.to_owned()));
                return;
            }
            let captured = captured || stmt.is_some_and(|s| CAPTURES.contains(&s));
            for child in m.values() {
                collect_raw(child, captured, raws);
            }
        }
        serde_json::Value::Array(items) => {
            for child in items {
                collect_raw(child, captured, raws);
            }
        }
        _ => {}
    }
}

/// One operator chain of the template: the byte range it spans, its function, and the
/// byte range of each operand.
struct Op {
    start: usize,
    end: usize,
    func: &'static str,
    args: Vec<(usize, usize)>,
    /// A comparison's operators, comma-separated (`<,==`).
    lead: String,
    /// Text written after the arguments, inside the call: a checked store's namespaces.
    extra: String,
    /// A checked value around one expression (`values.rs`): its one argument is the
    /// expression itself, written in parentheses (a bare tuple stays one argument), and it
    /// goes around an operator chain with the same range.
    wrap: bool,
}

/// `source` (whose syntax tree is `tree`) with every `~`, `+` and `*` replaced by a call of
/// its checked function.
///
/// # Errors
/// When the syntax tree's offsets do not fit `source`.
fn guard_operators(source: &str, tree: &serde_json::Value) -> Result<String, Error> {
    let mut ops = Vec::new();
    collect(source, tree, &mut ops);
    if ops.is_empty() {
        return Ok(source.to_owned());
    }
    // A node's span can take its opening bracket and leave the closing one (an `if`
    // expression in parentheses spans `(a if b else c`): each range is widened to balance.
    for op in &mut ops {
        (op.start, op.end) = balanced(source, op.start, op.end)?;
        for arg in &mut op.args {
            *arg = balanced(source, arg.0, arg.1)?;
        }
    }
    let on_char = |i: usize| i <= source.len() && source.is_char_boundary(i);
    if !ops.iter().all(|op| {
        on_char(op.start)
            && on_char(op.end)
            && op.start <= op.end
            && op
                .args
                .iter()
                .all(|&(a, b)| on_char(a) && on_char(b) && op.start <= a && a <= b && b <= op.end)
    }) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "the template's syntax tree has an offset outside its text",
        ));
    }
    // Outer chains before the chains inside them.
    ops.sort_by_key(|op| (op.start, Reverse(op.end), !op.wrap));
    let mut out = String::with_capacity(source.len() + ops.len() * 16);
    let emitted = emit(source, 0, source.len(), &ops, &mut out);
    // Every operator must have gone through its function: an operand range that did not
    // hold an operator inside it would leave that operator unchecked.
    if emitted != ops.len() {
        return Err(unbalanced());
    }
    Ok(out)
}

/// `source[start..end]` widened until its brackets balance: over closing brackets that
/// follow it (past whitespace) for each one it leaves open, over opening brackets before it
/// for each one it closes without opening. Brackets inside string literals do not count.
///
/// # Errors
/// When the brackets cannot be balanced that way (not a range of one expression).
fn balanced(source: &str, start: usize, end: usize) -> Result<(usize, usize), Error> {
    let bytes = source.as_bytes();
    let text = bytes.get(start..end).ok_or_else(unbalanced)?;
    let (mut depth, mut lowest) = (0i64, 0i64);
    let mut k = 0;
    while k < text.len() {
        match text[k] {
            b'\'' | b'"' => k = skip_string(text, k).ok_or_else(unbalanced)? - 1,
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                lowest = lowest.min(depth);
            }
            _ => {}
        }
        k += 1;
    }
    let (mut start, mut end) = (start, end);
    // Openers before the range for the closers it has without them.
    for _ in 0..-lowest {
        let before = bytes[..start]
            .iter()
            .rposition(|c| !c.is_ascii_whitespace());
        match before {
            Some(i) if matches!(bytes[i], b'(' | b'[' | b'{') => start = i,
            _ => return Err(unbalanced()),
        }
    }
    // Closers after it for the openers it leaves open.
    for _ in 0..depth - lowest {
        let after = bytes[end..].iter().position(|c| !c.is_ascii_whitespace());
        match after {
            Some(i) if matches!(bytes[end + i], b')' | b']' | b'}') => end += i + 1,
            _ => return Err(unbalanced()),
        }
    }
    // Then without the parentheses that enclose all of it (but not a tuple's), so that an
    // operand and the operator chain it is are the same range.
    while let Some(inner) = enclosed(bytes, start, end) {
        (start, end) = inner;
    }
    Ok((start, end))
}

/// `start..end` inside the parentheses at its two ends, when they are one pair with no comma
/// directly inside (a tuple keeps its parentheses), trimmed of whitespace.
fn enclosed(bytes: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
    if end < start + 2 || bytes[start] != b'(' || bytes[end - 1] != b')' {
        return None;
    }
    let text = &bytes[start..end];
    let mut depth = 0i64;
    let mut k = 0;
    while k < text.len() {
        match text[k] {
            b'\'' | b'"' => k = skip_string(text, k)? - 1,
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                // The first parenthesis closes before the end: not one pair.
                if depth == 0 && k != text.len() - 1 {
                    return None;
                }
            }
            b',' if depth == 1 => return None,
            _ => {}
        }
        k += 1;
    }
    let (mut a, mut b) = (start + 1, end - 1);
    while a < b && bytes[a].is_ascii_whitespace() {
        a += 1;
    }
    while b > a && bytes[b - 1].is_ascii_whitespace() {
        b -= 1;
    }
    (a < b).then_some((a, b))
}

fn unbalanced() -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        "an operand's text in the template's syntax tree is not one expression",
    )
}

/// Writes `source[from..to]` with the operator chains of `ops` inside it rewritten.
/// Returns how many chains it rewrote.
fn emit(source: &str, from: usize, to: usize, ops: &[Op], out: &mut String) -> usize {
    let mut pos = from;
    let mut i = 0;
    let mut emitted = 0;
    while i < ops.len() {
        let op = &ops[i];
        if op.start < pos || op.end > to {
            i += 1;
            continue;
        }
        out.push_str(&source[pos..op.start]);
        // The chains inside this one follow it in the order.
        let inner_end = i + 1 + ops[i + 1..].iter().take_while(|o| o.start < op.end).count();
        let inner = &ops[i + 1..inner_end];
        emitted += 1;
        if op.func == COMPARE {
            // One checked call per pair, joined by `and` (a chain's middle operands are
            // plain names, so writing them twice computes nothing twice).
            out.push('(');
            for (k, name) in op.lead.split(',').enumerate() {
                let (Some(&(a, b)), Some(&(c, d))) = (op.args.get(k), op.args.get(k + 1)) else {
                    break;
                };
                if k > 0 {
                    out.push_str(" and ");
                }
                out.push_str(COMPARE);
                out.push_str("('");
                out.push_str(name);
                out.push_str("', ");
                emitted += emit(source, a, b, inner, out);
                out.push_str(", ");
                emitted += emit(source, c, d, inner, out);
                out.push(')');
            }
            out.push(')');
            pos = op.end;
            i = inner_end;
            continue;
        }
        out.push_str(op.func);
        out.push('(');
        for (k, &(a, b)) in op.args.iter().enumerate() {
            if k > 0 {
                out.push_str(", ");
            }
            if op.wrap {
                out.push('(');
            }
            emitted += emit(source, a, b, inner, out);
            if op.wrap {
                out.push(')');
            }
        }
        out.push_str(&op.extra);
        out.push(')');
        pos = op.end;
        i = inner_end;
    }
    out.push_str(&source[pos..to]);
    emitted
}

/// When `v` is a comparison, pushes its checked call, collects its operands and returns
/// true. Out of line, so that `collect`, which recurses once per level of the syntax tree
/// (256 nested `elif`s are a few thousand levels), keeps a small frame.
#[inline(never)]
fn compared(src: &str, v: &serde_json::Value, ops: &mut Vec<Op>) -> bool {
    let Some((op, operands)) = comparison(src, v) else {
        return false;
    };
    // A comparison with a literal costs at most the literal's length (or, for `in`, one
    // pass over the other side), so one in which every pair has a literal is left as
    // minijinja's: most of them (`message.role == 'user'`).
    let literal = |e: &serde_json::Value| e.get("expr").and_then(|k| k.as_str()) == Some("Const");
    if operands
        .windows(2)
        .all(|pair| literal(pair[0]) || literal(pair[1]))
    {
        return false;
    }
    // A chain's middle operands are written twice: only plain names and literals, which
    // compute nothing twice; other chains are left as minijinja's.
    if operands.len() > 2
        && !operands[1..operands.len() - 1]
            .iter()
            .all(|e| plain_name(e))
    {
        return false;
    }
    let args: Option<Vec<_>> = operands.iter().map(|e| extent(src, e)).collect();
    if let Some(args) = args
        && let (Some(&(start, _)), Some(&(_, end))) = (args.first(), args.last())
    {
        ops.push(Op {
            start,
            end,
            func: COMPARE,
            args,
            lead: op,
            extra: String::new(),
            wrap: false,
        });
    }
    for e in operands {
        collect(src, e, ops);
    }
    true
}

/// Whether `e` is a literal or a dotted name (`x`, `ns.a`).
fn plain_name(e: &serde_json::Value) -> bool {
    match e.get("expr").and_then(|k| k.as_str()) {
        Some("Const") => true,
        Some("Var" | "GetAttr") => dotted(e).is_some(),
        _ => false,
    }
}

/// A comparison (`==`, `!=`, `<`, `<=`, `>`, `>=`, `in`, `not in`, or a chain of them,
/// `a < b == c`) at `v`: its operators, comma-separated, and its operands.
fn comparison<'a>(
    src: &str,
    v: &'a serde_json::Value,
) -> Option<(String, Vec<&'a serde_json::Value>)> {
    let (node, _) = node_and_span(v)?;
    let name = |k: &str| -> Option<&'static str> {
        Some(match k {
            "Eq" => "==",
            "Ne" => "!=",
            "Lt" => "<",
            "Lte" => "<=",
            "Gt" => ">",
            "Gte" => ">=",
            "In" => "in",
            "NotIn" => "not in",
            _ => return None,
        })
    };
    match v.get("expr")?.as_str()? {
        "BinOp" => {
            let mut op = name(node.get("op")?.as_str()?)?;
            let (left, right) = (node.get("left")?, node.get("right")?);
            // `a not in b` is `not (a in b)` with the `in`'s own text: told by the text
            // between the operands.
            if op == "in" {
                let (_, a) = extent(src, left)?;
                let (b, _) = extent(src, right)?;
                let between = src.get(a..b)?;
                if between.split_whitespace().next() == Some("not") {
                    op = "not in";
                }
            }
            Some((op.to_owned(), vec![left, right]))
        }
        "Compare" => {
            let mut operands = vec![node.get("expr")?];
            let mut names = Vec::new();
            for step in node.get("ops")?.as_array()? {
                names.push(name(step.get("op")?.as_str()?)?);
                operands.push(step.get("expr")?);
            }
            Some((names.join(","), operands))
        }
        _ => None,
    }
}

/// The function of a checked operator (minijinja's serialised `BinOpKind`).
fn function(op: &serde_json::Value) -> Option<&'static str> {
    match op.as_str()? {
        "Concat" => Some(CONCAT),
        "Add" => Some(ADD),
        "Mul" => Some(MUL),
        _ => None,
    }
}

/// A serialised `Spanned` node: `{"inner": [node, span]}`.
fn node_and_span(v: &serde_json::Value) -> Option<(&serde_json::Value, &serde_json::Value)> {
    let inner = v.get("inner")?.as_array()?;
    Some((inner.first()?, inner.get(1)?))
}

fn offsets(span: &serde_json::Value) -> Option<(usize, usize)> {
    let a = usize::try_from(span.get("start_offset")?.as_u64()?).ok()?;
    let b = usize::try_from(span.get("end_offset")?.as_u64()?).ok()?;
    Some((a, b))
}

/// The text of `source` an expression covers: the union of every span in it (a node's own
/// span can start after its operand, as a filter's starts at the filter's name and a call's
/// at `(`), but for the own spans that start at the token before the expression (`=`, `(`,
/// `,`): those of `if` expressions, binary operators and comparison chains, which their
/// operands cover, and that of a `not` made from `not in`, told from a real unary operator
/// by its text.
fn extent(source: &str, v: &serde_json::Value) -> Option<(usize, usize)> {
    let mut range: Option<(usize, usize)> = None;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Object(m) => {
                let own = match v.get("expr").and_then(|e| e.as_str()) {
                    Some("IfExpr" | "BinOp" | "Compare") => false,
                    Some("UnaryOp") => node_and_span(v)
                        .and_then(|(_, span)| offsets(span))
                        .and_then(|(a, _)| source.get(a..))
                        .is_some_and(|t| {
                            let t = t.trim_start();
                            t.starts_with(['-', '+'])
                                || t.strip_prefix("not").is_some_and(|rest| {
                                    !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_')
                                })
                        }),
                    _ => true,
                };
                if !own && let Some((node, _)) = node_and_span(v) {
                    stack.push(node);
                    continue;
                }
                if let Some((a, b)) = offsets(v) {
                    range = Some(range.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
                }
                stack.extend(m.values());
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    range
}

fn is_binop(v: &serde_json::Value) -> bool {
    v.get("expr").and_then(|e| e.as_str()) == Some("BinOp")
}

/// Finds every checked operator chain under `v`, and every expression whose value the
/// template keeps past its tag (`values.rs`).
fn collect(src: &str, v: &serde_json::Value, ops: &mut Vec<Op>) {
    match v {
        serde_json::Value::Object(m) => {
            kept_values(src, v, ops);
            if compared(src, v, ops) {
                return;
            }
            if is_binop(v)
                && let Some((node, _)) = node_and_span(v)
                && let Some(func) = node.get("op").and_then(function)
            {
                if let Some(op) = chain(src, v, func, ops) {
                    ops.push(op);
                }
                return;
            }
            for child in m.values() {
                collect(src, child, ops);
            }
        }
        serde_json::Value::Array(items) => {
            for child in items {
                collect(src, child, ops);
            }
        }
        _ => {}
    }
}

/// The checked values of the node `v` (not of its children): a `set`'s value (through
/// `store` with the namespaces when it sets attributes), each `with` value, a `for` loop's
/// list and each argument of a call.
#[inline(never)]
fn kept_values(src: &str, v: &serde_json::Value, ops: &mut Vec<Op>) {
    let Some((node, _)) = node_and_span(v) else {
        return;
    };
    let mut wrap = |e: Option<&serde_json::Value>, func: &'static str, extra: String| {
        if func != values::STORE && e.is_some_and(scalar) {
            return;
        }
        if let Some((a, b)) = e.and_then(|e| extent(src, e)) {
            ops.push(Op {
                start: a,
                end: b,
                func,
                args: vec![(a, b)],
                lead: String::new(),
                extra,
                wrap: true,
            });
        }
    };
    match v.get("stmt").and_then(|s| s.as_str()) {
        Some("Set") => {
            let mut targets = Vec::new();
            if let Some(t) = node.get("target") {
                namespaces(t, &mut targets);
            }
            if targets.is_empty() {
                wrap(node.get("expr"), values::VALUE, String::new());
            } else {
                let extra = targets.iter().fold(String::new(), |acc, t| acc + ", " + t);
                wrap(node.get("expr"), values::STORE, extra);
            }
        }
        Some("WithBlock") => {
            for pair in list_field(node, "assignments") {
                wrap(pair.get(1), values::VALUE, String::new());
            }
        }
        Some("ForLoop") => wrap(node.get("iter"), values::VALUE, String::new()),
        _ => {}
    }
    // Keys minijinja hashes or compares: a subscript, a dict literal's keys, and what
    // `loop.changed` compares with the value before (literals need no charge).
    let not_literal =
        |e: &&serde_json::Value| e.get("expr").and_then(|k| k.as_str()) != Some("Const");
    match v.get("expr").and_then(|e| e.as_str()) {
        Some("GetItem") => {
            if let Some(e) = node.get("subscript_expr").filter(not_literal) {
                wrap(Some(e), values::KEY, String::new());
            }
        }
        Some("Map") => {
            for e in list_field(node, "keys").filter(not_literal) {
                wrap(Some(e), values::KEY, String::new());
            }
        }
        Some("Call") if node.get("expr").and_then(dotted).as_deref() == Some("loop.changed") => {
            for arg in list_field(node, "args") {
                wrap(arg.get("Pos"), values::KEY, String::new());
            }
        }
        _ => {}
    }
    if v.get("expr").and_then(|e| e.as_str()) == Some("Call") {
        for arg in list_field(node, "args") {
            let e = arg
                .get("Pos")
                .or_else(|| arg.get("PosSplat"))
                .or_else(|| arg.get("KwargSplat"))
                .or_else(|| arg.get("Kwarg").and_then(|k| k.get(1)));
            wrap(e, values::VALUE, String::new());
        }
    }
}

/// Filters whose result is a string, a number or a bool.
const SCALAR_FILTERS: [&str; 20] = [
    "length",
    "count",
    "string",
    "tojson",
    "join",
    "trim",
    "upper",
    "lower",
    "title",
    "capitalize",
    "replace",
    "int",
    "float",
    "round",
    "abs",
    "e",
    "escape",
    "safe",
    "indent",
    "wordcount",
];

/// Whether the expression `e` always gives a string, a number or a bool (a literal, a
/// comparison, a test, `not`, `~`, arithmetic other than `+` and `*`, a filter of
/// [`SCALAR_FILTERS`]): such a value needs no check.
fn scalar(e: &serde_json::Value) -> bool {
    let Some((node, _)) = node_and_span(e) else {
        return false;
    };
    match e.get("expr").and_then(|k| k.as_str()) {
        Some("Const" | "Compare" | "UnaryOp" | "Test") => true,
        Some("BinOp") => node
            .get("op")
            .and_then(|o| o.as_str())
            .is_some_and(|op| !matches!(op, "Add" | "Mul" | "ScAnd" | "ScOr")),
        Some("Filter") => node
            .get("name")
            .and_then(|n| n.as_str())
            .is_some_and(|n| SCALAR_FILTERS.contains(&n)),
        _ => false,
    }
}

/// The items of the list field `key` of a syntax-tree node (none when it has no such list).
fn list_field<'a>(
    node: &'a serde_json::Value,
    key: &str,
) -> impl Iterator<Item = &'a serde_json::Value> {
    node.get(key)
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
}

/// The text of the namespace expressions an assignment target sets attributes of
/// (`ns.a` gives `ns`, `a, ns.inner.b` gives `ns.inner`): dotted names only, which hold no
/// operator, so their text is copied as it is.
fn namespaces(target: &serde_json::Value, out: &mut Vec<String>) {
    let Some((node, _)) = node_and_span(target) else {
        return;
    };
    match target.get("expr").and_then(|e| e.as_str()) {
        Some("GetAttr") => {
            if let Some(text) = node.get("expr").and_then(dotted) {
                out.push(text);
            }
        }
        Some("List") => {
            for item in list_field(node, "items") {
                namespaces(item, out);
            }
        }
        _ => {}
    }
}

/// The dotted name a `Var` or `GetAttr` chain spells (`ns`, `ns.inner`).
fn dotted(e: &serde_json::Value) -> Option<String> {
    let (node, _) = node_and_span(e)?;
    match e.get("expr")?.as_str()? {
        "Var" => Some(node.get("id")?.as_str()?.to_owned()),
        "GetAttr" => Some(format!(
            "{}.{}",
            dotted(node.get("expr")?)?,
            node.get("name")?.as_str()?
        )),
        _ => None,
    }
}

/// The chain of `func` rooted at the `BinOp` `v`: its left operands while they are the same
/// operator, then each right operand (the operands' own operators are collected too).
fn chain(src: &str, v: &serde_json::Value, func: &'static str, ops: &mut Vec<Op>) -> Option<Op> {
    let mut rights = Vec::new();
    let mut cur = v;
    let first = loop {
        let (node, _) = node_and_span(cur)?;
        rights.push(node.get("right")?);
        let left = node.get("left")?;
        let same = is_binop(left)
            && node_and_span(left)
                .and_then(|(n, _)| n.get("op"))
                .and_then(function)
                == Some(func);
        if !same {
            break left;
        }
        cur = left;
    };
    let mut args = vec![extent(src, first)?];
    collect(src, first, ops);
    for right in rights.into_iter().rev() {
        args.push(extent(src, right)?);
        collect(src, right, ops);
    }
    let (own_start, own_end) = node_and_span(v).and_then(|(_, s)| offsets(s))?;
    let start = args.iter().map(|a| a.0).fold(own_start, usize::min);
    let end = args.iter().map(|a| a.1).fold(own_end, usize::max);
    Some(Op {
        start,
        end,
        func,
        args,
        lead: String::new(),
        extra: String::new(),
        wrap: false,
    })
}

/// A plain environment that computes an operator exactly as the template's would, once the
/// operands have passed the checks, and its two expressions, compiled once.
static PLAIN: LazyLock<Environment<'static>> = LazyLock::new(Environment::new);
static PLAIN_ADD: LazyLock<Option<Expression<'static, 'static>>> =
    LazyLock::new(|| PLAIN.compile_expression("a + b").ok());
static PLAIN_MUL: LazyLock<Option<Expression<'static, 'static>>> =
    LazyLock::new(|| PLAIN.compile_expression("a * b").ok());

fn plain(
    expr: &LazyLock<Option<Expression<'static, 'static>>>,
    a: Value,
    b: Value,
) -> Result<Value, Error> {
    let expr = expr.as_ref().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidOperation,
            "an operator expression did not compile",
        )
    })?;
    expr.eval(minijinja::context! { a => a, b => b })
}

/// The `in` expressions, compiled once, that compute one once its work is charged
/// (`values::charge`); minijinja's containment test is not public.
static PLAIN_COMPARE: LazyLock<Vec<(&'static str, Option<Expression<'static, 'static>>)>> =
    LazyLock::new(|| {
        [("in", "a in b"), ("not in", "a not in b")]
            .into_iter()
            .map(|(op, src)| (op, PLAIN.compile_expression(src).ok()))
            .collect()
    });

/// `a op b` for one comparison operator, its work charged to the render's budget first
/// (comparing walks both values, `in` walks the list once per item), unless both are
/// numbers, bools or strings of at most 4 KiB, whose comparison costs next to nothing. A
/// chain `a < b == c` is rewritten into one call per pair, joined by `and`, which stops at
/// the first that fails as minijinja's chain does.
fn compare(op: &str, a: Value, b: Value) -> Result<Value, Error> {
    values::charge_pair(op, &a, &b)?;
    // As minijinja's VM computes them (with undefined values allowed, as in the renderer).
    let result = match op {
        "==" => a == b,
        "!=" => a != b,
        "<" => a < b,
        "<=" => a <= b,
        ">" => a > b,
        ">=" => a >= b,
        _ => {
            if let Some(n) = items(&b) {
                values::charge(op, &[&a], n)?;
            }
            let expr = PLAIN_COMPARE
                .iter()
                .find(|(o, _)| *o == op)
                .and_then(|(_, e)| e.as_ref())
                .ok_or_else(|| {
                    Error::new(ErrorKind::InvalidOperation, "a comparison did not compile")
                })?;
            return expr.eval(minijinja::context! { a => a, b => b });
        }
    };
    Ok(Value::from(result))
}

/// The number of items of a list, counted up to `MAX_ITEMS + 1` when it has no length.
pub(super) fn items(v: &Value) -> Option<usize> {
    match v.kind() {
        ValueKind::Seq | ValueKind::Iterable => Some(
            v.len()
                .unwrap_or_else(|| v.try_iter().map_or(0, |it| it.take(MAX_ITEMS + 1).count())),
        ),
        _ => None,
    }
}

pub(super) fn too_many(what: &str) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("{what}: the list would hold more than {MAX_ITEMS} items"),
    )
}

/// `a ~ b ~ ...`: the operands' text, built through the capped string.
fn concat(args: Rest<Value>) -> Result<Value, Error> {
    let mut out = Built::new("`~`");
    for v in args.iter() {
        match v.as_str() {
            Some(s) => out.push(s)?,
            None => out.write(format_args!("{v}"))?,
        }
    }
    Ok(Value::from(out.out))
}

/// `a + b + ...`, left to right.
fn add(args: Rest<Value>) -> Result<Value, Error> {
    let mut it = args.0.into_iter();
    let mut acc = it.next().unwrap_or_default();
    for b in it {
        // The common cases computed here, as minijinja computes them (two strings are
        // joined; two integers that fit in an `i64` are added, into an `i64`).
        if let (Some(x), Some(y)) = (acc.as_str(), b.as_str()) {
            if x.len().saturating_add(y.len()) > MAX_BUILT_LEN {
                return Err(too_long("`+`"));
            }
            if acc.kind() == ValueKind::String && b.kind() == ValueKind::String {
                acc = Value::from([x, y].concat());
                continue;
            }
        } else if let (Some(x), Some(y)) = (small_int(&acc), small_int(&b))
            && let Some(sum) = x.checked_add(y)
        {
            acc = Value::from(sum);
            continue;
        } else if let (Some(x), Some(y)) = (items(&acc), items(&b))
            && x.saturating_add(y) > MAX_ITEMS
        {
            return Err(too_many("`+`"));
        }
        acc = plain(&PLAIN_ADD, acc, b)?;
    }
    Ok(acc)
}

/// An integer operand that is an `i64` (not a float, a bool or a larger integer).
fn small_int(v: &Value) -> Option<i64> {
    if v.is_integer() && v.kind() == ValueKind::Number {
        i64::try_from(v.clone()).ok()
    } else {
        None
    }
}

/// `a * b * ...`, left to right.
fn mul(args: Rest<Value>) -> Result<Value, Error> {
    let mut it = args.0.into_iter();
    let mut acc = it.next().unwrap_or_default();
    for b in it {
        for (x, n) in [(&acc, &b), (&b, &acc)] {
            let Some(n) = n.as_usize() else { continue };
            if let Some(s) = x.as_str() {
                if s.len().saturating_mul(n) > MAX_BUILT_LEN {
                    return Err(too_long("`*`"));
                }
            } else if let Some(len) = items(x)
                && len.saturating_mul(n) > MAX_ITEMS
            {
                return Err(too_many("`*`"));
            }
        }
        acc = plain(&PLAIN_MUL, acc, b)?;
    }
    Ok(acc)
}
