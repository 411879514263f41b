//! [`MemoryConfig`]: defaults, a builder, environment variables and TOML files.

use std::path::{Path, PathBuf};

use mm_arena::ArenaConfig;
use mm_budget::BudgetConfig;
use mm_pool::BufferPoolConfig;
use serde::Deserialize;

use crate::error::ConfigError;

const MIB: u64 = 1024 * 1024;

/// Default byte budget of the mmap cache: 100 MiB.
pub const DEFAULT_MMAP_CACHE_BYTES: u64 = 100 * MIB;
/// Default buffer-pool tiers as `(buffer size, most idle buffers)`.
pub const DEFAULT_POOL_TIERS: [(usize, usize); 3] = [(4 << 10, 64), (64 << 10, 16), (1 << 20, 2)];
/// Default capacity of a thread's request arena, reserved on its first request: 64 KiB.
pub const DEFAULT_ARENA_INITIAL_BYTES: usize = 64 << 10;
/// Default most bytes a single request may take from its arena: 64 MiB.
pub const DEFAULT_ARENA_LIMIT_BYTES: usize = 64 << 20;
/// Default number of snapshots the sampler keeps.
pub const DEFAULT_SAMPLER_CAPACITY: usize = 64;
/// Default number of consecutive growing snapshots that make a leak suspect.
pub const DEFAULT_LEAK_WINDOW: usize = 5;

/// Everything a [`MemoryManager`](crate::MemoryManager) is built from.
///
/// Build it with [`MemoryConfig::default`] and the `with_*` methods, from environment
/// variables ([`MemoryConfig::from_env`]), or from a TOML file ([`MemoryConfig::from_toml_file`]).
/// The environment variables and TOML keys are the same names (`MM_MAX_MEMORY_MB` is
/// `max_memory_mb`); the table is in the crate documentation.
///
/// Nothing is checked until [`validate`](Self::validate) (which
/// [`MemoryManager::new`](crate::MemoryManager::new) calls).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryConfig {
    /// The hard limit of the memory budget in bytes; `None` derives it from the cgroup limit
    /// or the machine's memory ([`mm_budget::sys::default_limit`]).
    pub max_memory_bytes: Option<u64>,
    /// Warning threshold, percent of the limit (default 80).
    pub warn_percent: u8,
    /// Critical threshold, percent of the limit (default 90).
    pub critical_percent: u8,
    /// Byte budget of the mmap cache (default 100 MiB); must not exceed the memory limit.
    pub mmap_cache_bytes: u64,
    /// Buffer-pool tiers as `(size, max_idle)`, smallest first.
    pub pool_tiers: Vec<(usize, usize)>,
    /// Capacity reserved for each thread's request arena on first use (0: grow on demand).
    pub arena_initial_bytes: usize,
    /// Most bytes one request may take from its arena; `None` for no limit.
    pub arena_limit_bytes: Option<usize>,
    /// Most distinct strings the interner accepts; `None` for no limit.
    pub intern_max_strings: Option<u64>,
    /// Most string bytes the interner stores; `None` for no limit.
    pub intern_max_bytes: Option<u64>,
    /// Snapshots the [`Sampler`](crate::Sampler) keeps.
    pub sampler_capacity: usize,
    /// Consecutive growing snapshots after which a component is named a leak suspect.
    pub leak_window: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            max_memory_bytes: None,
            warn_percent: mm_budget::DEFAULT_WARNING_PERCENT,
            critical_percent: mm_budget::DEFAULT_CRITICAL_PERCENT,
            mmap_cache_bytes: DEFAULT_MMAP_CACHE_BYTES,
            pool_tiers: DEFAULT_POOL_TIERS.to_vec(),
            arena_initial_bytes: DEFAULT_ARENA_INITIAL_BYTES,
            arena_limit_bytes: Some(DEFAULT_ARENA_LIMIT_BYTES),
            intern_max_strings: None,
            intern_max_bytes: None,
            sampler_capacity: DEFAULT_SAMPLER_CAPACITY,
            leak_window: DEFAULT_LEAK_WINDOW,
        }
    }
}

