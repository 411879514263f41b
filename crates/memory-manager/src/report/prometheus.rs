//! [`MetricsConfig`] and the Prometheus text exposition of a [`MemoryReport`].

use std::borrow::Cow;
use std::fmt::Write as _;

use super::MemoryReport;
use super::families::{MetricFamily, metric_families};
use crate::ConfigError;

/// How exported metrics are named and labelled: a name prefix and constant labels added to
/// every sample (`service`, `instance`...). Used by
/// [`MemoryReport::to_prometheus_with`] and the `metrics` bridge.
///
/// ```
/// use memory_manager::MetricsConfig;
/// let config = MetricsConfig::new()
///     .with_prefix("embedder_mm_")
///     .with_label("service", "embeddings");
/// assert!(config.validate().is_ok());
/// assert!(MetricsConfig::new().with_label("bad-name", "x").validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    prefix: Cow<'static, str>,
    labels: Vec<(String, String)>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// The labels the families use themselves; a constant label may not take their names.
const RESERVED_LABELS: [&str; 3] = ["component", "model", "state"];

impl MetricsConfig {
    /// Prefix `mm_`, no constant labels.
    pub const fn new() -> Self {
        MetricsConfig {
            prefix: Cow::Borrowed("mm_"),
            labels: Vec::new(),
        }
    }

    /// The prefix of every metric name. Default `mm_`; it must match
    /// `[a-zA-Z_:][a-zA-Z0-9_:]*` or be empty.
    pub fn with_prefix(mut self, prefix: impl Into<Cow<'static, str>>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Adds a constant label to every sample. Default none; the name must match
    /// `[a-zA-Z_][a-zA-Z0-9_]*`, not start with `__`, not repeat, and not be one the families
    /// use (`component`, `model`, `state`); the value is any string.
    pub fn with_label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((name.into(), value.into()));
        self
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The constant labels, in the order they were added.
    pub fn labels(&self) -> &[(String, String)] {
        &self.labels
    }

    /// Checks the prefix and the label names.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `metrics.prefix` or `metrics.labels` and the value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let name_char = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let p = self.prefix.as_bytes();
        if p.first().is_some_and(u8::is_ascii_digit)
            || !p.iter().all(|&b| name_char(b) || b == b':')
        {
            return Err(ConfigError::Invalid {
                field: "metrics.prefix",
                value: self.prefix.to_string(),
                reason: "a metric name prefix is ASCII letters, digits, '_' and ':', not starting with a digit".into(),
            });
        }
        for (i, (name, _)) in self.labels.iter().enumerate() {
            let b = name.as_bytes();
            let reason =
                if b.is_empty() || b[0].is_ascii_digit() || !b.iter().all(|&c| name_char(c)) {
                    "a label name is ASCII letters, digits and '_', not starting with a digit"
                } else if name.starts_with("__") {
                    "label names starting with '__' are reserved by Prometheus"
                } else if RESERVED_LABELS.contains(&name.as_str()) {
                    "the metric families use this label themselves (component, model, state)"
                } else if self.labels[..i].iter().any(|(n, _)| n == name) {
                    "the label is set twice"
                } else {
                    continue;
                };
            return Err(ConfigError::Invalid {
                field: "metrics.labels",
                value: name.clone(),
                reason: reason.into(),
            });
        }
        Ok(())
    }
}

impl MemoryReport {
    /// The report in the Prometheus text exposition format (version 0.0.4) with the default
    /// [`MetricsConfig`]: names `mm_*`, counters typed `counter` and ending in `_total`,
    /// gauges typed `gauge`, base units (`_bytes`, `_seconds`, `_ratio`), `HELP` and `TYPE`
    /// for every family, per-component and per-model families labelled `component="..."` /
    /// `model="..."`. Absent figures are left out rather than exported as 0; every family is
    /// listed in `docs/report-schema.md`.
    ///
    /// ```
    /// use memory_manager::{MemoryConfig, MemoryManager};
    /// let m = MemoryManager::new(MemoryConfig::default().with_max_memory(64 << 20))?;
    /// let text = m.report().to_prometheus();
    /// assert!(text.contains("# TYPE mm_budget_used_bytes gauge"));
    /// assert!(text.contains("# TYPE mm_budget_denied_total counter"));
    /// # Ok::<(), memory_manager::ConfigError>(())
    /// ```
    pub fn to_prometheus(&self) -> String {
        render(self, &MetricsConfig::new())
    }

