//! Checked values: every value a template keeps past the tag that built it (a `set`, a
//! namespace attribute, a `with` name, a `for` loop's list, a call's arguments, which a
//! macro or a recursive loop receives) goes through [`value`] or [`store`] first, after a
//! rewrite in `ops.rs`. Both walk it and refuse it when it is nested deeper than
//! [`MAX_DEPTH`], or when walking it visits more than [`MAX_VISITS`] values; [`store`] also
//! refuses to put a namespace inside itself.
//!
//! Why: minijinja's values are immutable but for namespaces, and none of its walks over a
//! value (printing it, `tojson`, comparing, sorting, hashing it as a dict key, dropping it)
//! bounds its depth or the work it does.
//! - `{% set ns.a = x %}{% set x = [ns] %}` after `{% set ns.b = x %}` (the namespace holds
//!   a list that holds the namespace) made a cycle, and printing it recursed until the
//!   stack overflowed, which aborts the process.
//! - `{% set ns.l = [ns.l] %}` in a loop nested a list 200,000 deep in a few lines; when the
//!   render ended, dropping it overflowed the stack. Straight-line `set`s reach the same
//!   depth, a `[` at a time, within minijinja's 150-level bracket limit per expression.
//! - `{% set ns.l = [ns.l, ns.l] %}` in a loop shares one list twice per step: small in
//!   memory, but a comparison or a sort walks every path, 2^n of them after n steps.
//!
//! A value made inside one tag and not kept is at most minijinja's bracket limit deeper
//! than the checked values it was made from, so no value the renderer walks is deeper than
//! `MAX_DEPTH` plus a few hundred levels; 2,048 levels printed on a 2 MiB thread stack in an
//! unoptimised build, and 1,024 was the deepest every walk tried passed; the caps' test
//! (`kept_values_are_checked_for_cycles_depth_and_size`) walks a value at the cap nested 70
//! levels further, 80 macro calls deep, on a 2 MiB thread. A walk visits each path once, so the visit
//! count is the value's size with its shared parts counted each time they are reached: the
//! work any later walk of it does. The render's walks together are bounded too
//! ([`WALK_FACTOR`] times [`MAX_VISITS`]), so a template that keeps re-checking a large
//! value stops with an error instead of running for hours within its fuel.
//!
//! The same budget pays for comparing ([`charge`], [`charge_pair`]): the checked comparison
//! operators (`ops.rs`) and the comparing tests and filters (`capped.rs`) charge the work
//! their operands could take, a value reached or 64 bytes of a string, before minijinja
//! compares them.

use std::cell::{Cell, RefCell};

use minijinja::value::{Rest, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind};

/// Nesting a kept value may have: the messages a caller passes (four levels to a tool
/// call's arguments, whose JSON `serde_json` parses to at most 128 levels) fit with room.
pub(super) const MAX_DEPTH: usize = 256;

/// Values one check may visit (shared parts counted each time they are reached).
pub(super) const MAX_VISITS: usize = 1 << 21;

/// The render's checks together may visit this many times [`MAX_VISITS`].
pub(super) const WALK_FACTOR: usize = 8;

pub(super) const VALUE: &str = "__mm_value";
pub(super) const STORE: &str = "__mm_store";
pub(super) const KEY: &str = "__mm_key";

/// Registers the checks in `env`.
pub(super) fn register(env: &mut Environment<'_>) {
    env.add_function(VALUE, value);
    env.add_function(STORE, store);
    env.add_function(KEY, key);
}

thread_local! {
    /// Visits the current render's checks may still make.
    static WALK_BUDGET: Cell<usize> = const { Cell::new(usize::MAX) };
    /// The current render's messages, checked once when it starts: a template that loops
    /// over them (`{% for m in messages %}`) keeps the same object, which needs no walk.
    static CHECKED: RefCell<Value> = const { RefCell::new(Value::UNDEFINED) };
}

/// This thread's walk state for one render: the budget and the checked messages. Restores
/// the state before when dropped (a render inside a render's function keeps its own).
pub(super) struct WalkBudget {
    left: usize,
    checked: Value,
}

impl WalkBudget {
    /// Checks `messages` against a fresh budget ([`WALK_FACTOR`] times [`MAX_VISITS`]),
    /// then remembers them as checked.
    ///
    /// # Errors
    /// As [`check`], for the messages.
    pub(super) fn start(messages: &Value) -> Result<Self, Error> {
        let state = Self {
            left: WALK_BUDGET.replace(WALK_FACTOR * MAX_VISITS),
            checked: CHECKED.replace(Value::UNDEFINED),
        };
        check(messages, &[])?;
        CHECKED.set(messages.clone());
        Ok(state)
    }
}

impl Drop for WalkBudget {
    fn drop(&mut self) {
        WALK_BUDGET.set(self.left);
        CHECKED.set(std::mem::take(&mut self.checked));
    }
}

/// `v`, a key about to be hashed or compared by minijinja (a dict literal's key, a
/// subscript, `loop.changed`'s argument), once its work is charged ([`charge_pair`]).
fn key(v: Value) -> Result<Value, Error> {
    charge_pair("a key", &v, &Value::from(()))?;
    Ok(v)
}

/// `v`, once [`check`] has passed it.
fn value(v: Value) -> Result<Value, Error> {
    check(&v, &[])?;
    Ok(v)
}

/// `v`, about to be stored as an attribute of each namespace in `targets` (`{% set ns.a =
/// v %}`), once [`check`] has passed it and it holds none of them.
fn store(v: Value, targets: Rest<Value>) -> Result<Value, Error> {
    check(&v, &targets)?;
    Ok(v)
}

