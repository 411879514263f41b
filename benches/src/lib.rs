//! Shared helpers for the criterion benches in `benches/`.

/// The churn loop of the `track_probe_*` examples, compiled in this library crate so that the
/// global allocator is reached through the `__rust_alloc` symbol (as from std and every other
/// crate) rather than inlined into the loop.
pub fn churn_extern(iters: usize) -> usize {
    const SLOTS: usize = 64;
    let mut slots: [Box<[u8]>; SLOTS] = std::array::from_fn(|_| Box::default());
    for i in 0..iters {
        let x = std::hint::black_box(i as u8);
        slots[i % SLOTS] = vec![x; 16 + (i % 8) * 24].into_boxed_slice();
    }
    std::hint::black_box(&slots);
    slots.iter().map(|s| s.len()).sum()
}
