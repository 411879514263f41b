//! `RequestArena` and `Generational` behaviour.

use mm_arena::{ArenaConfig, ArenaError, Generational, RequestArena};

fn assert_send<T: Send>() {}

#[test]
fn request_arena_is_send_and_resets() {
    assert_send::<RequestArena>();
    let mut r = RequestArena::new(ArenaConfig::new().with_initial_capacity(4096)).unwrap();
    assert!(r.stats().retained_bytes >= 4096);
    let p = r.arena().alloc_slice_copy(&[1u32, 2, 3]).unwrap().as_ptr() as usize;
    assert!(r.stats().in_use_bytes >= 12);
    r.reset();
    assert_eq!(r.stats().in_use_bytes, 0);
    let q = r.arena().alloc_slice_copy(&[4u32, 5, 6]).unwrap().as_ptr() as usize;
    assert_eq!(p, q, "memory reused after reset");
    assert_eq!(r.stats().resets, 1);
    assert_eq!(r.stats().chunk_allocations, 0);
    r.trim();
    assert_eq!(r.stats().retained_bytes, 0);
}

#[test]
fn request_arena_moves_to_another_thread() {
    let r = RequestArena::new(ArenaConfig::new()).unwrap();
    let len = std::thread::spawn(move || {
        let s = r.arena().alloc_str("moved").unwrap().len();
        (s, r.stats().high_water_bytes)
    })
    .join()
    .unwrap();
    assert_eq!(len.0, 5);
    assert!(len.1 >= 5);
}

#[test]
fn request_arena_limit_and_bad_config() {
    assert_eq!(
        RequestArena::new(ArenaConfig::new().with_allocation_limit(Some(0))).unwrap_err(),
        ArenaError::ZeroLimit
    );
    let r = RequestArena::new(ArenaConfig::new().with_allocation_limit(Some(16 * 1024))).unwrap();
    let err = r.arena().alloc_slice_fill_copy(1 << 20, 0u8).unwrap_err();
    assert!(matches!(
        err,
        ArenaError::LimitExceeded { limit: 16384, .. }
    ));
    // The message tells the reader what to do.
    assert!(err.to_string().contains("raise the limit"));
}

#[test]
fn stale_handles_get_none_even_after_slot_reuse() {
    let mut g = Generational::new();
    let a = g.insert(String::from("session a")).unwrap();
    assert_eq!(g.remove(a).as_deref(), Some("session a"));
    let b = g.insert(String::from("session b")).unwrap();
    assert_ne!(a, b);
    assert_eq!(g.get(a), None);
    assert_eq!(g.get_mut(a), None);
    assert!(!g.contains(a));
    assert_eq!(g.remove(a), None);
    assert_eq!(g.get(b).map(String::as_str), Some("session b"));
    let s = g.stats();
    assert_eq!((s.len, s.inserts, s.removes), (1, 2, 1));
    // Same slot index (low 32 bits), different generation: the slot was reused.
    assert_eq!(a.to_bits() as u32, b.to_bits() as u32);
    assert_ne!(a.to_bits() >> 32, b.to_bits() >> 32);
}

#[test]
fn generational_bounds_and_retain() {
    assert!(matches!(
        Generational::<u8>::with_max_len(0),
        Err(ArenaError::ZeroMaxLen)
    ));
    let mut g = Generational::with_max_len(3).unwrap();
    let hs: Vec<_> = (0..3).map(|i| g.insert(i).unwrap()).collect();
    assert_eq!(g.insert(99), Err(ArenaError::Full { max_len: 3 }));
    g.retain(|_, v| *v != 1);
    assert_eq!(g.len(), 2);
    assert_eq!(g.get(hs[1]), None);
    assert_eq!(g.iter().map(|(_, v)| *v).sum::<i32>(), 2);
    assert!(g.insert(7).is_ok());
}
