//! Capped builtins: minijinja's filters and `pycompat`'s string methods that can build a
//! result many times the size of their input, registered in place of the originals. Each
//! one bounds its result before it builds it (or, for the ones whose result is at most a
//! few times their input, checks it after), refuses one past [`MAX_BUILT_LEN`] bytes or
//! [`MAX_ITEMS`] items with an error that names it, and otherwise returns what minijinja's
//! own returns (most of them call it).
//!
//! Why each is here: `batch(n)` and `slice(n)` reserve `n` items up front (`10**12` aborts
//! the process); `replace`, `join`, `format` (a width or precision of `10**9`) and the
//! printing ones (`string`, `pprint`, `escape`) multiply their input; `upper`, `lower`,
//! `title` and `capitalize` can triple it, and a chain of them would compound without the
//! check; `list` and `chain` collect or concatenate lists of any length. A value that is
//! not a string is printed (through the capped [`Built`]) before a string filter takes
//! it, since a list that holds one string many times prints as many copies of it.
//! `"abc".count("")` looped forever in `pycompat`; here it counts as Python does (4).
//! `split`, `lines` and `pycompat`'s `str.split` and `str.splitlines` are bounded by their
//! input, but a 16 MiB string can split into 8 million strings (about 25 times its size):
//! they count their pieces first and refuse more than [`MAX_ITEMS`].

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;

use minijinja::value::{Kwargs, Rest, StringInput, Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, FormatStyle, State, filters, tests};

use super::ops::{MAX_ITEMS, items, too_many};
use super::{Built, MAX_BUILT_LEN, too_long, values};

/// Registers the capped builtins in `env`, over minijinja's and `pycompat`'s.
pub(super) fn register(env: &mut Environment<'_>) {
    env.add_filter("batch", counted("batch", filters::batch));
    env.add_filter("slice", counted("slice", filters::slice));
    env.add_filter("list", list);
    env.add_filter("chain", chain);
    env.add_filter("replace", replace);
    env.add_filter("join", join);
    env.add_filter("format", format);
    env.add_filter("string", string);
    env.add_filter("pprint", pprint);
    env.add_filter("escape", escape);
    env.add_filter("e", escape);
    env.add_filter("trim", trim);
    env.add_filter("upper", case("upper", filters::upper));
    env.add_filter("lower", case("lower", filters::lower));
    env.add_filter("capitalize", case("capitalize", filters::capitalize));
    env.add_filter("title", |state: &State<'_, '_>, v: &Value| {
        let s = input(state, "title", v)?;
        checked(
            "title",
            Value::from(filters::title(Cow::Borrowed(s.as_str()))),
        )
    });
    env.add_filter("safe", |state: &State<'_, '_>, v: &Value| {
        let s = input(state, "safe", v)?;
        Ok(filters::safe(s.as_str().to_owned()))
    });
    env.add_test(
        "startingwith",
        |state: &State<'_, '_>, v: &Value, prefix: &Value| {
            let (v, prefix) = (
                input(state, "startingwith", v)?,
                input(state, "startingwith", prefix)?,
            );
            Ok::<_, Error>(v.as_str().starts_with(prefix.as_str()))
        },
    );
    env.add_test(
        "endingwith",
        |state: &State<'_, '_>, v: &Value, suffix: &Value| {
            let (v, suffix) = (
                input(state, "endingwith", v)?,
                input(state, "endingwith", suffix)?,
            );
            Ok::<_, Error>(v.as_str().ends_with(suffix.as_str()))
        },
    );
    env.add_filter(
        "split",
        |value: &Value, sep: Option<Arc<str>>, maxsplits: Option<i64>| {
            if let Some(s) = value.as_str() {
                split_pieces("split", s, sep.as_deref(), maxsplits)?;
            }
            filters::split(value, sep, maxsplits)
        },
    );
    env.add_filter("lines", |value: &Value| {
        if let Some(s) = value.as_str() {
            line_pieces("lines", s)?;
        }
        filters::lines(value)
    });
    // Comparing filters and tests: their comparisons charged to the render's budget.
    env.add_filter("sort", |state: &State<'_, '_>, v: Value, kwargs: Kwargs| {
        sorting("sort", &v)?;
        filters::sort(state, v, kwargs)
    });
    env.add_filter(
        "unique",
        |state: &State<'_, '_>, v: Value, kwargs: Kwargs| {
            sorting("unique", &v)?;
            filters::unique(state, v, kwargs)
        },
    );
    env.add_filter("dictsort", |v: &Value, kwargs: Kwargs| {
        sorting("dictsort", v)?;
        filters::dictsort(v, kwargs)
    });
    env.add_filter(
        "groupby",
        |v: Value, attribute: Option<&str>, kwargs: Kwargs| {
            sorting("groupby", &v)?;
            filters::groupby(v, attribute, kwargs)
        },
    );
    env.add_filter("min", |state: &State<'_, '_>, v: Value| {
        values::charge("min", &[&v], 1)?;
        filters::min(state, v)
    });
    env.add_filter("max", |state: &State<'_, '_>, v: Value| {
        values::charge("max", &[&v], 1)?;
        filters::max(state, v)
    });
    for (names, f) in [
        (
            &["eq", "equalto", "=="][..],
            tests::is_eq as fn(&Value, &Value) -> bool,
        ),
        (&["ne", "!="], tests::is_ne),
        (&["lt", "lessthan", "<"], tests::is_lt),
        (&["le", "<="], tests::is_le),
        (&["gt", "greaterthan", ">"], tests::is_gt),
        (&["ge", ">="], tests::is_ge),
    ] {
        for &name in names {
            env.add_test(name, move |a: &Value, b: &Value| {
                values::charge_pair(name, a, b)?;
                Ok::<_, Error>(f(a, b))
            });
        }
    }
    env.add_test("in", |state: &State<'_, '_>, a: &Value, b: &Value| {
        values::charge_pair("in", a, b)?;
        if let Some(n) = items(b) {
            values::charge("in", &[a], n)?;
        }
        tests::is_in(state, a, b)
    });
    env.set_unknown_method_callback(method);
}

