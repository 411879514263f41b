//! The same two routes built the way a user would without this project, for the load
//! stage's ratio (`llm-service --baseline`): owned `serde` structs, a `moka` cache of
//! `Arc<Vec<f32>>`, a fresh `bumpalo::Bump` per request for the scratch, `Vec` response
//! buffers, `eventsource-stream` for the upstream's SSE and a `format!` per re-emitted event.
//! No budget: nothing refuses a request for memory. The model, tokenizer and row
//! dequantization are the same as the managed routes' (there is no other GGUF reader to
//! compare with here). Allocations are counted over the same parts as the managed routes.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use eventsource_stream::Eventsource as _;
use futures::{Stream, StreamExt};
use memory_manager::MemoryManager;
use mm_tokenizer::EncodeOptions;
use mm_track::ScopeStats;
use serde::{Deserialize, Serialize};

use crate::chat::Metered;
use crate::embed::pool_and_normalise;
use crate::error::{ApiError, json_error};
use crate::model::{EMBEDDING_TENSOR, LoadedModel, ModelSlot};
use crate::tally::Tallies;

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct EmbeddingRequest {
    model: String,
    input: Input,
}

#[derive(Serialize)]
struct EmbeddingData {
    object: &'static str,
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    total_tokens: u64,
}

#[derive(Serialize)]
struct EmbeddingResponse {
    object: &'static str,
    data: Vec<EmbeddingData>,
    model: String,
    usage: Usage,
}

#[derive(Deserialize, Serialize, Clone)]
struct Message {
    role: String,
    content: String,
}

#[derive(Deserialize)]
struct ChatRequest {
    model: String,
    messages: Vec<Message>,
    #[serde(default)]
    stream: bool,
}

#[derive(Serialize)]
struct UpstreamRequest<'a> {
    model: &'a str,
    stream: bool,
    messages: &'a [Message],
}

/// The baseline's state.
pub struct Baseline {
    manager: MemoryManager,
    slot: Arc<ModelSlot>,
    cache: moka::sync::Cache<String, Arc<(Vec<f32>, u64)>>,
    client: reqwest::Client,
    upstream: Option<reqwest::Url>,
    tallies: Arc<Tallies>,
}

impl std::fmt::Debug for Baseline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Baseline").finish_non_exhaustive()
    }
}

impl Baseline {
    /// The baseline over `slot`'s model; `manager` only reports (the allocator's figures).
    ///
    /// # Errors
    /// A bad upstream URL.
    pub fn new(
        manager: &MemoryManager,
        slot: Arc<ModelSlot>,
        upstream: Option<&str>,
        cache_bytes: u64,
    ) -> Result<Arc<Self>, ApiError> {
        let upstream = upstream
            .map(|u| reqwest::Url::parse(u).and_then(|u| u.join("v1/chat/completions")))
            .transpose()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let cache = moka::sync::Cache::builder()
            .weigher(|k: &String, v: &Arc<(Vec<f32>, u64)>| {
                u32::try_from(k.len() + v.0.len() * 4).unwrap_or(u32::MAX)
            })
            .max_capacity(cache_bytes)
            .build();
        Ok(Arc::new(Self {
            manager: manager.clone(),
            slot,
            cache,
            client: reqwest::Client::new(),
            upstream,
            tallies: Arc::default(),
        }))
    }

    /// The routes (the same paths as the managed service).
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/chat/completions", post(chat))
            .route("/memory", get(memory))
            .route("/healthz", get(|| async { "ok" }))
            .route("/debug/allocs", get(allocs))
            .with_state(Arc::clone(self))
    }

    fn embed_one(&self, model: &LoadedModel, text: &str) -> Result<Arc<(Vec<f32>, u64)>, ApiError> {
        let key = format!("{}\u{0}{text}", model.name);
        if let Some(v) = self.cache.get(&key) {
            return Ok(v);
        }
        let bump = bumpalo::Bump::new();
        let g = model.gguf().gguf();
        let t = g
            .tensor(EMBEDDING_TENSOR)
            .ok_or_else(|| ApiError::internal("no embedding tensor"))?;
        let ids = model
            .tokenizer
            .tokenizer()
            .encode(text, EncodeOptions::new());
        let sum = bump.alloc_slice_fill_copy(model.dims, 0f32);
        let row = bump.alloc_slice_fill_copy(model.dims, 0f32);
        for &id in &ids {
            mm_gguf::quant::dequantize_tensor_rows(&t, &[id as usize], row)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            for (s, r) in sum.iter_mut().zip(row.iter()) {
                *s += *r;
            }
        }
        pool_and_normalise(sum, ids.len());
        let v = Arc::new((sum.to_vec(), ids.len() as u64));
        self.cache.insert(key, Arc::clone(&v));
        Ok(v)
    }
}

