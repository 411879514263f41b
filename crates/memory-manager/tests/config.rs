//! Every configuration error, from code, the environment and TOML.

use memory_manager::{ConfigError, MemoryConfig, MemoryManager};

fn env(pairs: &[(&str, &str)]) -> Result<MemoryConfig, ConfigError> {
    MemoryConfig::from_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

fn env_err(pairs: &[(&str, &str)]) -> String {
    env(pairs).expect_err("should be refused").to_string()
}

#[test]
fn env_values_are_read_with_units() {
    let c = env(&[
        ("MM_MAX_MEMORY_MB", "2048"),
        ("MM_MMAP_CACHE_MB", "64"),
        ("MM_WARN_PERCENT", "70"),
        ("MM_CRITICAL_PERCENT", "85"),
        ("MM_POOL_TIERS", "1024x8,8192x4"),
        ("MM_ARENA_INITIAL_KB", "16"),
        ("MM_ARENA_LIMIT_MB", "0"),
        ("MM_INTERN_MAX_STRINGS", "1000"),
        ("MM_INTERN_MAX_MB", "2"),
        ("PATH", "/usr/bin"),
    ])
    .unwrap();
    assert_eq!(c.max_memory_bytes(), Some(2048 << 20));
    assert_eq!(c.mmap_cache_bytes(), Some(64 << 20));
    assert_eq!((c.warn_percent(), c.critical_percent()), (70, 85));
    assert_eq!(c.pool_tiers(), [(1024, 8), (8192, 4)]);
    assert_eq!(c.arena_initial_bytes(), 16 << 10);
    assert_eq!(c.arena_limit_bytes(), None);
    assert_eq!(c.intern_max_strings(), Some(1000));
    assert_eq!(c.intern_max_bytes(), Some(2 << 20));
}

#[test]
fn env_errors_name_the_variable_and_value() {
    let e = env_err(&[("MM_MAX_MEMORY_MB", "lots")]);
    assert!(e.contains("MM_MAX_MEMORY_MB") && e.contains("lots"), "{e}");
    let e = env_err(&[("MM_MAX_MEMORY_MB", "0")]);
    assert!(e.contains("MM_MAX_MEMORY_MB") && e.contains("\"0\""), "{e}");
    let e = env_err(&[("MM_WARN_PERCENT", "95"), ("MM_CRITICAL_PERCENT", "90")]);
    assert!(e.contains("warn 95%") && e.contains("critical 90%"), "{e}");
    let e = env_err(&[("MM_WARN_PERCENT", "300")]);
    assert!(e.contains("MM_WARN_PERCENT"), "{e}");
    let e = env_err(&[("MM_MAX_MEMORY_MB", "50"), ("MM_MMAP_CACHE_MB", "100")]);
    assert!(
        e.contains("mmap_cache") && e.contains("larger than the memory limit"),
        "{e}"
    );
    let e = env_err(&[("MM_POOL_TIERS", "65536x4,4096x4")]);
    assert!(e.contains("pool_tiers"), "{e}");
    let e = env_err(&[("MM_POOL_TIERS", "4096")]);
    assert!(
        e.contains("MM_POOL_TIERS") && e.contains("SIZExIDLE"),
        "{e}"
    );
    let e = env_err(&[("MM_POOL_TIERS", "0x4")]);
    assert!(e.contains("pool_tiers"), "{e}");
    // Other tools' MM_ variables are not ours to refuse.
    let c = env(&[
        ("MM_GGUF_TEST_MODEL", "/models/x.gguf"),
        ("MM_MAX_MEMORY_MB", "640"),
    ])
    .unwrap();
    assert_eq!(c.max_memory_bytes(), Some(640 << 20));
    let e = env_err(&[("MM_MMAP_CACHE_MB", "18446744073709551615")]);
    assert!(
        e.contains("MM_MMAP_CACHE_MB") && e.contains("too large"),
        "{e}"
    );
    let e = env_err(&[("MM_INTERN_MAX_STRINGS", "0")]);
    assert!(e.contains("intern_max_strings"), "{e}");
    let e = env_err(&[("MM_SAMPLER_CAPACITY", "0")]);
    assert!(e.contains("sampler_capacity"), "{e}");
    let e = env_err(&[("MM_LEAK_WINDOW", "100")]);
    assert!(e.contains("leak_window"), "{e}");
}

#[test]
fn code_errors() {
    let e = MemoryConfig::default()
        .with_max_memory(0)
        .validate()
        .unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::Invalid {
                field: "max_memory",
                ..
            }
        ),
        "{e}"
    );
    let e = MemoryConfig::default()
        .with_thresholds(90, 90)
        .validate()
        .unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::Invalid {
                field: "thresholds",
                ..
            }
        ),
        "{e}"
    );
    let e = MemoryConfig::default()
        .with_mmap_cache(0)
        .validate()
        .unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::Invalid {
                field: "mmap_cache",
                ..
            }
        ),
        "{e}"
    );
    let e = MemoryConfig::default()
        .with_arena_limit(Some(0))
        .validate()
        .unwrap_err();
    assert!(
        matches!(e, ConfigError::Invalid { field: "arena", .. }),
        "{e}"
    );
    let e = MemoryConfig::default()
        .with_pool_tiers([])
        .validate()
        .unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::Invalid {
                field: "pool_tiers",
                ..
            }
        ),
        "{e}"
    );
    let e = MemoryConfig::default()
        .with_max_memory(1 << 62)
        .validate()
        .unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::Invalid {
                field: "max_memory",
                ..
            }
        ),
        "{e}"
    );
    // The manager refuses what validate refuses.
    assert!(MemoryManager::new(MemoryConfig::default().with_thresholds(50, 40)).is_err());
}

