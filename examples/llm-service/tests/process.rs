//! The `llm-service` binary as a user starts it: configured from `MM_*`, it serves on the
//! address given, and SIGTERM stops it gracefully (exit status 0, a stream in flight
//! finishes first). With the real model when `MM_GGUF_TEST_MODEL` is set: embeddings of
//! Gemma 3 270M's own vectors, checked against the rows dequantized here.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A hang guard: an event a test waits for that has not happened after this long never will.
/// It bounds waits for events, it is not a timing assertion.
const HANG: Duration = Duration::from_secs(120);

struct Running {
    child: Child,
    base: String,
    /// The child's stderr after the address line, one line at a time.
    stderr: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// Waits for a stderr line containing `what` and returns it.
    async fn line_with(&mut self, what: &str) -> String {
        let wait = async {
            while let Some(line) = self.stderr.recv().await {
                if line.contains(what) {
                    return line;
                }
            }
            panic!("stderr ended without a line containing {what:?}");
        };
        tokio::time::timeout(HANG, wait)
            .await
            .unwrap_or_else(|_| panic!("no stderr line containing {what:?} in {HANG:?}"))
    }
}

/// Starts the binary on an ephemeral port and reads the address it prints (on the line
/// that says it is serving).
fn spawn(model: &Path, upstream: Option<&str>, limit_mb: &str, extra: &[&str]) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llm-service"));
    cmd.arg("--model")
        .arg(model)
        .args(["--addr", "127.0.0.1:0"])
        .args(extra)
        .env("MM_MAX_MEMORY_MB", limit_mb)
        .stderr(Stdio::piped());
    if let Some(u) = upstream {
        cmd.args(["--upstream", u]);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("llm-service exited before saying where it serves")
            .unwrap();
        if let Some(w) = line.split_whitespace().find(|w| w.starts_with("http://")) {
            break w.to_owned();
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe; the lines go to the
    // test, which may wait for one (a send to a receiver dropped is ignored).
    let (tx, stderr) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    Running {
        child,
        base,
        stderr,
    }
}

fn sigterm(child: &Child) {
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: `kill` with a child's pid and a valid signal number has no memory effects here.
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(rc, 0);
}

/// An upstream replaying the recorded stream that sends its first event, then holds the
/// rest until `open` turns true: a stream through it is in flight until the test says.
fn gated_upstream(open: tokio::sync::watch::Receiver<bool>) -> axum::Router {
    use axum::http::header;
    use axum::response::IntoResponse;
    let events = std::sync::Arc::new(llm_service::stub::split_events(llm_service::stub::RECORDED));
    let handler = move || {
        let events = std::sync::Arc::clone(&events);
        let open = open.clone();
        async move {
            let stream = futures::stream::unfold((0, open), move |(i, mut open)| {
                let ev = events.get(i).cloned();
                async move {
                    let ev = ev?;
                    if i == 1 {
                        open.wait_for(|&o| o).await.ok()?;
                    }
                    Some((Ok::<_, std::convert::Infallible>(ev), (i + 1, open)))
                }
            });
            (
                [(header::CONTENT_TYPE, "text/event-stream")],
                axum::body::Body::from_stream(stream),
            )
                .into_response()
        }
    };
    axum::Router::new().route("/v1/chat/completions", axum::routing::post(handler))
}

/// Reads `res`'s body until `done` holds of what came so far (bounded by [`HANG`]).
async fn read_until(
    res: &mut reqwest::Response,
    text: &mut String,
    mut done: impl FnMut(&str) -> bool,
) {
    let read = async {
        while !done(text) {
            match res.chunk().await.unwrap() {
                Some(c) => text.push_str(std::str::from_utf8(&c).unwrap()),
                None => return,
            }
        }
    };
    tokio::time::timeout(HANG, read)
        .await
        .unwrap_or_else(|_| panic!("the stream stalled; so far: {text:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_stream_in_flight_finish_then_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny-embedder.gguf");
    common::write_model(&model);
    let (open_tx, open_rx) = tokio::sync::watch::channel(false);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}", listener.local_addr().unwrap());
    let router = gated_upstream(open_rx);
    tokio::spawn(async move { axum::serve(listener, router).await });

    // The grace period is a hang guard here: the stream must finish because it is let
    // finish, never because it happened to be quick.
    let grace = HANG.as_secs().to_string();
    let mut svc = spawn(
        &model,
        Some(&upstream),
        "64",
        &["--shutdown-grace-secs", &grace],
    );
    let http = reqwest::Client::new();
    let health: serde_json::Value = common::get_json(&http, format!("{}/healthz", svc.base)).await;
    assert_eq!(health["model_loaded"], true);
    assert_eq!(health["budget_limit_bytes"], 64u64 << 20);
    let body = serde_json::json!({
        "model": "tiny-embedder", "stream": true,
        "messages": [{"role": "user", "content": "hello"}],
    });
    let mut res = http
        .post(format!("{}/v1/chat/completions", svc.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The first event has come through; the upstream holds the rest.
    let mut text = String::new();
    read_until(&mut res, &mut text, |t| t.contains("\n\n")).await;
    assert!(text.starts_with("data: {"), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");

    sigterm(&svc.child);
    // The service has taken the signal while the stream is held mid-way: only now may the
    // stream go on.
    svc.line_with("shutting down").await;
    open_tx.send(true).unwrap();
    read_until(&mut res, &mut text, |_| false).await;
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    // Every event of the recording came through, in order.
    let data = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.starts_with("data: "))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(data(&text), data(llm_service::stub::RECORDED), "{text}");

    let stopped = svc.line_with("llm-service: ").await;
    assert!(stopped.contains("stopped"), "{stopped}");
    let pid = i32::try_from(svc.child.id()).unwrap();
    let exit = tokio::task::spawn_blocking(move || svc.child.wait());
    let Ok(status) = tokio::time::timeout(HANG, exit).await else {
        // SAFETY: as in `sigterm`; the child is not reaped yet, so the pid is still its own.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        panic!("llm-service did not exit in {HANG:?} after its stream finished");
    };
    let status = status.unwrap().unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_model_embeddings_are_its_own_rows_pooled() {
    let Some(path) = common::real_model() else {
        return;
    };
    let svc = spawn(&path, None, "512", &[]);
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