/// The settings as they come from a TOML file or the environment: every field optional,
/// sizes in the units their names say.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    max_memory_mb: Option<u64>,
    warn_percent: Option<u8>,
    critical_percent: Option<u8>,
    mmap_cache_mb: Option<u64>,
    pool_tiers: Option<Vec<(usize, usize)>>,
    arena_initial_kb: Option<usize>,
    arena_limit_mb: Option<usize>,
    intern_max_strings: Option<u64>,
    intern_max_mb: Option<u64>,
    sampler_capacity: Option<usize>,
    leak_window: Option<usize>,
}

/// One row of the settings table: environment variable, TOML key, meaning.
///
/// The crate docs render this table; [`MemoryConfig::from_env`] reads exactly these names.
pub const SETTINGS: [(&str, &str, &str); 11] = [
    (
        "MM_MAX_MEMORY_MB",
        "max_memory_mb",
        "hard memory limit in MiB (default: derived)",
    ),
    (
        "MM_WARN_PERCENT",
        "warn_percent",
        "warning threshold, % of the limit (80)",
    ),
    (
        "MM_CRITICAL_PERCENT",
        "critical_percent",
        "critical threshold, % of the limit (90)",
    ),
    (
        "MM_MMAP_CACHE_MB",
        "mmap_cache_mb",
        "mmap cache budget in MiB (100)",
    ),
    (
        "MM_POOL_TIERS",
        "pool_tiers",
        "buffer tiers, `SIZExIDLE,...` in bytes",
    ),
    (
        "MM_ARENA_INITIAL_KB",
        "arena_initial_kb",
        "arena capacity per thread in KiB (64)",
    ),
    (
        "MM_ARENA_LIMIT_MB",
        "arena_limit_mb",
        "most MiB per request arena, 0 = none (64)",
    ),
    (
        "MM_INTERN_MAX_STRINGS",
        "intern_max_strings",
        "most interned strings (none)",
    ),
    (
        "MM_INTERN_MAX_MB",
        "intern_max_mb",
        "most interned string MiB (none)",
    ),
    (
        "MM_SAMPLER_CAPACITY",
        "sampler_capacity",
        "snapshots kept by the sampler (64)",
    ),
    (
        "MM_LEAK_WINDOW",
        "leak_window",
        "growing snapshots before a leak suspect (5)",
    ),
];

impl MemoryConfig {
    /// Sets the hard memory limit in bytes.
    pub fn with_max_memory(mut self, bytes: u64) -> Self {
        self.max_memory_bytes = Some(bytes);
        self
    }

    /// Sets the warning and critical thresholds in percent of the limit.
    pub fn with_thresholds(mut self, warn_percent: u8, critical_percent: u8) -> Self {
        self.warn_percent = warn_percent;
        self.critical_percent = critical_percent;
        self
    }

    /// Sets the mmap cache's byte budget.
    pub fn with_mmap_cache(mut self, bytes: u64) -> Self {
        self.mmap_cache_bytes = bytes;
        self
    }

    /// Sets the buffer-pool tiers as `(size, max_idle)` pairs, smallest first.
    pub fn with_pool_tiers(mut self, tiers: impl IntoIterator<Item = (usize, usize)>) -> Self {
        self.pool_tiers = tiers.into_iter().collect();
        self
    }

    /// Sets the per-request arena limit (`None`: unlimited).
    pub fn with_arena_limit(mut self, bytes: Option<usize>) -> Self {
        self.arena_limit_bytes = bytes;
        self
    }

    /// Sets the capacity reserved for each thread's arena on its first request.
    pub fn with_arena_initial(mut self, bytes: usize) -> Self {
        self.arena_initial_bytes = bytes;
        self
    }

    /// Sets the interner's limits.
    pub fn with_intern_limits(mut self, max_strings: Option<u64>, max_bytes: Option<u64>) -> Self {
        self.intern_max_strings = max_strings;
        self.intern_max_bytes = max_bytes;
        self
    }

