//! The complete axum handler of `docs/async.md`, compiled (registered on a `Router`, so
//! axum's `Handler` bound is checked) and run on a multi-thread tokio runtime. Keep the
//! handler here and the one in the document the same.
#![cfg(not(loom))]

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use futures::StreamExt;
use memory_manager::{MemoryConfig, MemoryManager};
use mm_gguf::ModelRegistry;
use mm_llm::sse_stream::Eventsource;
use mm_pool::bytes::Bytes;

// --- docs/async.md: begin ---
/// What every request shares: one manager (budget, pools, arenas, report) and the models.
#[derive(Clone)]
struct App {
    manager: MemoryManager,
    models: ModelRegistry,
}

type Failure = (StatusCode, String);

fn fail(code: StatusCode) -> impl Fn(String) -> Failure {
    move |e| (code, e)
}

/// Answers a prompt with an upstream model's streamed reply, followed by a tensor's bytes.
async fn complete(State(app): State<App>, prompt: Bytes) -> Result<Bytes, Failure> {
    // Backpressure: admit the request by memory, waiting up to 50 ms for other requests
    // to give some back (runtime-agnostic wait; the timer is tokio's).
    let _admitted = app
        .manager
        .budget()
        .reserve_before(256 << 10, tokio::time::sleep(Duration::from_millis(50)))
        .await
        .map_err(|e| fail(StatusCode::SERVICE_UNAVAILABLE)(e.to_string()))?;

    // The model: loaded once however many requests ask at the same time; a request that
    // finds it loading awaits that load without holding a thread.
    let model = app
        .models
        .get_async("embedder")
        .await
        .map_err(|e| fail(StatusCode::INTERNAL_SERVER_ERROR)(e.to_string()))?;
    // Zero-copy: these bytes keep the map alive, even if the model is unloaded meanwhile.
    let weights = model
        .tensor_bytes("token_embd.weight")
        .ok_or_else(|| fail(StatusCode::NOT_FOUND)("no such tensor".into()))?;

    // A pooled arena, `Send + 'static`: allocate, await, allocate again.
    let arena = app
        .manager
        .request_arena()
        .map_err(|e| fail(StatusCode::SERVICE_UNAVAILABLE)(e.to_string()))?;
    let text =
        std::str::from_utf8(&prompt).map_err(|e| fail(StatusCode::BAD_REQUEST)(e.to_string()))?;
    let text = arena
        .alloc_str(text)
        .map_err(|e| fail(StatusCode::PAYLOAD_TOO_LARGE)(e.to_string()))?;

    // The upstream reply as SSE events: with reqwest, `response.bytes_stream()`.
    let upstream = futures::stream::iter([
        Ok::<_, Infallible>(Bytes::from_static(b"data: {\"t\":\"Hel")),
        Ok(Bytes::from_static(
            b"lo\"}\n\ndata: {\"t\":\" there\"}\n\ndata: [DONE]\n\n",
        )),
    ]);
    let mut events = upstream.eventsource();

    // The response body: a pooled buffer, charged to the budget until the body is sent.
    let mut body = app
        .manager
        .buffer(4096)
        .map_err(|e| fail(StatusCode::SERVICE_UNAVAILABLE)(e.to_string()))?;
    body.extend_from_slice(text.as_bytes());
    body.extend_from_slice(b" -> ");
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| fail(StatusCode::BAD_GATEWAY)(e.to_string()))?;
        if event.data == "[DONE]" {
            break;
        }
        body.extend_from_slice(event.data.as_bytes());
    }
    let tokens = arena
        .alloc_slice_fill_copy(text.len(), 0u32)
        .map_err(|e| fail(StatusCode::PAYLOAD_TOO_LARGE)(e.to_string()))?;
    body.extend_from_slice(
        format!(" [{} tokens, {} weight bytes]", tokens.len(), weights.len()).as_bytes(),
    );
    // Zero-copy: the buffer goes back to the pool when the last clone of the body drops.
    Ok(body.into_bytes())
}

fn router(app: App) -> Router {
    Router::new()
        .route("/complete", post(complete))
        .with_state(app)
}
// --- docs/async.md: end ---

fn model_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let data = [7u8; 64];
    let mut w = mm_gguf::GgufWriter::new();
    w.add_tensor(
        "token_embd.weight",
        mm_gguf::types::GgmlType::F32,
        &[16],
        &data,
    )
    .unwrap();
    let path = dir.path().join("embedder.gguf");
    w.write_file(&path).unwrap();
    path
}

#[test]
fn the_documented_handler_compiles_in_axum_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let manager = MemoryManager::new(MemoryConfig::new().with_max_memory(64 << 20)).unwrap();
    let models = ModelRegistry::from_manager(&manager, mm_gguf::RegistryConfig::new());
    // SAFETY: the model file is written once and never modified.
    unsafe { models.register("embedder", model_file(&dir)) };
    let app = App {
        manager: manager.clone(),
        models,
    };
    let _router = router(app.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let bodies: Vec<Bytes> = rt.block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|_| tokio::spawn(complete(State(app.clone()), Bytes::from_static(b"hi"))))
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap().unwrap());
        }
        out
    });
    for body in &bodies {
        assert_eq!(
            &body[..],
            b"hi -> {\"t\":\"Hello\"}{\"t\":\" there\"} [2 tokens, 64 weight bytes]"
        );
    }
    let report = manager.report();
    let models = report
        .components
        .iter()
        .find(|c| c.name == "models")
        .unwrap();
    assert_eq!(models.misses, Some(1), "eight requests, one load");
    assert_eq!(
        manager.buffer_pool().stats().returns,
        0,
        "the bodies hold the buffers"
    );
    drop(bodies);
    assert_eq!(manager.buffer_pool().stats().returns, 8);
    let arenas = manager
        .report()
        .components
        .into_iter()
        .find(|c| c.name == "request-arenas");
    assert_eq!(arenas.map(|a| a.items), Some(0), "every guard went back");
}