    /// [`to_prometheus`](Self::to_prometheus) with a prefix and constant labels.
    ///
    /// ```
    /// use memory_manager::{MemoryConfig, MemoryManager, MetricsConfig};
    /// let m = MemoryManager::new(MemoryConfig::default().with_max_memory(64 << 20))?;
    /// let config = MetricsConfig::new().with_prefix("svc_").with_label("service", "chat");
    /// let text = m.report().to_prometheus_with(&config)?;
    /// assert!(text.contains("svc_budget_limit_bytes{service=\"chat\"} 67108864"));
    /// # Ok::<(), memory_manager::ConfigError>(())
    /// ```
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when the config does not [`validate`](MetricsConfig::validate).
    pub fn to_prometheus_with(&self, config: &MetricsConfig) -> Result<String, ConfigError> {
        config.validate()?;
        Ok(render(self, config))
    }
}

fn render(report: &MemoryReport, config: &MetricsConfig) -> String {
    let mut out = String::with_capacity(8192);
    let constant: String = config
        .labels
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", escape_label(value)))
        .collect::<Vec<_>>()
        .join(",");
    for family in metric_families() {
        family_text(&mut out, report, config.prefix(), &constant, family);
    }
    out
}

fn family_text(
    out: &mut String,
    report: &MemoryReport,
    prefix: &str,
    constant: &str,
    family: &MetricFamily,
) {
    let samples = family.samples(report);
    if samples.is_empty() {
        return;
    }
    let name = family.name();
    // Writing into a String cannot fail.
    let _ = writeln!(out, "# HELP {prefix}{name} {}", escape_help(family.help()));
    let _ = writeln!(out, "# TYPE {prefix}{name} {}", family.kind().as_str());
    for sample in samples {
        let _ = write!(out, "{prefix}{name}");
        let mut sep = '{';
        if !constant.is_empty() {
            let _ = write!(out, "{sep}{constant}");
            sep = ',';
        }
        for (label, value) in family.labels().iter().zip(&sample.label_values) {
            let _ = write!(out, "{sep}{label}=\"{}\"", escape_label(value));
            sep = ',';
        }
        if sep == ',' {
            out.push('}');
        }
        let _ = writeln!(out, " {}", format_value(sample.value));
    }
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_the_bad_part() {
        assert!(MetricsConfig::new().validate().is_ok());
        assert!(MetricsConfig::new().with_prefix("").validate().is_ok());
        assert!(MetricsConfig::new().with_prefix("a:b_").validate().is_ok());
        for bad in ["1mm_", "mm-", "mm "] {
            let e = MetricsConfig::new()
                .with_prefix(bad)
                .validate()
                .unwrap_err();
            assert!(e.to_string().contains("metrics.prefix"), "{e}");
        }
        for (labels, why) in [
            (vec!["9x"], "not starting with a digit"),
            (vec!["a-b"], "ASCII letters"),
            (vec![""], "ASCII letters"),
            (vec!["__x"], "reserved by Prometheus"),
            (vec!["component"], "use this label"),
            (vec!["service", "service"], "twice"),
        ] {
            let config = labels
                .iter()
                .fold(MetricsConfig::new(), |c, l| c.with_label(*l, "v"));
            let e = config.validate().unwrap_err().to_string();
            assert!(e.contains("metrics.labels") && e.contains(why), "{e}");
        }
    }

    #[test]
    fn values_and_escapes() {
        assert_eq!(format_value(268435456.0), "268435456");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
    }
}