/// Charges a sort of `v` (`what`): each item compared about `log2(n) + 1` times.
fn sorting(what: &str, v: &Value) -> Result<(), Error> {
    let n = items(v).or_else(|| v.len()).unwrap_or(1);
    values::charge(what, &[v], (usize::BITS - n.leading_zeros()) as usize + 1)
}

/// Refuses `s.split(sep, maxsplits)` (`what`) when it would make more than [`MAX_ITEMS`]
/// strings: counted before any is made (a 16 MiB string of `"a "` splits into 8 million
/// strings, about 25 times its size).
fn split_pieces(
    what: &str,
    s: &str,
    sep: Option<&str>,
    maxsplits: Option<i64>,
) -> Result<(), Error> {
    let found = match sep {
        Some(sep) => occurrences(s, sep).saturating_add(1),
        None => s.split_whitespace().take(MAX_ITEMS + 1).count(),
    };
    let most = maxsplits
        .and_then(|n| usize::try_from(n).ok())
        .map_or(usize::MAX, |n| n.saturating_add(1));
    if found.min(most) > MAX_ITEMS {
        return Err(too_many(what));
    }
    Ok(())
}

/// Refuses `s`'s lines (`what`) when there are more than [`MAX_ITEMS`] of them.
fn line_pieces(what: &str, s: &str) -> Result<(), Error> {
    if s.lines().take(MAX_ITEMS + 1).count() > MAX_ITEMS {
        return Err(too_many(what));
    }
    Ok(())
}

/// Counts the bytes written to it, failing once they pass [`MAX_BUILT_LEN`].
struct Count(usize);

impl std::fmt::Write for Count {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0 += s.len();
        if self.0 > MAX_BUILT_LEN {
            return Err(std::fmt::Error);
        }
        Ok(())
    }
}

/// The length of `v` printed (`{v}`, as minijinja prints it), or `what`'s error when that
/// passes [`MAX_BUILT_LEN`]; counting stops there, nothing is allocated.
fn printed_len(what: &str, v: &Value) -> Result<usize, Error> {
    if let Some(s) = v.as_str() {
        return Ok(s.len());
    }
    let mut n = Count(0);
    write!(n, "{v}").map_err(|_| too_long(what))?;
    Ok(n.0)
}

