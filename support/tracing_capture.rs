//! A `tracing` layer for tests that keeps every event it sees, shared by the crates whose
//! tests check their events (`#[path]`-included from each crate's `tests/tracing.rs`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A `tracing` layer that keeps every event: level, message, fields and enclosing spans.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<Record>>>);

/// One captured event.
#[derive(Debug, Clone)]
pub struct Record {
    /// The event's level.
    pub level: tracing::Level,
    /// Its `message` field.
    pub message: String,
    /// Every other field, formatted (`Debug` for non-strings).
    pub fields: BTreeMap<String, String>,
    /// The names of its enclosing spans, outermost first.
    pub spans: Vec<String>,
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
    pub fn run(f: impl FnOnce()) -> Vec<Record> {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::registry().with(capture.clone());
        tracing::subscriber::with_default(subscriber, f);
        capture.0.lock().unwrap().clone()
    }
}

/// The events with this message.
pub fn events<'a>(records: &'a [Record], message: &str) -> Vec<&'a Record> {
    records.iter().filter(|r| r.message == message).collect()
}