async fn embeddings(State(b): State<Arc<Baseline>>, body: Bytes) -> Result<Response, ApiError> {
    let req: EmbeddingRequest = serde_json::from_slice(&body).map_err(|e| json_error(&e))?;
    if req.model != b.slot.name() {
        return Err(ApiError::unknown_model(&req.model, b.slot.name()));
    }
    let (out, stats) = mm_track::count(|| {
        let inputs = match req.input {
            Input::One(s) => vec![s],
            Input::Many(v) => v,
        };
        if inputs.is_empty() {
            return Err(ApiError::bad_request("`input` is an empty list"));
        }
        let model = b.slot.get()?;
        let mut data = Vec::new();
        let mut tokens = 0;
        for (index, text) in inputs.iter().enumerate() {
            let v = b.embed_one(&model, text)?;
            tokens += v.1;
            data.push(EmbeddingData {
                object: "embedding",
                index,
                embedding: v.0.clone(),
            });
        }
        let res = EmbeddingResponse {
            object: "list",
            data,
            model: model.name.clone(),
            usage: Usage {
                prompt_tokens: tokens,
                total_tokens: tokens,
            },
        };
        serde_json::to_vec(&res).map_err(|e| ApiError::internal(e.to_string()))
    });
    b.tallies.embeddings.record(stats);
    let mut res = Response::new(Body::from(out?));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res.headers_mut().insert(
        "x-mm-allocs",
        HeaderValue::from(stats.allocs + stats.reallocs),
    );
    Ok(res)
}

/// Drops the oldest non-system messages until the exact token count fits `limit`.
fn fit(model: &LoadedModel, messages: &mut Vec<Message>, limit: usize) {
    let tok = model.tokenizer.tokenizer();
    let count = |m: &Message| tok.count(&m.content, EncodeOptions::new()) + 5;
    let mut total: usize = messages.iter().map(count).sum();
    while total > limit {
        let Some(i) = messages.iter().position(|m| m.role != "system") else {
            break;
        };
        if i + 1 >= messages.len() {
            break;
        }
        total -= count(&messages[i]);
        messages.remove(i);
    }
}

async fn chat(State(b): State<Arc<Baseline>>, body: Bytes) -> Result<Response, ApiError> {
    let req: ChatRequest = serde_json::from_slice(&body).map_err(|e| json_error(&e))?;
    if req.model != b.slot.name() {
        return Err(ApiError::unknown_model(&req.model, b.slot.name()));
    }
    if !req.stream {
        return Err(ApiError::bad_request("set \"stream\": true"));
    }
    let url = b
        .upstream
        .clone()
        .ok_or_else(|| ApiError::upstream("no upstream is configured"))?;
    let (prompt, stats) = mm_track::count(|| {
        let model = b.slot.get()?;
        let mut messages = req.messages;
        let limit = (model.context_length as usize)
            .saturating_sub(8192.min(model.context_length as usize / 4));
        fit(&model, &mut messages, limit);
        serde_json::to_vec(&UpstreamRequest {
            model: &model.name,
            stream: true,
            messages: &messages,
        })
        .map_err(|e| ApiError::internal(e.to_string()))
    });
    let upstream = b
        .client
        .post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(prompt?)
        .send()
        .await
        .map_err(|e| ApiError::upstream(e.to_string()))?;
    let events = Metered(upstream.bytes_stream()).eventsource();
    let relay = NaiveRelay {
        events: Box::pin(events),
        tallies: Arc::clone(&b.tallies),
        counted: stats,
    };
    let mut res = Response::new(Body::from_stream(relay));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    Ok(res)
}

type BoxedEvents = Pin<
    Box<
        dyn Stream<
                Item = Result<
                    eventsource_stream::Event,
                    eventsource_stream::EventStreamError<reqwest::Error>,
                >,
            > + Send,
    >,
>;

struct NaiveRelay {
    events: BoxedEvents,
    tallies: Arc<Tallies>,
    counted: ScopeStats,
}

impl Stream for NaiveRelay {
    type Item = Result<Bytes, std::io::Error>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        crate::chat::reset_transport();
        let (r, stats) = mm_track::count(|| match this.events.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(ev))) => {
                let text = if ev.event == "message" {
                    format!("data: {}\n\n", ev.data)
                } else {
                    format!("event: {}\ndata: {}\n\n", ev.event, ev.data)
                };
                Poll::Ready(Some(Ok(Bytes::from(text))))
            }
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        });
        this.counted += crate::chat::minus(stats, crate::chat::take_transport());
        r
    }
}

impl Drop for NaiveRelay {
    fn drop(&mut self) {
        self.tallies.chat.record(self.counted);
    }
}

async fn memory(State(b): State<Arc<Baseline>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        b.manager.report().to_json(),
    )
        .into_response()
}

async fn allocs(State(b): State<Arc<Baseline>>) -> Response {
    axum::Json(b.tallies.report()).into_response()
}