#[test]
fn toml_file_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mm.toml");
    std::fs::write(
        &path,
        "max_memory_mb = 1024\nmmap_cache_mb = 10\npool_tiers = [[4096, 8], [65536, 2]]\n",
    )
    .unwrap();
    let c = MemoryConfig::from_toml_file(&path).unwrap();
    assert_eq!(c.max_memory_bytes(), Some(1 << 30));
    assert_eq!(c.mmap_cache_bytes(), Some(10 << 20));
    assert_eq!(c.pool_tiers(), [(4096, 8), (65536, 2)]);

    // MM_CONFIG names the file; variables override it.
    let path_str = path.to_str().unwrap();
    let c = env(&[("MM_CONFIG", path_str), ("MM_MMAP_CACHE_MB", "20")]).unwrap();
    assert_eq!(
        (c.max_memory_bytes(), c.mmap_cache_bytes()),
        (Some(1 << 30), Some(20 << 20))
    );

    let e = MemoryConfig::from_toml_str("max_memroy_mb = 3").unwrap_err();
    assert!(
        matches!(e, ConfigError::Toml { .. }) && e.to_string().contains("max_memroy_mb"),
        "{e}"
    );
    let e = MemoryConfig::from_toml_str("warn_percent = \"high\"").unwrap_err();
    assert!(matches!(e, ConfigError::Toml { .. }), "{e}");
    let e = MemoryConfig::from_toml_str("max_memory_mb = 1\nmmap_cache_mb = 2").unwrap_err();
    assert!(e.to_string().contains("mmap_cache"), "{e}");
    let e = MemoryConfig::from_toml_file(dir.path().join("missing.toml")).unwrap_err();
    assert!(
        matches!(e, ConfigError::File { .. }) && e.to_string().contains("missing.toml"),
        "{e}"
    );
    let e = env(&[("MM_CONFIG", "/nonexistent/mm.toml")]).unwrap_err();
    assert!(matches!(e, ConfigError::File { .. }), "{e}");
}

#[test]
fn defaults_follow_the_limit() {
    // The limit alone is a valid configuration: the cache budget scales down with it.
    let c = env(&[("MM_MAX_MEMORY_MB", "64")]).unwrap();
    assert_eq!(c.mmap_cache_bytes(), None);
    let m = MemoryManager::new(c).unwrap();
    assert_eq!(m.mmap_cache().config().budget_bytes(), 16 << 20);
    let big = MemoryManager::new(MemoryConfig::new().with_max_memory(8 << 30)).unwrap();
    assert_eq!(
        big.mmap_cache().config().budget_bytes(),
        100 << 20,
        "capped at 100 MiB"
    );
    // An explicit setting above the limit is a typed error naming both values.
    let e = MemoryConfig::new()
        .with_max_memory(64 << 20)
        .with_mmap_cache(100 << 20)
        .validate()
        .unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::AboveLimit {
                field: "mmap_cache",
                value,
                limit
            } if value == 100 << 20 && limit == 64 << 20
        ),
        "{e}"
    );
    let text = e.to_string();
    assert!(
        text.contains("104857600") && text.contains("67108864"),
        "{text}"
    );
}

