//! The `llm-service` binary as a user starts it: configured from `MM_*`, it serves on the
//! address given, and SIGTERM stops it gracefully (exit status 0, a stream in flight
//! finishes first). With the real model when `MM_GGUF_TEST_MODEL` is set: embeddings of
//! Gemma 3 270M's own vectors, checked against the rows dequantized here.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Running {
    child: Child,
    base: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on an ephemeral port and reads the address it prints.
fn spawn(model: &Path, upstream: Option<&str>, limit_mb: &str) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llm-service"));
    cmd.arg("--model")
        .arg(model)
        .args(["--addr", "127.0.0.1:0"])
        .env("MM_MAX_MEMORY_MB", limit_mb)
        .stderr(Stdio::piped());
    if let Some(u) = upstream {
        cmd.args(["--upstream", u]);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let first = lines.next().unwrap().unwrap();
    let base = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_owned();
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Running { child, base }
}

fn sigterm(child: &Child) {
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: `kill` with a child's pid and a valid signal number has no memory effects here.
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(rc, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_stream_in_flight_finish_then_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny-embedder.gguf");
    common::write_model(&model);
    let stub = llm_service::stub::Stub::new(llm_service::stub::RECORDED, Duration::from_millis(20));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}", listener.local_addr().unwrap());
    let router = stub.router();
    tokio::spawn(async move { axum::serve(listener, router).await });

    let mut svc = spawn(&model, Some(&upstream), "64");
    let http = reqwest::Client::new();
    let health: serde_json::Value = common::get_json(&http, format!("{}/healthz", svc.base)).await;
    assert_eq!(health["model_loaded"], true);
    assert_eq!(health["budget_limit_bytes"], 64u64 << 20);
    let body = serde_json::json!({
        "model": "tiny-embedder", "stream": true,
        "messages": [{"role": "user", "content": "hello"}],
    });
    let res = http
        .post(format!("{}/v1/chat/completions", svc.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    sigterm(&svc.child);
    let text = res.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let status = tokio::task::spawn_blocking(move || svc.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_model_embeddings_are_its_own_rows_pooled() {
    let Some(path) = common::real_model() else {
        return;
    };
    let svc = spawn(&path, None, "512");
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    let http = reqwest::Client::new();
    let text = "The quick brown fox jumps over the lazy dog.";
    let res = http
        .post(format!("{}/v1/embeddings", svc.base))
        .json(&serde_json::json!({"model": name, "input": [text, "memory"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    let got: Vec<f32> = body["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();

    // The same from the file, here: tokenizer, rows, mean, unit length.
    // SAFETY: the model file is not modified while the test runs.
    let tok = unsafe { mm_tokenizer::OwnedTokenizer::open(&path) }.unwrap();
    let ids = tok
        .tokenizer()
        .encode(text, mm_tokenizer::EncodeOptions::new());
    let g = tok.gguf().gguf();
    let t = g.tensor("token_embd.weight").unwrap();
    let dims = t.shape()[0] as usize;
    assert_eq!(got.len(), dims);
    let mut sum = vec![0f32; dims];
    let mut row = vec![0f32; dims];
    for &id in &ids {
        mm_gguf::quant::dequantize_tensor_rows(&t, &[id as usize], &mut row).unwrap();
        for (s, r) in sum.iter_mut().zip(&row) {
            *s += r;
        }
    }
    llm_service::embed::pool_and_normalise(&mut sum, ids.len());
    for (g, w) in got.iter().zip(&sum) {
        assert!((g - w).abs() < 1e-6);
    }
    assert_eq!(
        body["usage"]["prompt_tokens"],
        ids.len()
            + tok
                .tokenizer()
                .encode("memory", mm_tokenizer::EncodeOptions::new())
                .len()
    );
    // Different texts, different vectors; both unit length.
    let other: Vec<f32> = body["data"][1]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    let dot: f32 = got.iter().zip(&other).map(|(a, b)| a * b).sum();
    assert!(dot < 0.999, "{dot}");
    let report: serde_json::Value = common::get_json(&http, format!("{}/memory", svc.base)).await;
    let models = report["models"].as_array().unwrap();
    assert!(
        models.iter().any(|m| m["name"] == name.as_str()),
        "{models:?}"
    );
}
