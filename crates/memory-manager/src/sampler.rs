//! [`Sampler`]: a bounded ring of snapshots and the leak suspects it finds.

use std::collections::VecDeque;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::manager::MemoryManager;

/// The component names a [`Sample`] carries, in its order.
pub const SAMPLED: [&str; 6] = [
    "heap",
    "buffer-pool",
    "object-pools",
    "interner",
    "mmap-cache",
    "arenas",
];

/// One snapshot of held bytes per component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// When it was taken.
    pub at: Instant,
    /// Bytes per component, in the order of [`SAMPLED`]; `heap` is the tracked allocator's
    /// live bytes (0 when not tracked, and then never a suspect).
    pub held: [u64; SAMPLED.len()],
}

/// Keeps the last `capacity` samples (a ring: the oldest goes first) and names components
/// whose held bytes grew in every one of the last `window` intervals.
///
/// Drive it yourself with [`sample`](Self::sample) (for example once per request batch), or
/// let [`SamplerThread`] call it on an interval. Growth is strict: a component that stays
/// flat for one interval is not a suspect, so caches that fill up and then hold steady are
/// never named. A suspect is a hint to look, not a proof of a leak.
#[derive(Debug)]
pub struct Sampler {
    manager: MemoryManager,
    ring: VecDeque<Sample>,
    capacity: usize,
    window: usize,
}

impl Sampler {
    /// A sampler with the manager's configured capacity and leak window.
    pub fn new(manager: MemoryManager) -> Self {
        let capacity = manager.config().sampler_capacity();
        let window = manager.config().leak_window();
        Sampler {
            manager,
            ring: VecDeque::with_capacity(capacity),
            capacity,
            window,
        }
    }

    /// Takes a sample now; the oldest is dropped when the ring is full. Syncs the budget's
    /// charges as a side effect.
    pub fn sample(&mut self) -> Sample {
        self.manager.sync();
        let [buffers, objects, interner, mmap, arenas] = self.manager.sampled_held();
        let heap = mm_track::snapshot().map_or(0, |s| s.live_bytes);
        let sample = Sample {
            at: Instant::now(),
            held: [heap, buffers, objects, interner, mmap, arenas],
        };
        self.push(sample);
        sample
    }

    /// Adds a sample taken elsewhere (for tests and replays).
    pub fn push(&mut self, sample: Sample) {
        if self.ring.len() == self.capacity {
            self.ring.pop_front();
        }
        self.ring.push_back(sample);
    }

    /// The samples kept, oldest first.
    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.ring.iter()
    }

    /// Components whose held bytes grew strictly across each of the last `window` intervals
    /// (so over `window + 1` samples). Empty until that many samples exist.
    pub fn leak_suspects(&self) -> Vec<&'static str> {
        let n = self.ring.len();
        if n < self.window + 1 {
            return Vec::new();
        }
        let recent: Vec<&Sample> = self.ring.iter().skip(n - self.window - 1).collect();
        SAMPLED
            .iter()
            .enumerate()
            .filter(|(i, _)| recent.windows(2).all(|w| w[1].held[*i] > w[0].held[*i]))
            .map(|(_, name)| *name)
            .collect()
    }
}

/// A background thread that samples every `interval`; stops and joins when dropped.
#[derive(Debug)]
pub struct SamplerThread {
    sampler: Arc<Mutex<Sampler>>,
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl SamplerThread {
    /// Starts sampling `manager` every `interval` on a new thread named `mm-sampler`.
    ///
    /// # Errors
    /// The I/O error if the thread cannot be spawned.
    pub fn spawn(manager: MemoryManager, interval: Duration) -> std::io::Result<Self> {
        let sampler = Arc::new(Mutex::new(Sampler::new(manager)));
        let (stop, stopped) = mpsc::channel::<()>();
        let shared = Arc::clone(&sampler);
        let handle = std::thread::Builder::new()
            .name("mm-sampler".to_owned())
            .spawn(move || {
                loop {
                    shared
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .sample();
                    match stopped.recv_timeout(interval) {
                        Err(RecvTimeoutError::Timeout) => continue,
                        _ => break,
                    }
                }
            })?;
        Ok(SamplerThread {
            sampler,
            stop: Some(stop),
            handle: Some(handle),
        })
    }

    /// Runs `f` on the sampler (to read samples or suspects) under its lock.
    pub fn with<R>(&self, f: impl FnOnce(&Sampler) -> R) -> R {
        f(&self.sampler.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Drop for SamplerThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryConfig;

    fn sample(at: Instant, interner: u64, mmap: u64) -> Sample {
        Sample {
            at,
            held: [0, 0, 0, interner, mmap, 0],
        }
    }

    #[test]
    fn strict_growth_over_the_window_is_a_suspect() {
        let config = MemoryConfig::new()
            .with_max_memory(1 << 30)
            .with_sampler(4, 3);
        let manager = MemoryManager::new(config).unwrap();
        let mut s = Sampler::new(manager);
        let t = Instant::now();
        for (i, mmap) in [(10, 5), (20, 5), (30, 6)] {
            s.push(sample(t, i, mmap));
        }
        assert!(s.leak_suspects().is_empty(), "needs window + 1 samples");
        s.push(sample(t, 40, 7));
        assert_eq!(s.leak_suspects(), vec!["interner"]);
        // The ring keeps 4: pushing a flat interner sample ends the streak.
        s.push(sample(t, 40, 8));
        assert_eq!(s.samples().count(), 4);
        assert_eq!(s.leak_suspects(), vec!["mmap-cache"]);
    }
}