/// Walks `v` (with an explicit stack, so its depth costs no stack of the thread's) and
/// refuses it when it is nested deeper than [`MAX_DEPTH`], when the walk visits more than
/// [`MAX_VISITS`] values or more than the render has left, or when `v` is or holds one of
/// `targets` (objects are compared by identity, as minijinja's `sameas` test does).
pub(super) fn check(v: &Value, targets: &[Value]) -> Result<(), Error> {
    // The messages hold no namespace: only a depth and size check, done when the render
    // started.
    if v.as_object().is_some() && CHECKED.with_borrow(|c| minijinja::tests::is_sameas(v, c)) {
        return Ok(());
    }
    let left = WALK_BUDGET.get();
    let limit = MAX_VISITS.min(left);
    let mut visits = 0usize;
    let mut stack: Vec<(Value, usize)> = Vec::new();
    let mut visit = |v: Value, depth: usize, stack: &mut Vec<(Value, usize)>| {
        visits += 1;
        if visits > limit {
            return Err(if limit == left {
                refused(format!(
                    "the render's checks of the values it keeps and its comparisons used \
                     up its budget of {WALK_FACTOR} times {MAX_VISITS} units"
                ))
            } else {
                refused(format!(
                    "a value the template keeps is larger than {MAX_VISITS} values \
                     (counting each shared part every time it is reached)"
                ))
            });
        }
        if let Some(obj) = v.as_object() {
            if targets.iter().any(|t| {
                t.as_object()
                    .is_some_and(|_| minijinja::tests::is_sameas(&v, t))
            }) {
                return Err(refused(
                    "a namespace attribute would hold the namespace itself (a cycle)".into(),
                ));
            }
            if matches!(
                v.kind(),
                ValueKind::Seq | ValueKind::Map | ValueKind::Iterable
            ) && obj.enumerator_len() != Some(0)
            {
                if depth >= MAX_DEPTH {
                    return Err(refused(format!(
                        "a value the template keeps is nested more than {MAX_DEPTH} levels deep"
                    )));
                }
                stack.push((v, depth + 1));
            }
        }
        Ok(())
    };
    visit(v.clone(), 0, &mut stack)?;
    while let Some((v, depth)) = stack.pop() {
        let Some(obj) = v.as_object() else { continue };
        if v.kind() == ValueKind::Map {
            if let Some(pairs) = obj.try_iter_pairs() {
                for (k, item) in pairs {
                    visit(k, depth, &mut stack)?;
                    visit(item, depth, &mut stack)?;
                }
            }
        } else if let Some(items) = obj.try_iter() {
            for item in items {
                visit(item, depth, &mut stack)?;
            }
        }
    }
    WALK_BUDGET.set(left - visits);
    Ok(())
}

fn refused(what: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, what)
}

/// Bytes of string that count as one unit of comparing work (a value visited is one).
const BYTES_PER_UNIT: usize = 64;

/// The work units of walking or comparing `v`: one per value reached (shared parts each
/// time), plus one per [`BYTES_PER_UNIT`] bytes of each string reached; `None` once past
/// `limit`, where counting stops.
fn work(v: &Value, limit: usize) -> Option<usize> {
    let mut units = 0usize;
    let mut stack = vec![v.clone()];
    while let Some(v) = stack.pop() {
        units = units.saturating_add(1 + v.as_str().map_or(0, |s| s.len() / BYTES_PER_UNIT));
        if units > limit {
            return None;
        }
        let Some(obj) = v.as_object() else { continue };
        match v.kind() {
            ValueKind::Map => {
                if let Some(pairs) = obj.try_iter_pairs() {
                    for (k, item) in pairs {
                        stack.push(k);
                        stack.push(item);
                    }
                }
            }
            ValueKind::Seq | ValueKind::Iterable => {
                if let Some(items) = obj.try_iter() {
                    stack.extend(items);
                }
            }
            _ => {}
        }
    }
    Some(units)
}

/// Charges `what`'s work to the render's budget: the work of `values`, each counted
/// `times` times (a sort compares each item about `log2(n)` times). Refuses it, charging
/// nothing, when the budget cannot cover it: minijinja's comparisons, sorts and
/// deduplications are not counted by fuel, and a list holding one 100 kB string a million
/// times made one `unique` take 10 s and one `sort` minutes.
pub(super) fn charge(what: &str, values: &[&Value], times: usize) -> Result<(), Error> {
    let left = WALK_BUDGET.get();
    let times = times.max(1);
    let mut total = 0usize;
    for v in values {
        let units = work(v, left / times)
            .and_then(|u| u.checked_mul(times))
            .and_then(|u| total.checked_add(u))
            .filter(|&t| t <= left);
        match units {
            Some(t) => total = t,
            None => {
                return Err(refused(format!(
                    "{what}: comparing these values would pass the render's budget of \
                     {WALK_FACTOR} times {MAX_VISITS} units (a value reached, or \
                     {BYTES_PER_UNIT} bytes of a string)"
                )));
            }
        }
    }
    WALK_BUDGET.set(left - total);
    Ok(())
}

/// Charges one comparison of `a` and `b` (`what`), unless both are numbers, bools or
/// strings of at most 4 KiB, whose comparison costs next to nothing.
pub(super) fn charge_pair(what: &str, a: &Value, b: &Value) -> Result<(), Error> {
    let small = |v: &Value| v.as_object().is_none() && v.as_str().is_none_or(|s| s.len() <= 4096);
    if small(a) && small(b) {
        return Ok(());
    }
    charge(what, &[a, b], 1)
}