/// `v` as the string argument of `what`, as minijinja makes it (a value that is not a
/// string is printed), refused when printing it would pass [`MAX_BUILT_LEN`].
fn input<'a>(state: &State<'_, '_>, what: &str, v: &'a Value) -> Result<StringInput<'a>, Error> {
    printed_len(what, v)?;
    StringInput::new(state, v)
}

/// `v`, a string at most [`MAX_BUILT_LEN`] bytes long, or `what`'s error.
fn checked(what: &str, v: Value) -> Result<Value, Error> {
    match v.as_str() {
        Some(s) if s.len() > MAX_BUILT_LEN => Err(too_long(what)),
        _ => Ok(v),
    }
}

/// `batch(count, fill)` or `slice(count, fill)` (`f`), refused past [`MAX_ITEMS`] items
/// per batch or slices before minijinja reserves them.
fn counted(
    what: &'static str,
    f: fn(&State<'_, '_>, Value, usize, Option<Value>) -> Result<Value, Error>,
) -> impl Fn(&State<'_, '_>, Value, usize, Option<Value>) -> Result<Value, Error> {
    move |state, value, count, fill| {
        if count > MAX_ITEMS {
            return Err(too_many(what));
        }
        f(state, value, count, fill)
    }
}

/// A case filter `f` (`upper`, `lower`, `capitalize`) of the value printed through the cap,
/// its result (at most 3 times as long) checked.
fn case(
    what: &'static str,
    f: fn(StringInput<'_>) -> Value,
) -> impl Fn(&State<'_, '_>, &Value) -> Result<Value, Error> {
    move |state, v| checked(what, f(input(state, what, v)?))
}

/// `list`, refused past [`MAX_ITEMS`] items (a string's characters counted too).
fn list(state: &State<'_, '_>, value: Value) -> Result<Value, Error> {
    let n = match value.as_str() {
        Some(s) if value.kind() == ValueKind::String => Some(s.chars().count()),
        _ => items(&value),
    };
    if n.is_some_and(|n| n > MAX_ITEMS) {
        return Err(too_many("list"));
    }
    filters::list(state, value)
}

/// `chain(...)`, refused when the lists together pass [`MAX_ITEMS`] items.
fn chain(state: &State<'_, '_>, value: Value, others: Rest<Value>) -> Result<Value, Error> {
    let mut total = 0usize;
    for v in std::iter::once(&value).chain(others.iter()) {
        total = total.saturating_add(items(v).unwrap_or(0));
    }
    if total > MAX_ITEMS {
        return Err(too_many("chain"));
    }
    filters::chain(state, value, others)
}

/// The length of `s` with `n` matches of `from` replaced by `to`, where `n` is every match
/// (the empty string matches at each character boundary) or at most `limit` of them.
fn replaced_len(s: &str, from: &str, to: usize, limit: Option<usize>) -> usize {
    let n = occurrences(s, from);
    let n = limit.map_or(n, |l| n.min(l));
    (s.len() - n * from.len()).saturating_add(n.saturating_mul(to))
}

/// Non-overlapping matches of `pat` in `s`, as Python's `str.count` counts them: the empty
/// string matches at each character boundary.
fn occurrences(s: &str, pat: &str) -> usize {
    if pat.is_empty() {
        s.chars().count() + 1
    } else {
        s.matches(pat).count()
    }
}

/// The `replace` filter, refused when its result would pass [`MAX_BUILT_LEN`].
fn replace(state: &State<'_, '_>, value: &Value, from: &Value, to: &Value) -> Result<Value, Error> {
    let (value, from, to) = (
        input(state, "replace", value)?,
        input(state, "replace", from)?,
        input(state, "replace", to)?,
    );
    // Inside `{% autoescape %}` with a safe operand, minijinja replaces in the escaped
    // text, at most 6 times as long (`'` is `&#x27;`).
    let escaped = state.auto_escape() != AutoEscape::None
        && (value.is_safe() || from.is_safe() || to.is_safe());
    let k = if escaped { 6 } else { 1 };
    let len = replaced_len(value.as_str(), from.as_str(), to.as_str().len() * k, None);
    if len.saturating_mul(k) > MAX_BUILT_LEN {
        return Err(too_long("replace"));
    }
    checked("replace", filters::replace(state, value, from, to)?)
}

/// Items of `v`, joined by `sep`, as minijinja's `join` writes them outside `{% autoescape
/// %}` and `pycompat`'s `str.join` always (a string as it is, anything else printed).
fn join_plain(what: &'static str, v: &Value, sep: &str) -> Result<String, Error> {
    let iter = v.try_iter().map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("cannot join value of type {}", v.kind()),
        )
        .with_source(e)
    })?;
    let mut out = Built::new(what);
    for (i, item) in iter.enumerate() {
        if i > 0 {
            out.push(sep)?;
        }
        match item.as_str() {
            Some(s) => out.push(s)?,
            None => out.write(format_args!("{item}"))?,
        }
    }
    Ok(out.out)
}

