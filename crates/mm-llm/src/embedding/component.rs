//! The cache as a component of a [`MemoryManager`]: charged to the manager's budget, a row of
//! its report, relieved under its pressure.

use std::sync::Arc;

use memory_manager::{Charging, Component, ComponentReading, MemoryManager, PressureLevel};

use super::{EmbeddingCache, EmbeddingCacheConfig, RemovalCause};
use crate::LlmError;

impl EmbeddingCache {
    /// A cache charged to `manager`'s budget and registered with it: the report lists it as
    /// `embedding-cache` (bytes held and bound, entries, hits, misses, evictions; held and
    /// bound include the policy's sketch and ghost table), and rising
    /// pressure evicts a quarter (warning) or half (critical) of it. The manager holds it
    /// weakly: drop the last `Arc` and it is unregistered.
    ///
    /// ```
    /// use memory_manager::{MemoryConfig, MemoryManager};
    /// use mm_llm::{EmbeddingCache, EmbeddingCacheConfig, Interner};
    /// let manager = MemoryManager::new(MemoryConfig::default().with_max_memory(256 << 20))?;
    /// let cache = EmbeddingCache::from_manager(&manager, EmbeddingCacheConfig::new())?;
    /// let names = Interner::new();
    /// cache.insert(cache.key(names.get_or_intern("m"), "hi"), &[0.5; 384])?;
    /// let report = manager.report();
    /// let row = report.components.iter().find(|c| c.name == "embedding-cache").unwrap();
    /// assert_eq!(row.held_bytes, cache.bytes() + cache.stats().tables_bytes);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn from_manager(
        manager: &MemoryManager,
        config: EmbeddingCacheConfig,
    ) -> Result<Arc<Self>, LlmError> {
        let cache = Arc::new(Self::new(config, Some(manager.budget().clone()))?);
        manager.register(cache.clone());
        Ok(cache)
    }

    /// Evicts about `fraction` of every shard it can lock without waiting (cause
    /// [`RemovalCause::Pressure`]), then frees wholly unused storage; returns the bytes the
    /// entries counted. The pressure hook's form of [`evict_fraction`](Self::evict_fraction):
    /// it may run on a thread that holds a shard lock (a budget charge under the lock raised
    /// the event), and skips that shard, whose insert evicts on the budget's refusal anyway.
    pub fn relieve_pressure(&self, fraction: f64) -> u64 {
        let fraction = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        let mut freed = 0;
        for cell in self.shards.iter() {
            let mut notes = self.notes();
            if let Some(mut s) = cell.try_lock() {
                let before = s.bytes();
                let count = (s.len() as f64 * fraction).ceil() as usize;
                s.evict(count, RemovalCause::Pressure, &mut notes);
                s.release_unused();
                freed += before - s.bytes();
            }
            self.notify(notes);
        }
        tracing::info!(
            fraction,
            freed_bytes = freed,
            "embedding cache trimmed under pressure"
        );
        freed
    }

    /// Bytes held, entries, hits, misses and evictions, from the figures each shard mirrors
    /// when unlocked (no lock taken: consistent per shard as of its last operation).
    pub fn reading(&self) -> ComponentReading {
        let mut r = ComponentReading::new(0);
        let (mut hits, mut misses, mut evictions) = (0, 0, 0);
        for cell in self.shards.iter() {
            let m = cell.mirrored();
            r.held_bytes += m.bytes + m.tables;
            r.items += m.entries;
            hits += m.hits;
            misses += m.misses;
            evictions += m.evictions;
        }
        r.bound_bytes = Some(self.config.max_bytes() + self.tables_bound);
        r.hits = Some(hits);
        r.misses = Some(misses);
        r.evictions = Some(evictions);
        r
    }
}

impl Component for EmbeddingCache {
    fn name(&self) -> &str {
        "embedding-cache"
    }

    fn reading(&self) -> ComponentReading {
        EmbeddingCache::reading(self)
    }

    fn charging(&self) -> Charging {
        // With a budget every shard holds its own reservation.
        if self.budget.is_some() {
            Charging::BySelf
        } else {
            Charging::ByManager
        }
    }

    fn on_pressure(&self, level: PressureLevel) -> u64 {
        match level {
            PressureLevel::Normal => 0,
            PressureLevel::Warning => self.relieve_pressure(0.25),
            PressureLevel::Critical => self.relieve_pressure(0.5),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::names::Interner;
    use memory_manager::MemoryConfig;

    #[test]
    fn a_manager_reports_charges_and_relieves_the_cache() {
        let manager =
            MemoryManager::new(MemoryConfig::default().with_max_memory(64 << 20)).unwrap();
        let cfg = EmbeddingCacheConfig::new()
            .with_max_entries(4096)
            .with_shards(2);
        let cache = EmbeddingCache::from_manager(&manager, cfg).unwrap();
        let m = Interner::new().get_or_intern("m");
        for i in 0..1000 {
            let k = cache.key(m, &i.to_string());
            if cache.get(&k).is_none() {
                cache.insert(k, &[1.0; 256]).unwrap();
            }
        }
        let report = manager.report();
        let row = report
            .components
            .iter()
            .find(|c| c.name == "embedding-cache")
            .unwrap();
        // Two shards of 2,048 entries: a 16 KiB sketch and a 16 KiB ghost table each.
        let tables = 2 * (16 << 10) * 2;
        assert_eq!(cache.stats().tables_bytes, tables);
        assert_eq!(row.held_bytes, cache.bytes() + tables);
        assert_eq!(
            row.held_bytes,
            1000 * super::super::entry_bytes(256) + tables
        );
        assert_eq!(row.bound_bytes, Some(cache.stats().max_bytes + tables));
        assert!(
            report.budget.used_bytes >= cache.bytes(),
            "charged by the cache itself"
        );
        let r = EmbeddingCache::reading(&cache);
        assert_eq!((r.items, r.misses, r.hits), (1000, Some(1000), Some(0)));
        assert_eq!(cache.charging(), Charging::BySelf);
        // Pressure: warning evicts a quarter, critical half of the rest.
        let before = cache.bytes();
        let freed = cache.on_pressure(PressureLevel::Warning);
        assert_eq!(freed, before - cache.bytes());
        // (Rounded up per shard.)
        assert!((748..=750).contains(&cache.len()), "{}", cache.len());
        cache.on_pressure(PressureLevel::Critical);
        assert!((372..=375).contains(&cache.len()), "{}", cache.len());
        assert_eq!(cache.on_pressure(PressureLevel::Normal), 0);
        assert_eq!(cache.stats().evictions.pressure, 1000 - cache.len() as u64);
        // A shard locked elsewhere is skipped, not waited for.
        let held = cache.shards[0].lock();
        let skipped_len = held.len();
        drop(held);
        let other = cache.shards[1].lock();
        cache.relieve_pressure(1.0);
        drop(other);
        assert_eq!(cache.len(), cache.shards[1].lock().len());
        assert!(skipped_len > 0 && cache.shards[0].lock().len() == 0);
        assert_eq!(cache.relieve_pressure(f64::NAN), 0);
        // Dropping the cache unregisters it.
        drop(cache);
        assert!(
            !manager
                .report()
                .components
                .iter()
                .any(|c| c.name == "embedding-cache")
        );
        let plain = EmbeddingCache::new(EmbeddingCacheConfig::new(), None).unwrap();
        assert_eq!(plain.charging(), Charging::ByManager);
        assert_eq!(plain.name(), "embedding-cache");
    }
}
