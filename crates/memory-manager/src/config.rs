//! [`MemoryConfig`]: defaults, a builder, environment variables and TOML files.

use std::path::{Path, PathBuf};

use mm_arena::ArenaConfig;
use mm_budget::BudgetConfig;
use mm_pool::BufferPoolConfig;

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
/// Build it with [`MemoryConfig::new`] (equal to `Default`) and the `with_*` methods, from
/// environment variables ([`MemoryConfig::from_env`]), from a TOML file
/// ([`MemoryConfig::from_toml_file`]), or inside an application's own configuration through
/// serde: the serialized form uses the same keys as the TOML file (`max_memory_mb`,
/// `mmap_cache_mb`, ...; each size also as `*_bytes` for values that are not whole units),
/// and an unknown key is an error that names it.
///
/// ```
/// use memory_manager::MemoryConfig;
///
/// #[derive(serde::Deserialize)]
/// struct AppConfig { port: u16, memory: MemoryConfig }
///
/// let app: AppConfig = toml::from_str("port = 8080\n[memory]\nmax_memory_mb = 64\n")?;
/// assert_eq!(app.memory.max_memory_bytes(), Some(64 << 20));
/// // The cache budget follows the limit: a quarter of it, at most 100 MiB.
/// assert_eq!(app.memory.mmap_cache_bytes_for(64 << 20), 16 << 20);
/// assert!(toml::from_str::<AppConfig>("port = 1\n[memory]\nmax_memroy_mb = 1").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Nothing is checked until [`validate`](Self::validate) (which
/// [`MemoryManager::new`](crate::MemoryManager::new), `from_env`, the TOML readers and
/// deserialization call).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "RawConfig", into = "RawConfig")]
pub struct MemoryConfig {
    max_memory_bytes: Option<u64>,
    warn_percent: u8,
    critical_percent: u8,
    mmap_cache_bytes: Option<u64>,
    pool_tiers: Option<Vec<(usize, usize)>>,
    arena_initial_bytes: usize,
    arena_limit_bytes: Option<usize>,
    intern_max_strings: Option<u64>,
    intern_max_bytes: Option<u64>,
    sampler_capacity: usize,
    leak_window: usize,
    pressure_delivery: PressureDelivery,
}

/// Where pressure handlers (and components' pressure hooks) run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PressureDelivery {
    /// On the thread whose reservation crossed the threshold, before that reservation
    /// returns: deterministic, for tests and single-threaded tools. The default.
    #[default]
    Inline,
    /// On a dedicated thread named `mm-pressure`, started on the first event: the request
    /// that tripped the threshold only queues the event and goes on.
    Thread,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// The settings as they come from a TOML file, the environment or serde: every field
/// optional, sizes in the units their names say (`*_bytes` for exact byte counts).
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_memory_mb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_memory_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warn_percent: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    critical_percent: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mmap_cache_mb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mmap_cache_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pool_tiers: Option<Vec<(usize, usize)>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arena_initial_kb: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arena_initial_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arena_limit_mb: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arena_limit_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    intern_max_strings: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    intern_max_mb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    intern_max_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sampler_capacity: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    leak_window: Option<usize>,
    /// `inline` or `thread`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pressure_delivery: Option<String>,
}

impl TryFrom<RawConfig> for MemoryConfig {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        let mut config = MemoryConfig::new();
        raw.apply(&mut config, |key| Source::toml(key, None))?;
        config.validate()?;
        Ok(config)
    }
}

/// Whole units in the unit key, anything else in the bytes key.
fn split_unit(bytes: u64, unit: u64) -> (Option<u64>, Option<u64>) {
    if bytes.is_multiple_of(unit) {
        (Some(bytes / unit), None)
    } else {
        (None, Some(bytes))
    }
}

