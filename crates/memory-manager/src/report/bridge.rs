//! The `metrics` facade bridge: the report's families published through whatever recorder
//! the application installed (metrics-exporter-prometheus, an OpenTelemetry bridge, StatsD).

use super::MemoryReport;
use super::families::{MetricKind, MetricUnit, metric_families};
use crate::{ConfigError, MetricsConfig};

impl MemoryReport {
    /// Publishes every figure through the [`metrics`] facade with `config`'s prefix and
    /// constant labels, under the same names and labels as
    /// [`to_prometheus_with`](Self::to_prometheus_with): counters with
    /// [`Counter::absolute`](metrics::Counter::absolute) (the report holds totals since
    /// start), gauges with [`Gauge::set`](metrics::Gauge::set), each family described with
    /// its unit and help. Absent figures are not published. Call it on each report (a timer,
    /// or before an exporter's scrape); without an installed recorder it does nothing.
    ///
    /// Needs the `metrics` feature.
    ///
    /// ```
    /// use memory_manager::{MemoryConfig, MemoryManager, MetricsConfig};
    /// let m = MemoryManager::new(MemoryConfig::default().with_max_memory(64 << 20))?;
    /// m.report().publish_metrics(&MetricsConfig::new().with_label("service", "chat"))?;
    /// # Ok::<(), memory_manager::ConfigError>(())
    /// ```
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when the config does not [`validate`](MetricsConfig::validate).
    pub fn publish_metrics(&self, config: &MetricsConfig) -> Result<(), ConfigError> {
        config.validate()?;
        for family in metric_families() {
            let samples = family.samples(self);
            if samples.is_empty() {
                continue;
            }
            let name = format!("{}{}", config.prefix(), family.name());
            let unit = match family.unit() {
                MetricUnit::Bytes => Some(metrics::Unit::Bytes),
                MetricUnit::Seconds => Some(metrics::Unit::Seconds),
                MetricUnit::Count => Some(metrics::Unit::Count),
                MetricUnit::Ratio | MetricUnit::State => None,
            };
            describe(family.kind(), &name, unit, family.help());
            for sample in samples {
                let labels: Vec<metrics::Label> = config
                    .labels()
                    .iter()
                    .map(|(k, v)| metrics::Label::new(k.clone(), v.clone()))
                    .chain(
                        family
                            .labels()
                            .iter()
                            .zip(&sample.label_values)
                            .map(|(k, v)| metrics::Label::new(*k, (*v).to_owned())),
                    )
                    .collect();
                match family.kind() {
                    // Counter figures are whole totals (bytes, events) held as f64.
                    MetricKind::Counter => {
                        metrics::counter!(name.clone(), labels).absolute(sample.value as u64);
                    }
                    MetricKind::Gauge => metrics::gauge!(name.clone(), labels).set(sample.value),
                }
            }
        }
        Ok(())
    }
}

fn describe(kind: MetricKind, name: &str, unit: Option<metrics::Unit>, help: &'static str) {
    let name = name.to_owned();
    match (kind, unit) {
        (MetricKind::Counter, Some(u)) => metrics::describe_counter!(name, u, help),
        (MetricKind::Counter, None) => metrics::describe_counter!(name, help),
        (MetricKind::Gauge, Some(u)) => metrics::describe_gauge!(name, u, help),
        (MetricKind::Gauge, None) => metrics::describe_gauge!(name, help),
    }
}