/// The `join` filter, built through the capped string.
fn join(state: &State<'_, '_>, value: &Value, sep: Option<Value>) -> Result<Value, Error> {
    let sep_input = match &sep {
        Some(s) => Some(input(state, "join", s)?),
        None => None,
    };
    let plain = join_plain("join", value, sep_input.as_ref().map_or("", |s| s.as_str()))?;
    if state.auto_escape() == AutoEscape::None {
        return Ok(Value::from(plain));
    }
    // Escaped, the result is at most 6 times the plain one: built by minijinja, checked.
    if plain.len().saturating_mul(6) > MAX_BUILT_LEN {
        return Err(too_long("join"));
    }
    checked("join", filters::join(state, value, sep_input)?)
}

/// A bound on what `fmt` formats `args` into (`style` is `%` or `{}` formatting), refused
/// past [`MAX_BUILT_LEN`]. A field prints one argument (at most its printed length, and a
/// number at most a few hundred bytes) padded to its width, or its precision's digits:
/// the bound adds each argument once for the fields that take the next one, the longest
/// argument for each field that names one (`%(key)s`, `{0}`, `{name}`, which can repeat),
/// every digit run of a field's spec four times (a width of a 4-byte fill character) and
/// 512 bytes per field.
fn check_format(what: &str, style: FormatStyle, fmt: &str, args: &[Value]) -> Result<(), Error> {
    let mut total = 0usize;
    let mut widest = 0usize;
    for a in args {
        let n = printed_len(what, a)?;
        total = total.saturating_add(n);
        widest = widest.max(n);
    }
    let (mut fields, mut named, mut digits) = (0usize, 0usize, 0usize);
    for (is_named, spec) in specs(style, fmt) {
        fields += 1;
        named += usize::from(is_named);
        for run in spec.split(|c: char| !c.is_ascii_digit()) {
            if !run.is_empty() {
                digits = digits.saturating_add(run.parse::<usize>().unwrap_or(usize::MAX));
            }
        }
    }
    let bound = fmt
        .len()
        .saturating_add(total)
        .saturating_add(named.saturating_mul(widest))
        .saturating_add(digits.saturating_mul(4))
        .saturating_add(fields.saturating_mul(512));
    if bound > MAX_BUILT_LEN {
        return Err(too_long(what));
    }
    Ok(())
}

/// Each field of `fmt`: whether it names its argument (`%(key)s`, `{0}`, `{name}`), and
/// the text of its spec, where its widths and precisions are (after `%` up to the
/// conversion letter, past a `(key)`; or between `{` and `}`). Digits in the literal text
/// around the fields are not read.
fn specs(style: FormatStyle, fmt: &str) -> impl Iterator<Item = (bool, &str)> {
    let (open, close): (char, fn(char) -> bool) = match style {
        FormatStyle::Printf => ('%', |c: char| c.is_ascii_alphabetic() || c == '%'),
        _ => ('{', |c: char| c == '}'),
    };
    fmt.match_indices(open).map(move |(i, _)| {
        let mut rest = &fmt[i + 1..];
        let named = if open == '%' {
            rest.starts_with('(')
        } else {
            !(rest.starts_with('}') || rest.starts_with(':'))
        };
        if open == '%'
            && named
            && let Some(k) = rest.find(')')
        {
            rest = &rest[k + 1..];
        }
        (named, rest.find(close).map_or(rest, |k| &rest[..k]))
    })
}