impl From<MemoryConfig> for RawConfig {
    fn from(c: MemoryConfig) -> Self {
        let (max_memory_mb, max_memory_bytes) = c
            .max_memory_bytes
            .map_or((None, None), |b| split_unit(b, MIB));
        let (mmap_cache_mb, mmap_cache_bytes) = c
            .mmap_cache_bytes
            .map_or((None, None), |b| split_unit(b, MIB));
        let (intern_max_mb, intern_max_bytes) = c
            .intern_max_bytes
            .map_or((None, None), |b| split_unit(b, MIB));
        let usize_split = |b: usize, unit: usize| {
            if b.is_multiple_of(unit) {
                (Some(b / unit), None)
            } else {
                (None, Some(b))
            }
        };
        let (arena_initial_kb, arena_initial_bytes) = usize_split(c.arena_initial_bytes, 1024);
        let (arena_limit_mb, arena_limit_bytes) = match c.arena_limit_bytes {
            None => (Some(0), None),
            Some(b) => usize_split(b, 1 << 20),
        };
        RawConfig {
            max_memory_mb,
            max_memory_bytes,
            warn_percent: Some(c.warn_percent),
            critical_percent: Some(c.critical_percent),
            mmap_cache_mb,
            mmap_cache_bytes,
            pool_tiers: c.pool_tiers,
            arena_initial_kb,
            arena_initial_bytes,
            arena_limit_mb,
            arena_limit_bytes,
            intern_max_strings: c.intern_max_strings,
            intern_max_mb,
            intern_max_bytes,
            sampler_capacity: Some(c.sampler_capacity),
            leak_window: Some(c.leak_window),
            pressure_delivery: Some(
                match c.pressure_delivery {
                    PressureDelivery::Inline => "inline",
                    PressureDelivery::Thread => "thread",
                }
                .to_owned(),
            ),
        }
    }
}

/// One row of the settings table: environment variable, TOML key, meaning.
///
/// The crate docs render this table; [`MemoryConfig::from_env`] reads exactly these names.
pub const SETTINGS: [(&str, &str, &str); 12] = [
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
        "mmap cache budget in MiB (limit / 4, at most 100)",
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
    (
        "MM_PRESSURE_DELIVERY",
        "pressure_delivery",
        "where pressure handlers run: inline or thread (inline)",
    ),
];

impl MemoryConfig {
    /// The defaults: limit derived from the system, thresholds 80 % / 90 %, mmap cache
    /// following the limit, [`DEFAULT_POOL_TIERS`], 64 KiB arenas limited to 64 MiB per
    /// request, an unlimited interner, a sampler of 64 snapshots with a leak window of 5.
    pub const fn new() -> Self {
        MemoryConfig {
            max_memory_bytes: None,
            warn_percent: mm_budget::DEFAULT_WARNING_PERCENT,
            critical_percent: mm_budget::DEFAULT_CRITICAL_PERCENT,
            mmap_cache_bytes: None,
            pool_tiers: None,
            arena_initial_bytes: DEFAULT_ARENA_INITIAL_BYTES,
            arena_limit_bytes: Some(DEFAULT_ARENA_LIMIT_BYTES),
            intern_max_strings: None,
            intern_max_bytes: None,
            sampler_capacity: DEFAULT_SAMPLER_CAPACITY,
            leak_window: DEFAULT_LEAK_WINDOW,
            pressure_delivery: PressureDelivery::Inline,
        }
    }

    /// Sets where pressure handlers run. Default [`PressureDelivery::Inline`]; a service
    /// wants [`PressureDelivery::Thread`].
    pub const fn with_pressure_delivery(mut self, delivery: PressureDelivery) -> Self {
        self.pressure_delivery = delivery;
        self
    }

    /// Where pressure handlers run.
    pub const fn pressure_delivery(&self) -> PressureDelivery {
        self.pressure_delivery
    }

    /// Sets the hard memory limit in bytes. Default: derived from the cgroup limit or the
    /// machine's memory ([`mm_budget::sys::default_limit`]). Range `1..=2^56`.
    pub const fn with_max_memory(mut self, bytes: u64) -> Self {
        self.max_memory_bytes = Some(bytes);
        self
    }

    /// Sets the warning and critical thresholds in percent of the limit. Default 80 and 90;
    /// warning in `1..=99`, below critical, critical in `2..=100`.
    pub const fn with_thresholds(mut self, warn_percent: u8, critical_percent: u8) -> Self {
        self.warn_percent = warn_percent;
        self.critical_percent = critical_percent;
        self
    }

    /// Sets the mmap cache's byte budget. Default: follows the limit (a quarter of it, at
    /// most [`DEFAULT_MMAP_CACHE_BYTES`]). Range `1..=limit`.
    pub const fn with_mmap_cache(mut self, bytes: u64) -> Self {
        self.mmap_cache_bytes = Some(bytes);
        self
    }

    /// Sets the buffer-pool tiers as `(size in bytes, most idle buffers)` pairs, smallest
    /// first. Default [`DEFAULT_POOL_TIERS`].
    pub fn with_pool_tiers(mut self, tiers: impl IntoIterator<Item = (usize, usize)>) -> Self {
        self.pool_tiers = Some(tiers.into_iter().collect());
        self
    }