    /// The defaults, then the TOML file named by `MM_CONFIG` (if set), then every `MM_*`
    /// variable of the process environment; validated.
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable (or file and key) and the value that is wrong.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// As [`from_env`](Self::from_env), with the variables given as `(name, value)` pairs
    /// (names that do not start with `MM_`, and `MM_` names that are not settings of this
    /// crate, are ignored; the latter are logged through `tracing` so a typo shows up).
    ///
    /// # Errors
    /// As [`from_env`](Self::from_env).
    pub fn from_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Self, ConfigError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(k, _)| k.as_ref().starts_with("MM_"))
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
            .collect();
        let mut config = match vars.iter().find(|(k, _)| k == "MM_CONFIG") {
            Some((_, path)) => Self::read_toml_file(Path::new(path))?,
            None => MemoryConfig::default(),
        };
        let mut raw = RawConfig::default();
        for (name, value) in &vars {
            raw.set_env(name, value)?;
        }
        raw.apply(&mut config, Source::env)?;
        config.validate()?;
        Ok(config)
    }

    /// The defaults overridden by a TOML document (keys as in the settings table); validated.
    ///
    /// # Errors
    /// [`ConfigError::Toml`] for a syntax error, an unknown key or a value of the wrong type;
    /// any validation error.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let config = Self::parse_toml(text, None)?;
        config.validate()?;
        Ok(config)
    }

    /// The defaults overridden by the TOML file at `path`; validated.
    ///
    /// # Errors
    /// [`ConfigError::File`] when it cannot be read; as [`from_toml_str`](Self::from_toml_str).
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let config = Self::read_toml_file(path.as_ref())?;
        config.validate()?;
        Ok(config)
    }

    fn read_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::File {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse_toml(&text, Some(path.to_path_buf()))
    }

    fn parse_toml(text: &str, path: Option<PathBuf>) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Toml {
            path: path.clone(),
            message: e.message().to_owned(),
        })?;
        let mut config = MemoryConfig::default();
        raw.apply(&mut config, |key| Source::toml(key, path.clone()))?;
        Ok(config)
    }

    /// Checks every field and that the parts fit together.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a zero limit, thresholds out of order or range, an mmap
    /// cache larger than the memory limit, bad pool tiers, a zero arena limit, zero limits
    /// of the interner or a zero sampler capacity or leak window.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &'static str, value: String, reason: String| ConfigError::Invalid {
            field,
            value,
            reason,
        };
        if let Some(limit) = self.max_memory_bytes {
            BudgetConfig::new(limit)
                .validate()
                .map_err(|e| invalid("max_memory", limit.to_string(), e.to_string()))?;
            if self.mmap_cache_bytes > limit {
                return Err(invalid(
                    "mmap_cache",
                    self.mmap_cache_bytes.to_string(),
                    format!(
                        "the mmap cache budget is larger than the memory limit ({limit} bytes)"
                    ),
                ));
            }
        }
        let mut thresholds = BudgetConfig::new(u64::MAX >> 8);
        thresholds.warning_percent = self.warn_percent;
        thresholds.critical_percent = self.critical_percent;
        thresholds.validate().map_err(|e| {
            invalid(
                "thresholds",
                format!(
                    "warn {}%, critical {}%",
                    self.warn_percent, self.critical_percent
                ),
                e.to_string(),
            )
        })?;
        if self.mmap_cache_bytes == 0 {
            return Err(invalid(
                "mmap_cache",
                "0".into(),
                "must be at least 1 byte".into(),
            ));
        }
        self.buffer_pool_config().validate().map_err(|e| {
            invalid(
                "pool_tiers",
                format!("{:?}", self.pool_tiers),
                e.to_string(),
            )
        })?;
        self.arena_config().validate().map_err(|e| {
            invalid(
                "arena",
                format!("{:?}", self.arena_limit_bytes),
                e.to_string(),
            )
        })?;
        for (field, value) in [
            ("intern_max_strings", self.intern_max_strings),
            ("intern_max_bytes", self.intern_max_bytes),
        ] {
            if value == Some(0) {
                return Err(invalid(
                    field,
                    "0".into(),
                    "a limit of 0 accepts nothing".into(),
                ));
            }
        }
        for (field, value) in [
            ("sampler_capacity", self.sampler_capacity),
            ("leak_window", self.leak_window),
        ] {
            if value == 0 {
                return Err(invalid(field, "0".into(), "must be at least 1".into()));
            }
        }
        if self.leak_window > self.sampler_capacity {
            return Err(invalid(
                "leak_window",
                self.leak_window.to_string(),
                format!(
                    "longer than the sampler capacity ({})",
                    self.sampler_capacity
                ),
            ));
        }
        Ok(())
    }

    /// The buffer pool's configuration.
    pub fn buffer_pool_config(&self) -> BufferPoolConfig {
        BufferPoolConfig::with_tiers(self.pool_tiers.iter().copied())
    }

    /// The configuration each thread's request arena gets.
    pub fn arena_config(&self) -> ArenaConfig {
        ArenaConfig::new()
            .with_initial_capacity(self.arena_initial_bytes)
            .with_allocation_limit(self.arena_limit_bytes)
    }

    /// The budget configuration for a limit of `limit` bytes.
    pub(crate) fn budget_config(&self, limit: u64) -> BudgetConfig {
        let mut c = BudgetConfig::new(limit);
        c.warning_percent = self.warn_percent;
        c.critical_percent = self.critical_percent;
        c
    }
}

