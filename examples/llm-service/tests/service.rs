//! The service over real HTTP on a loopback port, with the synthetic model: the routes, the
//! bad requests, the streamed relay and its fit, a cancelled stream's release, the pressure
//! story, and zero allocations per request at steady state.

mod common;

use std::time::Duration;

use common::{DIMS, Harness, Options, error_of, start, wait_for};
use futures::StreamExt;
use memory_manager::TrackedAlloc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[global_allocator]
static GLOBAL: TrackedAlloc = TrackedAlloc::new(std::alloc::System);

/// What the service should answer for `text`, computed here from the file with the
/// tokenizer and the known rows.
fn expected(h: &Harness, text: &str) -> Vec<f32> {
    // SAFETY: the model file is not modified while the test runs.
    let tok = unsafe { mm_tokenizer::OwnedTokenizer::open(&h.model_path) }.unwrap();
    let ids = tok
        .tokenizer()
        .encode(text, mm_tokenizer::EncodeOptions::new());
    let mut v = vec![0f32; DIMS];
    for &id in &ids {
        for (j, x) in v.iter_mut().enumerate() {
            *x += common::row_value(id as usize, j);
        }
    }
    llm_service::embed::pool_and_normalise(&mut v, ids.len());
    v
}

fn vector(v: &serde_json::Value) -> Vec<f32> {
    v["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_are_the_mean_pooled_normalised_rows() {
    let h = start(Options::default()).await;
    let res = h
        .embed(serde_json::json!(["hello world", "a memory model"]))
        .await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], h.model_name);
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for (i, text) in ["hello world", "a memory model"].iter().enumerate() {
        assert_eq!(data[i]["index"], i);
        assert_eq!(data[i]["object"], "embedding");
        let got = vector(&data[i]);
        let want = expected(&h, text);
        assert_eq!(got.len(), DIMS);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-6, "{text}: {got:?} vs {want:?}");
        }
        let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() >= 4);

    // A single string, then the same again: the second comes from the cache, equal.
    let one = |res: reqwest::Response| async move {
        let b: serde_json::Value = res.json().await.unwrap();
        (vector(&b["data"][0]), b["usage"]["prompt_tokens"].clone())
    };
    let first = one(h.embed(serde_json::json!("hello world")).await).await;
    let hits = h.service.cache().stats().hits;
    let second = one(h.embed(serde_json::json!("hello world")).await).await;
    assert_eq!(first, second);
    assert!(h.service.cache().stats().hits > hits);
    let report: serde_json::Value = common::get_json(&h.http, h.url("/memory")).await;
    let names: Vec<&str> = report["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for part in [
        "embedding-cache",
        "served-model",
        "models",
        "request-arena-pool",
    ] {
        assert!(names.contains(&part), "{part} missing from {names:?}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_memory_and_health() {
    let h = start(Options::default()).await;
    let res = h.http.get(h.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = res.text().await.unwrap();
    assert!(text.contains("# TYPE"), "{text}");
    assert!(text.contains("mm_budget"), "{text}");
    let health: serde_json::Value = common::get_json(&h.http, h.url("/healthz")).await;
    assert_eq!(health["status"], "ok");
    let (status, _) = error_of(h.http.get(h.url("/nope")).send().await.unwrap()).await;
    assert_eq!(status, 404);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors_with_the_right_status() {
    let h = start(Options::default()).await;
    let m = h.model_name.clone();
    let cases: Vec<(String, u16, &str)> = vec![
        ("{not json".into(), 400, "malformed JSON"),
        (r#"{"model":"x"}"#.into(), 400, "input"),
        (
            format!(r#"{{"model":"{m}","input":[]}}"#),
            400,
            "empty list",
        ),
        (format!(r#"{{"model":"{m}","input":""}}"#), 400, "empty"),
        (format!(r#"{{"model":"{m}","input":42}}"#), 400, "string"),
        (
            format!(r#"{{"model":"{m}","input":[1,2]}}"#),
            400,
            "malformed",
        ),
        (
            format!(
                r#"{{"model":"{m}","input":{}}}"#,
                serde_json::json!(vec!["a"; 17])
            ),
            400,
            "at most 16",
        ),
        (
            format!(r#"{{"model":"{m}","input":"hi","encoding_format":"base64"}}"#),
            400,
            "base64",
        ),
        (
            r#"{"model":"gpt-4o","input":"hi"}"#.into(),
            404,
            "not served",
        ),
    ];
    for (body, status, needle) in cases {
        let (got, msg) = error_of(h.post("/v1/embeddings", &body).await).await;
        assert_eq!(got, status, "{body}: {msg}");
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    let chat_cases: Vec<(String, u16, &str)> = vec![
        (
            format!(r#"{{"model":"{m}","messages":[{{"role":"user","content":"hi"}}]}}"#),
            400,
            "stream",
        ),
        (
            format!(r#"{{"model":"{m}","stream":true,"messages":[]}}"#),
            400,
            "empty",
        ),
        (
            format!(
                r#"{{"model":"{m}","stream":true,"messages":[{{"role":"wizard","content":"hi"}}]}}"#
            ),
            400,
            "wizard",
        ),
        (
            r#"{"model":"other","stream":true,"messages":[{"role":"user","content":"hi"}]}"#.into(),
            404,
            "not served",
        ),
        ("[1,2".into(), 400, "malformed JSON"),
    ];
    for (body, status, needle) in chat_cases {
        let (got, msg) = error_of(h.post("/v1/chat/completions", &body).await).await;
        assert_eq!(got, status, "{body}: {msg}");
        assert!(msg.contains(needle), "{body}: {msg}");
    }

    // A declared length of 1 GB, of which nothing is sent: the answer comes anyway, so the
    // service did not wait to read the body.
    let head = raw_exchange(
        &h,
        b"POST /v1/embeddings HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
          content-length: 1000000000\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("application/json"), "{head}");
    // No length (chunked): cut once the bytes read pass the limit (64 KiB here).
    let mut req = b"POST /v1/embeddings HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
          transfer-encoding: chunked\r\n\r\n"
        .to_vec();
    for _ in 0..17 {
        req.extend_from_slice(b"1000\r\n");
        req.extend_from_slice(&[b' '; 4096]);
        req.extend_from_slice(b"\r\n");
    }
    let head = raw_exchange(&h, &req).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");

    // The service is still fine.
    assert_eq!(h.embed(serde_json::json!("hello")).await.status(), 200);
    h.stop().await;
}

/// Writes `request` on a fresh connection (no more: the connection stays open) and returns
/// what the service answers.
async fn raw_exchange(h: &Harness, request: &[u8]) -> String {
    let addr = h.base.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut head = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut head))
        .await
        .expect("the service answered without waiting for the rest of the body")
        .unwrap();
    String::from_utf8_lossy(&head[..n]).into_owned()
}

/// The `data:` payloads of an SSE body.
fn payloads(sse: &str) -> Vec<String> {
    sse.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|b| {
            b.lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .filter(|p| !p.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_stream_is_relayed_event_by_event() {
    let h = start(Options::default()).await;
    let body = h.chat_body(&[("system", "Be brief."), ("user", "What is GGUF?")]);
    let res = h.post("/v1/chat/completions", &body).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let text = res.text().await.unwrap();
    let got = payloads(&text);
    let want = payloads(llm_service::stub::RECORDED);
    assert_eq!(got, want);
    assert_eq!(got.last().map(String::as_str), Some("[DONE]"));
    // The upstream got the conversation as a chat-completions request.
    let sent: serde_json::Value = serde_json::from_slice(&h.stub.last_request()).unwrap();
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["messages"][0]["role"], "system");
    assert_eq!(sent["messages"][1]["content"], "What is GGUF?");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_is_fitted_into_the_model_window_with_exact_counts() {
    let h = start(Options::default()).await;
    // 40 turns of ~60 tokens each: far over the 512-token window.
    let long = "a memory model ".repeat(20);
    let mut msgs: Vec<(&str, &str)> = vec![("system", "Be brief.")];
    for i in 0..40 {
        msgs.push((if i % 2 == 0 { "user" } else { "assistant" }, &long));
    }
    msgs.push(("user", "the last question"));
    let res = h.post("/v1/chat/completions", &h.chat_body(&msgs)).await;
    assert_eq!(res.status(), 200);
    let dropped: u32 = common::header(&res, "x-mm-dropped-messages");
    let tokens: u32 = common::header(&res, "x-mm-prompt-tokens");
    let _ = res.text().await.unwrap();
    assert!(dropped > 0);
    assert!(tokens <= common::WINDOW, "{tokens}");
    let sent: serde_json::Value = serde_json::from_slice(&h.stub.last_request()).unwrap();
    let sent = sent["messages"].as_array().unwrap();
    assert!(sent.len() < msgs.len());
    assert_eq!(sent[0]["content"], "Be brief.");
    assert_eq!(sent.last().unwrap()["content"], "the last question");

    // A last message that alone overflows the window: 400, nothing sent upstream.
    let huge = "hello ".repeat(2000);
    let before = h.stub.counts().0;
    let (status, msg) = error_of(
        h.post("/v1/chat/completions", &h.chat_body(&[("user", &huge)]))
            .await,
    )
    .await;
    assert_eq!(status, 400, "{msg}");
    assert_eq!(h.stub.counts().0, before);
    h.stop().await;
}

/// Budget bytes reserved by requests: the budget's use less what the components hold (each
/// charged at the sync the report makes: idle pooled buffers and conversations are theirs).
fn reserved_by_requests(h: &Harness) -> u64 {
    let r = h.service.manager().report();
    let held: u64 = r.components.iter().map(|c| c.held_bytes).sum();
    r.budget.used_bytes - held
}

/// Buffers checked out of the pool now, less those each idle pooled event stream keeps (its
/// parser's buffer and its output buffers: an idle stream is the pool's, not a leak).
fn outstanding(h: &Harness) -> i64 {
    let s = h.service.manager().buffer_pool().stats();
    let idle_streams = h
        .service
        .manager()
        .report()
        .components
        .iter()
        .find(|c| c.name == "pool:sse-streams")
        .map_or(0, |c| c.items as i64);
    (s.hits + s.misses + s.oversize) as i64
        - (s.returns + s.discards) as i64
        - (1 + llm_service::chat::OUTPUTS as i64) * idle_streams
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_stream_releases_everything() {
    let h = start(Options {
        pace: Duration::from_millis(50),
        ..Options::default()
    })
    .await;
    let body = h.chat_body(&[("user", "hello")]);
    // One whole stream first, so that everything a stream warms (the conversation, the
    // pooled buffers) exists before the baseline.
    let whole = h
        .post("/v1/chat/completions", &body)
        .await
        .text()
        .await
        .unwrap();
    assert!(whole.ends_with("data: [DONE]\n\n"));
    wait_for("the stub to finish", || h.stub.counts().1 == 1).await;
    let base_requests = reserved_by_requests(&h);
    let base_out = outstanding(&h);
    let res = h.post("/v1/chat/completions", &body).await;
    assert_eq!(res.status(), 200);
    let mut stream = res.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    assert!(
        reserved_by_requests(&h) >= base_requests + (256 << 10),
        "the stream holds its reservation"
    );
    drop(stream);
    wait_for("the upstream stream to be cancelled", || {
        h.stub.counts().2 == 1
    })
    .await;
    wait_for("the relay to be dropped", || {
        h.service
            .tallies()
            .cancelled_streams
            .load(std::sync::atomic::Ordering::SeqCst)
            == 1
    })
    .await;
    // Every buffer is back, and so is the stream's reservation (the relay's fields drop just
    // after it counts itself cancelled, so wait for them).
    wait_for("every pooled buffer to be back", || {
        outstanding(&h) == base_out
    })
    .await;
    wait_for("the stream's reservation to be released", || {
        reserved_by_requests(&h) == base_requests
    })
    .await;
    assert_eq!(outstanding(&h), base_out);
    assert_eq!(reserved_by_requests(&h), base_requests);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_capacity_gets_503_then_the_service_recovers() {
    // 24 MiB, 2 MiB a stream, streams that last (35 events at 10 s).
    let h = start(Options {
        limit_mb: 24,
        pace: Duration::from_secs(10),
        stream_reserve: 2 << 20,
        ..Options::default()
    })
    .await;
    assert_eq!(h.embed(serde_json::json!("hello")).await.status(), 200);
    let loads = h.service.model().loads();
    let body = h.chat_body(&[("user", "hello")]);
    let mut open = Vec::new();
    let refused = loop {
        assert!(open.len() < 64, "no 503 after {} streams", open.len());
        let res = h.post("/v1/chat/completions", &body).await;
        if res.status() == 503 {
            break res;
        }
        assert_eq!(res.status(), 200);
        open.push(res);
    };
    assert!(open.len() >= 2, "{} streams fitted", open.len());
    let retry = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(retry, "1");
    let (_, msg) = error_of(refused).await;
    assert!(msg.contains("memory"), "{msg}");
    // Still refusing while the streams hold their memory; the idle model was unloaded
    // on the way (critical pressure; the streams that still fitted loaded it again).
    assert_eq!(h.post("/v1/chat/completions", &body).await.status(), 503);
    wait_for("the idle model to be unloaded", || {
        h.service.model().unloads() >= 1
    })
    .await;
    // The burst ends: everything is served again, the model reloaded on demand.
    drop(open);
    let used = h.service.manager().budget().clone();
    wait_for("the streams' memory to come back", || {
        used.used() < used.limit() / 2
    })
    .await;
    assert_eq!(h.embed(serde_json::json!("hello")).await.status(), 200);
    assert!(h.service.model().loads() > loads);
    let res = h.post("/v1/chat/completions", &body).await;
    assert_eq!(res.status(), 200);
    drop(res);
    let over = h
        .service
        .tallies()
        .overloaded
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(over >= 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_embedding_request_makes_no_allocation_in_our_parts() {
    let h = start(Options::default()).await;
    let mut last = Vec::new();
    for i in 0..200 {
        let res = h
            .embed(serde_json::json!(["hello world", "a memory model"]))
            .await;
        assert_eq!(res.status(), 200);
        let n: u64 = common::header(&res, "x-mm-allocs");
        let _ = res.bytes().await.unwrap();
        if i >= 180 {
            last.push(n);
        }
    }
    assert_eq!(
        last,
        vec![0; 20],
        "allocations of the last 20 warm requests"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_chat_stream_makes_no_allocation_in_our_parts() {
    let h = start(Options::default()).await;
    assert!(h.service.tallies().report().tracking);
    let body = h.chat_body(&[("system", "Be brief."), ("user", "What is GGUF?")]);
    let mut last = Vec::new();
    for i in 0..60u64 {
        let res = h.post("/v1/chat/completions", &body).await;
        assert_eq!(res.status(), 200);
        let text = res.text().await.unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"));
        // A stream's count is recorded when its relay is dropped, just after the end.
        wait_for("the stream to be counted", || {
            h.service.tallies().chat.reading().requests == i + 1
        })
        .await;
        let allocs: serde_json::Value = common::get_json(&h.http, h.url("/debug/allocs")).await;
        assert_eq!(allocs["chat"]["requests"], i + 1);
        if i >= 40 {
            last.push(allocs["chat"]["last_allocs"].as_u64().unwrap());
        }
    }
    // The first streams fill the pools (the event streams, the prompt buffers); once they
    // are warm, a stream allocates nothing in our parts, events included.
    assert_eq!(last, vec![0; 20], "allocations of the last 20 warm streams");
    assert!(h.service.tallies().chat.reading().zero_streak >= 20);
    h.stop().await;
}