    /// Sets the most bytes one request may take from its arena (`None`: unlimited). Default
    /// [`DEFAULT_ARENA_LIMIT_BYTES`]; at least 1 and at least the initial capacity.
    pub const fn with_arena_limit(mut self, bytes: Option<usize>) -> Self {
        self.arena_limit_bytes = bytes;
        self
    }

    /// Sets the capacity reserved for each thread's arena on its first request, in bytes
    /// (0: grow on demand). Default [`DEFAULT_ARENA_INITIAL_BYTES`].
    pub const fn with_arena_initial(mut self, bytes: usize) -> Self {
        self.arena_initial_bytes = bytes;
        self
    }

    /// Sets the interner's limits: most distinct strings and most string bytes (`None`: no
    /// limit, the default; a limit of 0 is refused).
    pub const fn with_intern_limits(
        mut self,
        max_strings: Option<u64>,
        max_bytes: Option<u64>,
    ) -> Self {
        self.intern_max_strings = max_strings;
        self.intern_max_bytes = max_bytes;
        self
    }

    /// Sets how many snapshots the [`Sampler`](crate::Sampler) keeps (default 64, at
    /// least one) and after how many consecutive growing ones a component is a leak
    /// suspect (default 5, at most the capacity).
    pub const fn with_sampler(mut self, capacity: usize, leak_window: usize) -> Self {
        self.sampler_capacity = capacity;
        self.leak_window = leak_window;
        self
    }

    /// The configured hard limit (`None`: derived from the system).
    pub const fn max_memory_bytes(&self) -> Option<u64> {
        self.max_memory_bytes
    }

    /// The warning threshold, percent.
    pub const fn warn_percent(&self) -> u8 {
        self.warn_percent
    }

    /// The critical threshold, percent.
    pub const fn critical_percent(&self) -> u8 {
        self.critical_percent
    }

    /// The explicitly set mmap cache budget (`None`: follows the limit).
    pub const fn mmap_cache_bytes(&self) -> Option<u64> {
        self.mmap_cache_bytes
    }

    /// The mmap cache budget under a limit of `limit` bytes: the explicit setting, or a
    /// quarter of the limit capped at [`DEFAULT_MMAP_CACHE_BYTES`] (at least 1 byte).
    pub fn mmap_cache_bytes_for(&self, limit: u64) -> u64 {
        self.mmap_cache_bytes
            .unwrap_or_else(|| (limit / 4).clamp(1, DEFAULT_MMAP_CACHE_BYTES))
    }

    /// The buffer-pool tiers.
    pub fn pool_tiers(&self) -> &[(usize, usize)] {
        self.pool_tiers.as_deref().unwrap_or(&DEFAULT_POOL_TIERS)
    }

    /// The arena capacity reserved per thread.
    pub const fn arena_initial_bytes(&self) -> usize {
        self.arena_initial_bytes
    }

    /// The per-request arena limit (`None`: unlimited).
    pub const fn arena_limit_bytes(&self) -> Option<usize> {
        self.arena_limit_bytes
    }

    /// The interner's string-count limit.
    pub const fn intern_max_strings(&self) -> Option<u64> {
        self.intern_max_strings
    }

    /// The interner's byte limit.
    pub const fn intern_max_bytes(&self) -> Option<u64> {
        self.intern_max_bytes
    }

    /// Snapshots the sampler keeps.
    pub const fn sampler_capacity(&self) -> usize {
        self.sampler_capacity
    }

