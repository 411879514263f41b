//! Zero-copy bodies: a `PooledBuffer` frozen into `Bytes` goes back to the pool when the last
//! clone drops; freezing through `BytesMut` (`split().freeze()`) is either reclaimed whole or
//! counted in `PoolStats::reshaped`, never lost silently.

use mm_pool::bytes::Bytes;
use mm_pool::{BufferPool, BufferPoolConfig};

const KB: usize = 1024;

fn pool() -> BufferPool {
    BufferPool::new(BufferPoolConfig::with_tiers([(4 * KB, 4)])).unwrap()
}

#[test]
fn frozen_buffer_returns_when_the_last_clone_drops_on_any_thread() {
    let pool = pool();
    let mut buf = pool.acquire(100);
    buf.extend_from_slice(b"event: token\ndata: hello\n\n");
    let ptr = buf.as_ptr() as usize;
    let body: Bytes = buf.into();
    assert_eq!(body.as_ptr() as usize, ptr, "no copy");
    let clone = body.clone();
    let tail = body.slice(13..);
    drop(body);
    drop(clone);
    assert_eq!(pool.stats().returns, 0, "a slice still holds it");
    std::thread::spawn(move || assert_eq!(&tail[..], b"data: hello\n\n"))
        .join()
        .unwrap();
    let s = pool.stats();
    assert_eq!(
        (s.returns, s.discards, s.reshaped, s.held),
        (1, 0, 0, 1),
        "{s:?}"
    );
    let again = pool.acquire(100);
    assert!(again.is_empty());
    assert_eq!(again.capacity(), 4 * KB);
}

#[test]
fn split_freeze_while_alive_is_counted_as_reshaped() {
    let pool = pool();
    let mut buf = pool.acquire(100);
    buf.extend_from_slice(b"kept elsewhere");
    let frozen = buf.split().freeze();
    drop(buf);
    let s = pool.stats();
    assert_eq!(
        (s.returns, s.discards, s.reshaped, s.held),
        (0, 1, 1, 0),
        "{s:?}"
    );
    assert_eq!(&frozen[..], b"kept elsewhere");
}

#[test]
fn split_freeze_dropped_first_is_reclaimed_whole() {
    let pool = pool();
    let mut buf = pool.acquire(100);
    buf.extend_from_slice(b"short-lived");
    let frozen = buf.split().freeze();
    drop(frozen);
    drop(buf);
    let s = pool.stats();
    assert_eq!(
        (s.returns, s.discards, s.reshaped, s.held),
        (1, 0, 0, 1),
        "{s:?}"
    );
    assert_eq!(pool.acquire(1).capacity(), 4 * KB);
}

#[test]
fn taken_or_grown_buffers_are_counted_as_reshaped() {
    let pool = pool();
    let mut taken = pool.acquire(1);
    let whole = std::mem::take(&mut *taken).freeze();
    drop(taken);
    let mut grown = pool.acquire(1);
    grown.reserve(64 * KB);
    drop(grown);
    let s = pool.stats();
    assert_eq!(
        (s.returns, s.discards, s.reshaped, s.held),
        (0, 2, 2, 0),
        "{s:?}"
    );
    assert!(whole.is_empty());
}

#[test]
fn oversize_buffer_frozen_is_freed_not_pooled() {
    let pool = pool();
    let mut big = pool.acquire(100 * KB);
    big.extend_from_slice(&[7; 10]);
    let body = big.into_bytes();
    assert_eq!(body.len(), 10);
    drop(body);
    let s = pool.stats();
    assert_eq!(
        (s.oversize, s.returns, s.discards, s.held),
        (1, 0, 0, 0),
        "{s:?}"
    );
}
