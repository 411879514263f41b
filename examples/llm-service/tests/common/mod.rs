//! Starts the service and the upstream stub on ephemeral loopback ports, over a synthetic
//! GGUF model written here (a small SentencePiece-style vocabulary and an F32 embedding
//! table) or the real model from `MM_GGUF_TEST_MODEL`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use llm_service::stub::{RECORDED, Stub};
use llm_service::{ModelSlot, Service, ServiceConfig};
use memory_manager::{MemoryConfig, MemoryManager, PressureDelivery};
use mm_gguf::types::GgmlType;
use mm_gguf::{GgufWriter, MetaValue, ValueType};

/// The synthetic model's name, width and window.
pub const MODEL: &str = "tiny-embedder";
pub const DIMS: usize = 32;
pub const WINDOW: u32 = 512;

/// The vocabulary: specials, `▁`, the letters, `▁` + each letter, a few words.
pub fn pieces() -> Vec<String> {
    let mut p: Vec<String> = ["<unk>", "<s>", "</s>", "\u{2581}"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for c in 'a'..='z' {
        p.push(c.to_string());
    }
    for c in 'a'..='z' {
        p.push(format!("\u{2581}{c}"));
    }
    for w in ["hello", "world", "memory", "model"] {
        p.push(format!("\u{2581}{w}"));
    }
    p
}

/// Value `j` of embedding row `r`: distinct, deterministic, not all positive.
pub fn row_value(r: usize, j: usize) -> f32 {
    (((r * 31 + j * 7) % 23) as f32 - 11.0) / 8.0
}

/// Writes the synthetic model to `path`.
pub fn write_model(path: &Path) {
    let pieces = pieces();
    let n = pieces.len();
    let scores: Vec<MetaValue> = pieces
        .iter()
        .enumerate()
        .map(|(i, p)| {
            MetaValue::F32(match i {
                0..=2 => 0.0,
                _ => -(10.0 - p.chars().count() as f32),
            })
        })
        .collect();
    let types: Vec<MetaValue> = (0..n)
        .map(|i| {
            MetaValue::I32(match i {
                0 => 2,
                1 | 2 => 3,
                _ => 1,
            })
        })
        .collect();
    let mut data = Vec::with_capacity(n * DIMS * 4);
    for r in 0..n {
        for j in 0..DIMS {
            data.extend_from_slice(&row_value(r, j).to_le_bytes());
        }
    }
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", MetaValue::String("llama".into()))
        .unwrap();
    w.add_metadata("general.name", MetaValue::String(MODEL.into()))
        .unwrap();
    w.add_metadata("llama.context_length", MetaValue::U32(WINDOW))
        .unwrap();
    w.add_metadata("tokenizer.ggml.model", MetaValue::String("llama".into()))
        .unwrap();
    w.add_metadata("tokenizer.ggml.tokens", MetaValue::strings(pieces))
        .unwrap();
    w.add_metadata(
        "tokenizer.ggml.scores",
        MetaValue::Array(ValueType::F32, scores),
    )
    .unwrap();
    w.add_metadata(
        "tokenizer.ggml.token_type",
        MetaValue::Array(ValueType::I32, types),
    )
    .unwrap();
    w.add_tensor(
        "token_embd.weight",
        GgmlType::F32,
        &[DIMS as u64, n as u64],
        &data,
    )
    .unwrap();
    w.write_file(path).unwrap();
}

/// The real model, or `None` (saying the test was skipped; a failure with
/// `MM_GGUF_REQUIRE_REFERENCE` set).
pub fn real_model() -> Option<PathBuf> {
    match std::env::var_os("MM_GGUF_TEST_MODEL") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            assert!(
                std::env::var_os("MM_GGUF_REQUIRE_REFERENCE").is_none(),
                "MM_GGUF_REQUIRE_REFERENCE is set but MM_GGUF_TEST_MODEL is not"
            );
            eprintln!(
                "SKIPPED: MM_GGUF_TEST_MODEL is not set; \
                 `export MM_GGUF_TEST_MODEL=$(bash .ci/python.sh | tail -n1)` to run this test"
            );
            None
        }
    }
}

