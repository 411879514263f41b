//! Property test: random sequences of operations on one thread against a reference model
//! written independently of the crate (a list of held sizes and the level rule spelled out
//! from the documentation). Checks usage, refusals, and the exact list of events.

use std::sync::{Arc, Mutex};

use mm_budget::{BudgetConfig, MemoryBudget, PressureEvent, PressureLevel, Reservation};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Reserve(u64),
    Force(u64),
    Drop(usize),
    Grow(usize, u64),
    Shrink(usize, u64),
    Split(usize, u64),
    Merge(usize, usize),
}

fn op(max: u64) -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..=max).prop_map(Op::Reserve),
        1 => (0..=max / 4).prop_map(Op::Force),
        3 => any::<usize>().prop_map(Op::Drop),
        2 => (any::<usize>(), 0..=max).prop_map(|(i, n)| Op::Grow(i, n)),
        2 => (any::<usize>(), 0..=max).prop_map(|(i, n)| Op::Shrink(i, n)),
        1 => (any::<usize>(), 0..=max).prop_map(|(i, n)| Op::Split(i, n)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Op::Merge(i, j)),
    ]
}

fn config() -> impl Strategy<Value = BudgetConfig> {
    (1u64..=1000, 1u8..=98)
        .prop_flat_map(|(limit, w)| (Just(limit), Just(w), (w + 1)..=100, 0..w))
        .prop_map(|(limit, w, c, h)| {
            BudgetConfig::new(limit)
                .with_warning_percent(w)
                .with_critical_percent(c)
                .with_hysteresis_percent(h)
        })
}

/// The documented rule, restated: enter a level at `ceil(limit * p / 100)`, leave it below
/// `ceil(limit * (p - h) / 100)`.
fn reference_level(c: &BudgetConfig, prev: PressureLevel, used: u64) -> PressureLevel {
    let at = |p: u8| (u128::from(c.limit()) * u128::from(p)).div_ceil(100) as u64;
    let (w, cr) = (at(c.warning_percent()), at(c.critical_percent()));
    let h = c.hysteresis_percent();
    let (wr, crr) = (at(c.warning_percent() - h), at(c.critical_percent() - h));
    use PressureLevel::*;
    let up = if used >= cr {
        Critical
    } else if used >= w {
        Warning
    } else {
        Normal
    };
    let down = if used >= crr {
        Critical
    } else if used >= wr {
        Warning
    } else {
        Normal
    };
    if up > prev {
        up
    } else if down < prev {
        down
    } else {
        prev
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn matches_reference_model(
        c in config(),
        ops in prop::collection::vec(op(1200), 1..60),
    ) {
        let budget = MemoryBudget::new(c).unwrap();
        let events = Arc::new(Mutex::new(Vec::<PressureEvent>::new()));
        let e = Arc::clone(&events);
        budget.subscribe(move |ev| e.lock().unwrap().push(*ev));

        let mut held: Vec<Reservation> = Vec::new();
        let mut model: Vec<u64> = Vec::new();
        let mut level = PressureLevel::Normal;
        let mut expected: Vec<(PressureLevel, PressureLevel, u64)> = Vec::new();
        let pick = |i: usize, len: usize| (len > 0).then(|| i % len);

        for op in ops {
            let used: u64 = model.iter().sum();
            match op {
                Op::Reserve(n) => {
                    // 0 bytes always fit, even over the limit (after a force_reserve).
                    let fits = n == 0 || used + n <= c.limit();
                    let r = budget.try_reserve(n);
                    prop_assert_eq!(r.is_ok(), fits, "reserve {} at {}", n, used);
                    if let Ok(r) = r { held.push(r); model.push(n); }
                }
                Op::Force(n) => {
                    held.push(budget.force_reserve(n).unwrap());
                    model.push(n);
                }
                Op::Drop(i) => if let Some(i) = pick(i, held.len()) {
                    drop(held.swap_remove(i));
                    model.swap_remove(i);
                },
                Op::Grow(i, n) => if let Some(i) = pick(i, held.len()) {
                    let fits = n == 0 || used + n <= c.limit();
                    prop_assert_eq!(held[i].try_grow(n).is_ok(), fits);
                    if fits { model[i] += n; }
                },
                Op::Shrink(i, n) => if let Some(i) = pick(i, held.len()) {
                    let released = held[i].shrink(n);
                    prop_assert_eq!(released, n.min(model[i]));
                    model[i] -= released;
                },
                Op::Split(i, n) => if let Some(i) = pick(i, held.len()) {
                    match held[i].split(n) {
                        Ok(part) => {
                            prop_assert!(n <= model[i]);
                            model[i] -= n;
                            held.push(part);
                            model.push(n);
                        }
                        Err(_) => prop_assert!(n > model[i]),
                    }
                },
                Op::Merge(i, j) => if let (Some(i), Some(j)) = (pick(i, held.len()), pick(j, held.len()))
                    && i != j
                {
                    let other = held.swap_remove(j);
                    let bytes = model.swap_remove(j);
                    // swap_remove moved the last element into j; find i again.
                    let i = if i == held.len() { j } else { i };
                    held[i].merge(other).unwrap();
                    model[i] += bytes;
                },
            }
            let used: u64 = model.iter().sum();
            prop_assert_eq!(budget.used(), used);
            for (r, m) in held.iter().zip(&model) {
                prop_assert_eq!(r.bytes(), *m);
            }
            let next = reference_level(&c, level, used);
            if next != level {
                expected.push((level, next, used));
                level = next;
            }
            prop_assert_eq!(budget.level(), level);
        }
        let seen: Vec<_> = events.lock().unwrap().iter().map(|e| (e.previous, e.level, e.used)).collect();
        prop_assert_eq!(seen, expected);
        drop(held);
        prop_assert_eq!(budget.used(), 0);
    }
}
