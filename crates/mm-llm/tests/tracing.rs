//! The embedding cache's `tracing` events reach a subscriber: each removed entry at trace
//! level with its cause, and each trim (a fraction evicted, the pressure hook) at info.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use memory_manager::{MemoryConfig, MemoryManager};
use mm_llm::{EmbeddingCache, EmbeddingCacheConfig, Interner};
use tracing::Level;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A `tracing` layer that keeps every event: level, message, fields and enclosing spans.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Record>>>);

#[derive(Debug, Clone)]
struct Record {
    level: tracing::Level,
    message: String,
    fields: BTreeMap<String, String>,
    spans: Vec<String>,
}

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S> Layer<S> for Capture
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message = fields.0.remove("message").unwrap_or_default();
        let spans = ctx
            .event_scope(event)
            .map(|scope| scope.from_root().map(|s| s.name().to_owned()).collect())
            .unwrap_or_default();
        self.0.lock().unwrap().push(Record {
            level: *event.metadata().level(),
            message,
            fields: fields.0,
            spans,
        });
    }
}

impl Capture {
    /// Runs `f` with this layer as the thread's subscriber; returns the events it saw.
    fn run(f: impl FnOnce()) -> Vec<Record> {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::registry().with(capture.clone());
        tracing::subscriber::with_default(subscriber, f);
        capture.0.lock().unwrap().clone()
    }
}

/// The events with this message.
fn events<'a>(records: &'a [Record], message: &str) -> Vec<&'a Record> {
    records.iter().filter(|r| r.message == message).collect()
}

#[test]
fn evictions_and_trims_are_traced() {
    let manager = MemoryManager::new(MemoryConfig::default().with_max_memory(64 << 20)).unwrap();
    let config = EmbeddingCacheConfig::new()
        .with_max_entries(8)
        .with_shards(1);
    let cache = EmbeddingCache::from_manager(&manager, config).unwrap();
    let model = Interner::new().get_or_intern("m");
    let records = Capture::run(|| {
        // 12 inserts into 8 entries: 4 leave for size.
        for i in 0..12 {
            cache
                .insert(cache.key(model, &i.to_string()), &[1.0; 16])
                .unwrap();
        }
        assert_eq!(cache.evict_fraction(0.5), 4);
        // Past 90% of the manager's limit: its pressure path calls the cache's hook.
        drop(manager.budget().try_reserve(60 << 20).unwrap());
    });
    let removed = events(&records, "embedding cache removed an entry");
    assert!(removed.iter().all(|r| r.level == Level::TRACE));
    let causes = |cause: &str| {
        removed
            .iter()
            .filter(|r| r.fields["cause"] == cause)
            .count()
    };
    assert_eq!(causes("size"), 4, "{records:#?}");
    assert_eq!(
        causes("pressure"),
        4 + 2,
        "half of 8, then half of the 4 left"
    );
    let fraction = events(
        &records,
        "embedding cache evicted a fraction of its entries",
    );
    assert_eq!(fraction.len(), 1);
    assert_eq!(fraction[0].level, Level::INFO);
    assert_eq!(fraction[0].fields["evicted"], "4");
    let pressure = events(&records, "embedding cache trimmed under pressure");
    assert_eq!(pressure.len(), 1);
    assert_eq!(pressure[0].level, Level::INFO);
    assert!(pressure[0].fields["freed_bytes"].parse::<u64>().unwrap() > 0);
    assert_eq!(pressure[0].spans, ["memory_pressure"]);
}