/// Where a value came from, for error messages.
enum Source {
    Env(&'static str),
    Toml(&'static str, Option<PathBuf>),
}

impl Source {
    fn env(key: &'static str) -> Self {
        let var = SETTINGS
            .iter()
            .find(|(_, k, _)| *k == key)
            .map_or(key, |(var, _, _)| *var);
        Source::Env(var)
    }

    fn toml(key: &'static str, path: Option<PathBuf>) -> Self {
        Source::Toml(key, path)
    }

    fn error(self, value: String, reason: &str) -> ConfigError {
        match self {
            Source::Env(var) => ConfigError::Env {
                var,
                value,
                reason: reason.to_owned(),
            },
            Source::Toml(key, path) => ConfigError::Invalid {
                field: key,
                value: match path {
                    Some(p) => format!("{value} (in {})", p.display()),
                    None => value,
                },
                reason: reason.to_owned(),
            },
        }
    }
}

impl RawConfig {
    fn set_env(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        fn num<T: std::str::FromStr>(var: &'static str, value: &str) -> Result<T, ConfigError> {
            value.trim().parse().map_err(|_| ConfigError::Env {
                var,
                value: value.to_owned(),
                reason: "not a whole number".to_owned(),
            })
        }
        match name {
            "MM_CONFIG" => {}
            "MM_MAX_MEMORY_MB" => self.max_memory_mb = Some(num(SETTINGS[0].0, value)?),
            "MM_WARN_PERCENT" => self.warn_percent = Some(num(SETTINGS[1].0, value)?),
            "MM_CRITICAL_PERCENT" => self.critical_percent = Some(num(SETTINGS[2].0, value)?),
            "MM_MMAP_CACHE_MB" => self.mmap_cache_mb = Some(num(SETTINGS[3].0, value)?),
            "MM_POOL_TIERS" => self.pool_tiers = Some(parse_tiers(value)?),
            "MM_ARENA_INITIAL_KB" => self.arena_initial_kb = Some(num(SETTINGS[5].0, value)?),
            "MM_ARENA_LIMIT_MB" => self.arena_limit_mb = Some(num(SETTINGS[6].0, value)?),
            "MM_INTERN_MAX_STRINGS" => self.intern_max_strings = Some(num(SETTINGS[7].0, value)?),
            "MM_INTERN_MAX_MB" => self.intern_max_mb = Some(num(SETTINGS[8].0, value)?),
            "MM_SAMPLER_CAPACITY" => self.sampler_capacity = Some(num(SETTINGS[9].0, value)?),
            "MM_LEAK_WINDOW" => self.leak_window = Some(num(SETTINGS[10].0, value)?),
            // Other crates and tools use the `MM_` prefix too (test settings, the CLI's own
            // variables), so an unknown name is not an error; it is logged, so a typo of one
            // of ours still shows up.
            other => tracing::warn!(var = other, "ignoring unknown MM_ environment variable"),
        }
        Ok(())
    }

    /// Writes every set field into `config`, converting units with overflow checks.
    fn apply(
        self,
        config: &mut MemoryConfig,
        source: impl Fn(&'static str) -> Source,
    ) -> Result<(), ConfigError> {
        let mib = |key: &'static str, v: u64| {
            v.checked_mul(MIB)
                .ok_or_else(|| source(key).error(v.to_string(), "too large"))
        };
        if let Some(v) = self.max_memory_mb {
            if v == 0 {
                return Err(
                    source("max_memory_mb").error("0".into(), "the limit must be at least 1 MiB")
                );
            }
            config.max_memory_bytes = Some(mib("max_memory_mb", v)?);
        }
        if let Some(v) = self.warn_percent {
            config.warn_percent = v;
        }
        if let Some(v) = self.critical_percent {
            config.critical_percent = v;
        }
        if let Some(v) = self.mmap_cache_mb {
            if v == 0 {
                return Err(source("mmap_cache_mb").error("0".into(), "must be at least 1 MiB"));
            }
            config.mmap_cache_bytes = mib("mmap_cache_mb", v)?;
        }
        if let Some(v) = self.pool_tiers {
            config.pool_tiers = v;
        }
        if let Some(v) = self.arena_initial_kb {
            config.arena_initial_bytes = v
                .checked_mul(1024)
                .ok_or_else(|| source("arena_initial_kb").error(v.to_string(), "too large"))?;
        }
        if let Some(v) = self.arena_limit_mb {
            config.arena_limit_bytes =
                match v {
                    0 => None,
                    v => Some(v.checked_mul(1 << 20).ok_or_else(|| {
                        source("arena_limit_mb").error(v.to_string(), "too large")
                    })?),
                };
        }
        if let Some(v) = self.intern_max_strings {
            config.intern_max_strings = Some(v);
        }
        if let Some(v) = self.intern_max_mb {
            config.intern_max_bytes = Some(mib("intern_max_mb", v)?);
        }
        if let Some(v) = self.sampler_capacity {
            config.sampler_capacity = v;
        }
        if let Some(v) = self.leak_window {
            config.leak_window = v;
        }
        Ok(())
    }
}

/// Parses `4096x64,65536x16` into `(size, max_idle)` pairs.
fn parse_tiers(text: &str) -> Result<Vec<(usize, usize)>, ConfigError> {
    let bad = |reason: &str| ConfigError::Env {
        var: "MM_POOL_TIERS",
        value: text.to_owned(),
        reason: reason.to_owned(),
    };
    let mut tiers = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (size, idle) = part
            .split_once(['x', 'X'])
            .ok_or_else(|| bad("expected SIZExIDLE pairs separated by commas, e.g. 4096x64"))?;
        let size = size
            .trim()
            .parse()
            .map_err(|_| bad("a tier size is not a whole number"))?;
        let idle = idle
            .trim()
            .parse()
            .map_err(|_| bad("an idle count is not a whole number"))?;
        tiers.push((size, idle));
    }
    if tiers.is_empty() {
        return Err(bad("no tiers given"));
    }
    Ok(tiers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_parse() {
        assert_eq!(
            parse_tiers("4096x64, 65536X16").unwrap(),
            vec![(4096, 64), (65536, 16)]
        );
        assert!(parse_tiers("4096").is_err());
        assert!(parse_tiers("ax1").is_err());
        assert!(parse_tiers(" , ").is_err());
    }

    #[test]
    fn defaults_validate() {
        MemoryConfig::default().validate().unwrap();
    }
}
