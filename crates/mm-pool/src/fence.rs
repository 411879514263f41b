//! An asymmetric fence: a light side, run often (an owned guard given back on its owning
//! thread), and a heavy side, run rarely (a pool's close).
//!
//! The guarantee, as for a pair of `SeqCst` fences: if one thread stores `a`, runs
//! [`light`] and loads `b`, and another stores `b`, runs [`heavy`] and loads `a`, then at
//! least one of the loads sees the other thread's store.
//!
//! On Linux with `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` available, the light side
//! is a compiler fence only (no instruction) and the heavy side that system call, which
//! runs a full barrier on every CPU running a thread of this process (one it does not reach
//! is between two context switches, each a full barrier). Where it is not available (other
//! systems, the call refused or filtered), [`asymmetric`] says so and the caller must not
//! rely on the pair: the pools then keep their owned guards on the read-modify-write path
//! from the start, so the light side (still a compiler fence) orders nothing that matters.
//! Under loom and Miri, which cannot run the system call, both sides are `SeqCst` fences,
//! which give the same guarantee, and [`asymmetric`] is true, so the models check the
//! protocol itself.
//!
//! The `membarrier` crate does this too, but its 0.2.3 depends on `windows-sys` on every
//! system and fails to link on Linux with the current toolchain (`-lwindows`); this is the
//! same few lines over `libc`, checked once per process instead of on every light side, with
//! the heavy side reporting failure instead of aborting.

#[cfg(all(target_os = "linux", not(loom), not(miri)))]
mod imp {
    use std::sync::atomic::{AtomicU8, Ordering, compiler_fence, fence};

    const UNKNOWN: u8 = 0;
    const MEMBARRIER: u8 = 1;
    const FENCES: u8 = 2;

    /// `UNKNOWN` until the first [`init`]; then, for good, `MEMBARRIER` or `FENCES`. It
    /// changes once, so a load that reads anything but `UNKNOWN` reads the final value.
    static STRATEGY: AtomicU8 = AtomicU8::new(UNKNOWN);

    // From the kernel's `include/uapi/linux/membarrier.h` (`libc` has the call's number only).
    const CMD_QUERY: libc::c_int = 0;
    const CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
    const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

    fn membarrier(cmd: libc::c_int) -> libc::c_long {
        // SAFETY: `membarrier(cmd, flags, cpu_id)` takes three integers and reads or writes
        // no memory of this process; an unknown or refused command returns -1.
        unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                cmd,
                0 as libc::c_int,
                0 as libc::c_int,
            )
        }
    }

    fn detect() -> u8 {
        let want = libc::c_long::from(CMD_PRIVATE_EXPEDITED | CMD_REGISTER_PRIVATE_EXPEDITED);
        let supported = membarrier(CMD_QUERY);
        // The process must register before its first expedited barrier.
        if supported >= 0
            && supported & want == want
            && membarrier(CMD_REGISTER_PRIVATE_EXPEDITED) == 0
        {
            MEMBARRIER
        } else {
            FENCES
        }
    }

    /// Chooses the strategy, once per process (later calls read it back).
    #[cold]
    fn init() -> u8 {
        match STRATEGY.load(Ordering::Relaxed) {
            UNKNOWN => {
                let mine = detect();
                // Racing first calls agree through the exchange: the first one decides.
                match STRATEGY.compare_exchange(UNKNOWN, mine, Ordering::Relaxed, Ordering::Relaxed)
                {
                    Ok(_) => mine,
                    Err(decided) => decided,
                }
            }
            decided => decided,
        }
    }

    pub(crate) fn asymmetric() -> bool {
        init() == MEMBARRIER
    }

    #[inline(always)]
    pub(crate) fn light() {
        compiler_fence(Ordering::SeqCst);
    }

    pub(crate) fn heavy() -> bool {
        // `init` reads the final strategy (never a stale `UNKNOWN`).
        match init() {
            MEMBARRIER => membarrier(CMD_PRIVATE_EXPEDITED) == 0,
            _ => {
                fence(Ordering::SeqCst);
                true
            }
        }
    }
}

/// Loom and Miri (which cannot run the system call), and systems without it.
#[cfg(not(all(target_os = "linux", not(loom), not(miri))))]
mod imp {
    #[cfg(loom)]
    use loom::sync::atomic::{Ordering, fence};
    #[cfg(not(loom))]
    use std::sync::atomic::{Ordering, fence};

    /// Under loom and Miri both sides are `SeqCst` fences, a working pair; elsewhere the
    /// light side orders nothing and the pools keep to the read-modify-write path.
    const PAIRED: bool = cfg!(any(loom, miri));

    pub(crate) fn asymmetric() -> bool {
        PAIRED
    }

    #[inline(always)]
    pub(crate) fn light() {
        if PAIRED {
            fence(Ordering::SeqCst);
        } else {
            std::sync::atomic::compiler_fence(Ordering::SeqCst);
        }
    }

    pub(crate) fn heavy() -> bool {
        fence(Ordering::SeqCst);
        true
    }
}

/// Whether [`light`] and [`heavy`] form a working pair in this process (decided on the first
/// call, once per process: on Linux it registers for expedited membarriers). False: the
/// caller must keep to paths that need no such pair.
pub(crate) fn asymmetric() -> bool {
    imp::asymmetric()
}

/// The light side (module docs): no instruction in a normal build.
#[inline(always)]
pub(crate) fn light() {
    imp::light();
}

/// The heavy side (module docs). False if the barrier could not be run (the system call
/// failed after it had been registered): the caller must then act as if any light side's
/// store may be unseen.
#[must_use]
pub(crate) fn heavy() -> bool {
    imp::heavy()
}