#[test]
fn the_config_embeds_in_an_application_config() {
    #[derive(serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct App {
        name: String,
        memory: MemoryConfig,
    }
    let app: App = toml::from_str(
        "name = \"svc\"\n[memory]\nmax_memory_mb = 64\nwarn_percent = 70\npool_tiers = [[4096, 4]]\n",
    )
    .unwrap();
    assert_eq!(app.memory.max_memory_bytes(), Some(64 << 20));
    assert_eq!(app.memory.warn_percent(), 70);
    assert_eq!(app.memory.pool_tiers(), [(4096, 4)]);
    let again: App = toml::from_str(&toml::to_string(&app).unwrap()).unwrap();
    assert_eq!(again.memory, app.memory);
    // Unknown keys are errors naming the key; invalid values are refused by validate().
    let e = toml::from_str::<App>("name = \"x\"\n[memory]\nmmap_cahce_mb = 1\n")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("mmap_cahce_mb"), "{e}");
    let e = serde_json::from_str::<MemoryConfig>(r#"{"max_memory_mb": 64, "mmap_cache_mb": 100}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("mmap_cache") && e.contains("67108864"), "{e}");
    let e = serde_json::from_str::<MemoryConfig>(r#"{"max_memory_mb": 64, "max_memory_bytes": 5}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_memory_mb"), "{e}");
}

#[test]
fn the_parts_configs_serialize_and_refuse_unknown_keys() {
    use mm_mmap::{MmapCacheConfig, Revalidate};
    fn round<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
        v: &T,
    ) {
        let back: T = serde_json::from_str(&serde_json::to_string(v).unwrap()).unwrap();
        assert_eq!(&back, v);
    }
    let config = MemoryConfig::new().with_max_memory(1 << 30);
    round(&config.arena_config());
    round(&config.buffer_pool_config());
    round(&config.budget_config(1 << 30));
    round(&mm_intern::InternerConfig::default().max_strings(9));
    let cache: MmapCacheConfig =
        serde_json::from_str(r#"{"budget_bytes": 4096, "revalidate": "never"}"#).unwrap();
    assert_eq!(
        (cache.budget_bytes(), cache.revalidate()),
        (4096, Revalidate::Never)
    );
    let budget: mm_budget::BudgetConfig = serde_json::from_str(r#"{"limit": 100}"#).unwrap();
    assert_eq!(budget, mm_budget::BudgetConfig::new(100));
    for bad in [
        serde_json::from_str::<MmapCacheConfig>(r#"{"budget": 1}"#).err(),
        serde_json::from_str::<mm_arena::ArenaConfig>(r#"{"limit": 1}"#).err(),
        serde_json::from_str::<mm_budget::BudgetConfig>(r#"{"limit": 1, "warn": 2}"#).err(),
        serde_json::from_str::<mm_intern::InternerConfig>(r#"{"shard": 2}"#).err(),
        serde_json::from_str::<mm_pool::BufferPoolConfig>(r#"{"tier": []}"#).err(),
    ] {
        let e = bad.expect("unknown key refused").to_string();
        assert!(e.contains("unknown field"), "{e}");
    }
}

#[test]
fn pressure_delivery_from_env_and_toml() {
    use memory_manager::PressureDelivery;
    let c = env(&[("MM_PRESSURE_DELIVERY", "thread")]).unwrap();
    assert_eq!(c.pressure_delivery(), PressureDelivery::Thread);
    let c = MemoryConfig::from_toml_str("pressure_delivery = \"inline\"").unwrap();
    assert_eq!(c.pressure_delivery(), PressureDelivery::Inline);
    let e = env_err(&[("MM_PRESSURE_DELIVERY", "later")]);
    assert!(
        e.contains("MM_PRESSURE_DELIVERY") && e.contains("later"),
        "{e}"
    );
}