/// The `format` filter (`%` formatting), refused when its bound passes the cap.
fn format(state: &State<'_, '_>, fmt: &Value, args: Rest<Value>) -> Result<Value, Error> {
    if let Some(s) = fmt.as_str() {
        check_format("format", FormatStyle::Printf, s, &args)?;
        // A safe format string escapes the arguments first (at most 6 times as long).
        if fmt.is_safe() {
            let total = args.iter().try_fold(s.len(), |t, a| {
                printed_len("format", a).map(|n| t.saturating_add(n.saturating_mul(6)))
            })?;
            if total > MAX_BUILT_LEN {
                return Err(too_long("format"));
            }
        }
    }
    checked("format", filters::format(state, fmt, args)?)
}

/// The `string` filter, printed through the capped string.
fn string(state: &State<'_, '_>, value: &Value) -> Result<Value, Error> {
    printed_len("string", value)?;
    filters::string(state, value)
}

/// The `pprint` filter, printed through the capped string.
fn pprint(value: &Value) -> Result<Value, Error> {
    let mut out = Built::new("pprint");
    out.write(format_args!("{value:#?}"))?;
    Ok(Value::from(out.out))
}

/// The `escape` filter (`e`): the value printed through the capped string, the escaped
/// result (at most 6 times as long) checked.
fn escape(state: &State<'_, '_>, value: &Value) -> Result<Value, Error> {
    if !value.is_safe() {
        printed_len("escape", value)?;
    }
    checked("escape", filters::escape(state, value)?)
}

/// The `trim` filter, its value printed through the capped string.
fn trim(state: &State<'_, '_>, value: &Value, chars: Option<Value>) -> Result<Value, Error> {
    let s = input(state, "trim", value)?;
    let chars = match &chars {
        Some(c) => Some(Cow::Owned(input(state, "trim", c)?.as_str().to_owned())),
        None => None,
    };
    Ok(filters::trim(s, chars))
}

/// `pycompat`'s methods, with the string methods that build (`replace`, `join`, `format`,
/// the case changes) capped and `count` counting the empty string as Python does.
fn method(
    state: &State<'_, '_>,
    value: &Value,
    name: &str,
    args: &[Value],
) -> Result<Value, Error> {
    let contrib = minijinja_contrib::pycompat::unknown_method_callback;
    let Some(s) = value.as_str().filter(|_| value.kind() == ValueKind::String) else {
        // A list's `count(x)` and `index(x)` compare `x` with every item.
        if matches!(name, "count" | "index")
            && let (Some(n), Some(x)) = (items(value), args.first())
        {
            values::charge(name, &[value], 1)?;
            values::charge(name, &[x], n)?;
        }
        return contrib(state, value, name, args);
    };
    match name {
        "count" => {
            let (what,): (&str,) = minijinja::value::from_args(args)?;
            Ok(Value::from(occurrences(s, what)))
        }
        "replace" => {
            let (old, new, count): (&str, &str, Option<i32>) = minijinja::value::from_args(args)?;
            let limit = count.and_then(|c| usize::try_from(c).ok());
            if replaced_len(s, old, new.len(), limit) > MAX_BUILT_LEN {
                return Err(too_long("str.replace"));
            }
            contrib(state, value, name, args)
        }
        "join" => {
            let (values,): (&Value,) = minijinja::value::from_args(args)?;
            join_plain("str.join", values, s).map(Value::from)
        }
        "format" => {
            check_format("str.format", FormatStyle::StrFormat, s, args)?;
            checked("str.format", contrib(state, value, name, args)?)
        }
        "upper" | "lower" | "title" | "capitalize" => {
            checked(name, contrib(state, value, name, args)?)
        }
        "split" => {
            let (sep, maxsplits): (Option<&str>, Option<i64>) = minijinja::value::from_args(args)?;
            split_pieces("str.split", s, sep, maxsplits)?;
            contrib(state, value, name, args)
        }
        "splitlines" => {
            line_pieces("str.splitlines", s)?;
            contrib(state, value, name, args)
        }
        _ => contrib(state, value, name, args),
    }
}