/// How to start a service.
pub struct Options {
    pub limit_mb: u64,
    pub pace: Duration,
    pub stream_reserve: u64,
    pub max_body_bytes: usize,
    pub model: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            limit_mb: 256,
            pace: Duration::ZERO,
            stream_reserve: 256 << 10,
            max_body_bytes: 64 << 10,
            model: None,
        }
    }
}

/// A running service and stub.
pub struct Harness {
    pub base: String,
    pub service: Service,
    pub stub: Arc<Stub>,
    pub http: reqwest::Client,
    pub model_name: String,
    pub model_path: PathBuf,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub async fn start(opts: Options) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let (path, name) = match &opts.model {
        Some(p) => (
            p.clone(),
            p.file_stem().unwrap().to_string_lossy().into_owned(),
        ),
        None => {
            let p = dir.path().join("tiny-embedder.gguf");
            write_model(&p);
            (p, MODEL.to_owned())
        }
    };
    let stub = Stub::new(RECORDED, opts.pace);
    let stub_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stub_addr = stub_listener.local_addr().unwrap();
    let router = stub.router();
    tokio::spawn(async move { axum::serve(stub_listener, router).await });

    let manager = MemoryManager::new(
        MemoryConfig::new()
            .with_max_memory(opts.limit_mb << 20)
            .with_pressure_delivery(PressureDelivery::Thread),
    )
    .unwrap();
    // SAFETY: the model file is not modified while the test runs.
    let slot = unsafe { ModelSlot::register(&manager, &name, &path) };
    let mut config = ServiceConfig::new(&name);
    config.upstream = Some(format!("http://{stub_addr}"));
    config.stream_reserve = opts.stream_reserve;
    config.max_body_bytes = opts.max_body_bytes;
    config.max_inputs = 16;
    config.cache_bytes = 1 << 20;
    let service = Service::new(&manager, slot, config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let svc = service.clone();
    let task = tokio::spawn(async move {
        svc.serve(listener, async {
            let _ = rx.await;
        })
        .await
    });
    Harness {
        base,
        service,
        stub,
        http: reqwest::Client::new(),
        model_name: name,
        model_path: path,
        _dir: dir,
        stop: Some(stop),
        task: Some(task),
    }
}

impl Harness {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: &str) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    pub async fn embed(&self, input: serde_json::Value) -> reqwest::Response {
        let body = serde_json::json!({"model": self.model_name, "input": input});
        self.post("/v1/embeddings", &body.to_string()).await
    }

    pub fn chat_body(&self, messages: &[(&str, &str)]) -> String {
        let messages: Vec<_> = messages
            .iter()
            .map(|(r, c)| serde_json::json!({"role": r, "content": c}))
            .collect();
        serde_json::json!({"model": self.model_name, "stream": true, "messages": messages})
            .to_string()
    }

    /// Stops the service gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

/// Waits (bounded) until `cond` holds; panics after `what` did not happen in 20 s. This is a
/// hang guard for an event the test waits for, not a timing assertion.
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The error body's message, checking the JSON shape.
pub async fn error_of(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = res.text().await.unwrap();
    assert!(ct.starts_with("application/json"), "{status}: {ct}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let msg = v["error"]["message"].as_str().unwrap().to_owned();
    assert!(!msg.is_empty());
    (status, msg)
}

/// GETs `url` and parses the body as JSON.
pub async fn get_json(http: &reqwest::Client, url: impl reqwest::IntoUrl) -> serde_json::Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

/// A response header parsed as a number (or anything `FromStr`).
pub fn header<T: std::str::FromStr>(res: &reqwest::Response, name: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    res.headers()[name].to_str().unwrap().parse().unwrap()
}