    /// Growing snapshots before a leak suspect.
    pub const fn leak_window(&self) -> usize {
        self.leak_window
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
            None => MemoryConfig::new(),
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
        let mut config = MemoryConfig::new();
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
            self.check_within(limit)?;
        }
        let thresholds = BudgetConfig::new(u64::MAX >> 8)
            .with_warning_percent(self.warn_percent)
            .with_critical_percent(self.critical_percent);
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
        if self.mmap_cache_bytes == Some(0) {
            return Err(invalid(
                "mmap_cache",
                "0".into(),
                "must be at least 1 byte".into(),
            ));
        }
        self.buffer_pool_config().validate().map_err(|e| {
            invalid(
                "pool_tiers",
                format!("{:?}", self.pool_tiers()),
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

    /// Checks the explicit settings that must fit under the memory limit `limit`.
    ///
    /// # Errors
    /// [`ConfigError::AboveLimit`] naming the setting, its value and the limit.
    pub fn check_within(&self, limit: u64) -> Result<(), ConfigError> {
        match self.mmap_cache_bytes {
            Some(value) if value > limit => Err(ConfigError::AboveLimit {
                field: "mmap_cache",
                value,
                limit,
            }),
            _ => Ok(()),
        }
    }

    /// The buffer pool's configuration.
    pub fn buffer_pool_config(&self) -> BufferPoolConfig {
        BufferPoolConfig::with_tiers(self.pool_tiers().iter().copied())
    }

    /// The configuration each thread's request arena gets.
    pub fn arena_config(&self) -> ArenaConfig {
        ArenaConfig::new()
            .with_initial_capacity(self.arena_initial_bytes)
            .with_allocation_limit(self.arena_limit_bytes)
    }

    /// The budget configuration for a limit of `limit` bytes.
    pub fn budget_config(&self, limit: u64) -> BudgetConfig {
        BudgetConfig::new(limit)
            .with_warning_percent(self.warn_percent)
            .with_critical_percent(self.critical_percent)
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
            "MM_PRESSURE_DELIVERY" => self.pressure_delivery = Some(value.trim().to_owned()),
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
        let one_of = |unit_key: &'static str, set: (bool, bool)| match set {
            (true, true) => Err(source(unit_key).error(
                "both set".into(),
                "give the size in one key only (the unit key or the *_bytes key)",
            )),
            _ => Ok(()),
        };
        one_of(
            "max_memory_mb",
            (
                self.max_memory_mb.is_some(),
                self.max_memory_bytes.is_some(),
            ),
        )?;
        one_of(
            "mmap_cache_mb",
            (
                self.mmap_cache_mb.is_some(),
                self.mmap_cache_bytes.is_some(),
            ),
        )?;
        one_of(
            "arena_initial_kb",
            (
                self.arena_initial_kb.is_some(),
                self.arena_initial_bytes.is_some(),
            ),
        )?;
        one_of(
            "arena_limit_mb",
            (
                self.arena_limit_mb.is_some(),
                self.arena_limit_bytes.is_some(),
            ),
        )?;
        one_of(
            "intern_max_mb",
            (
                self.intern_max_mb.is_some(),
                self.intern_max_bytes.is_some(),
            ),
        )?;
        if let Some(v) = self.max_memory_bytes {
            if v == 0 {
                return Err(source("max_memory_bytes")
                    .error("0".into(), "the limit must be at least 1 byte"));
            }
            config.max_memory_bytes = Some(v);
        }
        if let Some(v) = self.mmap_cache_bytes {
            config.mmap_cache_bytes = Some(v);
        }
        if let Some(v) = self.arena_initial_bytes {
            config.arena_initial_bytes = v;
        }
        if let Some(v) = self.arena_limit_bytes {
            config.arena_limit_bytes = (v != 0).then_some(v);
        }
        if let Some(v) = self.intern_max_bytes {
            config.intern_max_bytes = Some(v);
        }
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
            config.mmap_cache_bytes = Some(mib("mmap_cache_mb", v)?);
        }
        if let Some(v) = self.pool_tiers {
            config.pool_tiers = Some(v);
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
        if let Some(v) = self.pressure_delivery {
            config.pressure_delivery = match v.as_str() {
                "inline" => PressureDelivery::Inline,
                "thread" => PressureDelivery::Thread,
                _ => {
                    return Err(
                        source("pressure_delivery").error(v, "expected \"inline\" or \"thread\"")
                    );
                }
            };
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
        assert_eq!(MemoryConfig::new(), MemoryConfig::default());
    }

    #[test]
    fn serde_round_trips_exact_sizes() {
        let c = MemoryConfig::new()
            .with_max_memory((64 << 20) + 1)
            .with_mmap_cache(3 << 20)
            .with_arena_limit(None)
            .with_arena_initial(1000)
            .with_intern_limits(Some(5), Some(7 << 20))
            .with_pool_tiers([(4096, 2)]);
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("max_memory_bytes = 67108865"), "{text}");
        assert!(text.contains("mmap_cache_mb = 3"), "{text}");
        let back: MemoryConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
        let json = serde_json::to_string(&MemoryConfig::new()).unwrap();
        assert_eq!(
            serde_json::from_str::<MemoryConfig>(&json).unwrap(),
            MemoryConfig::new()
        );
    }
}
