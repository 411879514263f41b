//! The service: its state (one [`MemoryManager`] and the parts built from it), the routes,
//! and serving with graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use memory_manager::{
    BufferPool, Component, ComponentReading, MemoryManager, ObjectPool, PooledBuffer,
    PressureLevel, Reservation,
};
use mm_arena::ArenaPool;
use mm_llm::sse::{SseConfig, SseParser};
use mm_llm::sse_stream::EventStream;
use mm_llm::{EmbeddingCache, EmbeddingCacheConfig, Symbol};

use crate::chat::{self, ChatRequest, Metered, Relay};
use crate::embed::{self, EmbeddingLimits, EmbeddingRequest, Scratch};
use crate::error::{ApiError, json_error};
use crate::model::ModelSlot;
use crate::tally::Tallies;

/// How the service is run (the command line's flags).
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The served model's name (default: the file's stem).
    pub model_name: String,
    /// The OpenAI-compatible upstream for chat completions (`http://host:port`).
    pub upstream: Option<String>,
    /// Largest request body, in bytes (default 1 MiB). Larger bodies get 413 unread.
    pub max_body_bytes: usize,
    /// Most inputs in one embeddings request (default 256).
    pub max_inputs: usize,
    /// Most bytes in one input (default 64 KiB).
    pub max_input_bytes: usize,
    /// Most messages in one chat request (default 4,096).
    pub max_messages: usize,
    /// How long a request waits for memory before it gets 503 (default 100 ms).
    pub reserve_timeout: Duration,
    /// The `Retry-After` of a 503, in seconds (default 1).
    pub retry_after_secs: u32,
    /// Bytes a chat stream reserves for its life (default 256 KiB: the parser's buffer, the
    /// event buffer, the output buffer and the prompt).
    pub stream_reserve: u64,
    /// Bytes the embedding cache may hold (default 32 MiB, or a quarter of the limit).
    pub cache_bytes: u64,
}

impl ServiceConfig {
    /// The defaults for a model served as `model_name`.
    pub fn new(model_name: impl Into<String>) -> Self {
        Self {
            model_name: model_name.into(),
            upstream: None,
            max_body_bytes: 1 << 20,
            max_inputs: 256,
            max_input_bytes: 64 << 10,
            max_messages: 4096,
            reserve_timeout: Duration::from_millis(100),
            retry_after_secs: 1,
            stream_reserve: 256 << 10,
            cache_bytes: 32 << 20,
        }
    }
}

/// The manager's view of the request arenas' pool (a row `request-arena-pool`, trimmed on
/// pressure).
#[derive(Debug)]
struct ArenaPart(ArenaPool);

impl Component for ArenaPart {
    fn name(&self) -> &str {
        "request-arena-pool"
    }
    fn reading(&self) -> ComponentReading {
        let s = self.0.stats();
        let mut r = ComponentReading::new(s.idle_bytes);
        r.items = s.idle as u64;
        r.hits = Some(s.warm_gets);
        r.misses = Some(s.gets - s.warm_gets);
        r.evictions = Some(s.discards);
        r
    }
    fn on_pressure(&self, level: PressureLevel) -> u64 {
        if level >= PressureLevel::Warning {
            self.0.trim()
        } else {
            0
        }
    }
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct AppState {
    manager: MemoryManager,
    slot: Arc<ModelSlot>,
    cache: Arc<EmbeddingCache>,
    sym: Symbol,
    arenas: Arc<ArenaPart>,
    scratch: ObjectPool<Scratch>,
    sse: ObjectPool<chat::IdleEvents>,
    client: reqwest::Client,
    upstream: Option<reqwest::Url>,
    config: ServiceConfig,
    tallies: Arc<Tallies>,
}

/// The reference service: build it, take its [`router`](Self::router), serve it.
#[derive(Debug, Clone)]
pub struct Service {
    state: Arc<AppState>,
}

/// A response body that holds its pooled buffer and its budget charge until the HTTP stack
/// is done with it.
struct Charged {
    buf: PooledBuffer,
    _charge: Reservation,
}

impl AsRef<[u8]> for Charged {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

/// Errors building the service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// A part refused its configuration.
    #[error("building the {part}: {message}")]
    Setup {
        /// Which part.
        part: &'static str,
        /// Why.
        message: String,
    },
}

fn setup(part: &'static str) -> impl FnOnce(String) -> ServiceError {
    move |message| ServiceError::Setup { part, message }
}

impl Service {
    /// A service over `slot`'s model, every part built from `manager`.
    ///
    /// # Errors
    /// [`ServiceError::Setup`] when a part refuses the configuration (a cache bound above the
    /// memory limit, an upstream that is not a URL).
    pub fn new(
        manager: &MemoryManager,
        slot: Arc<ModelSlot>,
        config: ServiceConfig,
    ) -> Result<Self, ServiceError> {
        let limit = manager.budget().limit();
        let cache_bytes = config.cache_bytes.min(limit / 4).max(64 << 10);
        let cache = EmbeddingCache::from_manager(
            manager,
            EmbeddingCacheConfig::new()
                .with_max_bytes(cache_bytes)
                // The frequency sketch and the ghost table are sized by the entry bound, so
                // keep it near what the bytes can hold (an entry is at least ~1 KiB with any
                // real model's width) instead of a large round number.
                .with_max_entries((cache_bytes / 1024).clamp(1024, 1 << 20) as usize),
        )
        .map_err(|e| setup("embedding cache")(e.to_string()))?;
        let sym = manager
            .interner()
            .try_get_or_intern(&config.model_name)
            .map_err(|e| setup("interner")(e.to_string()))?;
        let arenas = ArenaPool::new(manager.config().arena_config(), 64)
            .map_err(|e| setup("arena pool")(e.to_string()))?;
        let arenas = Arc::new(ArenaPart(arenas));
        manager.register(Arc::clone(&arenas) as Arc<dyn Component>);
        let scratch = manager
            .object_pool(
                "embedding-scratch",
                64,
                Scratch::default,
                |s: &mut Scratch| s.ids.clear(),
            )
            .map_err(|e| setup("scratch pool")(e.to_string()))?;
        let parsers = manager.buffer_pool().clone();
        let sse = manager
            .object_pool(
                "sse-streams",
                64,
                move || Some(idle_stream(&parsers)),
                |_: &mut chat::IdleEvents| {},
            )
            .map_err(|e| setup("SSE stream pool")(e.to_string()))?;
        let upstream = match &config.upstream {
            None => None,
            Some(u) => Some(
                reqwest::Url::parse(u)
                    .and_then(|u| u.join("v1/chat/completions"))
                    .map_err(|e| setup("upstream URL")(e.to_string()))?,
            ),
        };
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()
            .map_err(|e| setup("HTTP client")(e.to_string()))?;
        Ok(Self {
            state: Arc::new(AppState {
                manager: manager.clone(),
                slot,
                cache,
                sym,
                arenas,
                scratch,
                sse,
                client,
                upstream,
                config,
                tallies: Arc::default(),
            }),
        })
    }

    /// The manager.
    pub fn manager(&self) -> &MemoryManager {
        &self.state.manager
    }

    /// The per-route allocation counters.
    pub fn tallies(&self) -> &Tallies {
        &self.state.tallies
    }

    /// The served model's slot.
    pub fn model(&self) -> &Arc<ModelSlot> {
        &self.state.slot
    }

    /// The embedding cache.
    pub fn cache(&self) -> &EmbeddingCache {
        &self.state.cache
    }

    /// The routes.
    pub fn router(&self) -> Router {
        let limit = self.state.config.max_body_bytes;
        Router::new()
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/chat/completions", post(chat_completions))
            .route("/metrics", get(metrics))
            .route("/memory", get(memory))
            .route("/healthz", get(healthz))
            .route("/debug/allocs", get(allocs))
            .fallback(|| async { ApiError::no_route() })
            .layer(DefaultBodyLimit::max(limit))
            .layer(middleware::from_fn_with_state(limit, refuse_large))
            .with_state(Arc::clone(&self.state))
    }

    /// Serves on `listener` until `shutdown` completes, then stops taking connections and
    /// waits for the requests in flight (streams included) to end.
    ///
    /// # Errors
    /// I/O errors of the listener.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// A new idle event stream (its parser on a pooled buffer) and its output buffers.
fn idle_stream(pool: &BufferPool) -> (EventStream<()>, chat::Outputs) {
    let parser = SseParser::with_pool(SseConfig::default(), pool.clone())
        .unwrap_or_else(|_| SseParser::new());
    let outs = std::array::from_fn(|_| {
        let mut b = pool.acquire(4096);
        // The first split of a buffer allocates the header its parts share: made here, when
        // the stream is new, rather than in the middle of some later stream's events.
        b.extend_from_slice(b"\n");
        drop(b.split());
        b
    });
    (EventStream::with_parser((), parser), outs)
}

/// Refuses a body whose declared length is over the limit before any of it is read.
/// (Bodies without a length are cut at the limit by `DefaultBodyLimit` while read.)
async fn refuse_large(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError::too_large(limit).into_response();
    }
    next.run(req).await
}

fn body_error(r: BytesRejection, limit: usize) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(limit)
    } else {
        ApiError::bad_request(format!("reading the body: {}", r.body_text()))
    }
}

impl AppState {
    /// Reserves `bytes`, waiting up to the configured timeout; 503 after it.
    async fn reserve(&self, bytes: u64) -> Result<Reservation, ApiError> {
        let budget = self.manager.budget();
        if let Ok(r) = budget.try_reserve(bytes) {
            return Ok(r);
        }
        let wait = tokio::time::sleep(self.config.reserve_timeout);
        budget.reserve_before(bytes, wait).await.map_err(|e| {
            self.tallies.overloaded.fetch_add(1, Ordering::Relaxed);
            ApiError::overloaded(
                self.config.retry_after_secs,
                format!("memory is short ({e}); retry later"),
            )
        })
    }

    /// The counted part of an embeddings request.
    async fn embed(&self, req: &EmbeddingRequest<'_>) -> Result<Charged, ApiError> {
        let model = self.slot.get()?;
        let n = embed::response_bytes(req.input.0.len(), model.dims);
        let charge = self.reserve((n + 8 * (model.dims + 1)) as u64).await?;
        let arena = self
            .arenas
            .0
            .get()
            .map_err(|e| ApiError::overloaded(self.config.retry_after_secs, e.to_string()))?;
        let mut scratch = self.scratch.acquire();
        let mut buf = self.manager.buffer_pool().acquire(n);
        embed::embed_into(
            &model,
            &self.cache,
            self.sym,
            &req.input.0,
            &arena,
            &mut scratch,
            &mut buf,
        )?;
        Ok(Charged {
            buf,
            _charge: charge,
        })
    }
}

async fn embeddings(
    State(s): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| body_error(r, s.config.max_body_bytes))?;
    let req: EmbeddingRequest<'_> = serde_json::from_slice(&body).map_err(|e| json_error(&e))?;
    let limits = EmbeddingLimits {
        max_inputs: s.config.max_inputs,
        max_input_bytes: s.config.max_input_bytes,
    };
    req.validate(s.slot.name(), limits)?;
    let (out, stats) = mm_track::count_future(s.embed(&req)).await;
    s.tallies.embeddings.record(stats);
    let out = out?;
    let mut res = Response::new(Body::from(Bytes::from_owner(out)));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        "x-mm-allocs",
        HeaderValue::from(stats.allocs + stats.reallocs),
    );
    Ok(res)
}

async fn chat_completions(
    State(s): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| body_error(r, s.config.max_body_bytes))?;
    let req: ChatRequest<'_> = serde_json::from_slice(&body).map_err(|e| json_error(&e))?;
    req.validate(s.slot.name(), s.config.max_messages)?;
    let Some(url) = &s.upstream else {
        return Err(ApiError::upstream(
            "no upstream is configured (start the service with --upstream URL)",
        ));
    };
    let pool = s.manager.buffer_pool();
    let (prepared, stats) = mm_track::count_future(async {
        let charge = s.reserve(s.config.stream_reserve).await?;
        let model = s.slot.get()?;
        let (prompt, fit) = chat::prepare(&model, &req, pool)?;
        Ok::<_, ApiError>((charge, prompt, fit))
    })
    .await;
    let (charge, prompt, fit) = prepared?;
    let upstream = s
        .client
        .post(url.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "text/event-stream")
        .body(Bytes::from(prompt))
        .send()
        .await
        .map_err(|e| ApiError::upstream(format!("upstream request failed: {e}")))?;
    if !upstream.status().is_success() {
        return Err(ApiError::upstream(format!(
            "upstream answered {}",
            upstream.status()
        )));
    }
    let body = upstream.bytes_stream();
    let (mut relay, more) = mm_track::count(|| {
        let mut slot = s.sse.acquire();
        let (idle, out) = slot.take().unwrap_or_else(|| idle_stream(pool));
        let events = idle.reuse(Metered(body));
        Relay::new(events, slot, out, charge, Arc::clone(&s.tallies), stats)
    });
    relay.add_counted(more);
    let mut res = Response::new(Body::from_stream(relay));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-mm-prompt-tokens", HeaderValue::from(fit.tokens_after));
    h.insert(
        "x-mm-dropped-messages",
        HeaderValue::from(fit.dropped_items),
    );
    Ok(res)
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.manager.report().to_prometheus(),
    )
        .into_response()
}

async fn memory(State(s): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        s.manager.report().to_json(),
    )
        .into_response()
}

async fn healthz(State(s): State<Arc<AppState>>) -> Response {
    let body = serde_json::json!({
        "status": "ok",
        "model": s.slot.name(),
        "model_loaded": s.slot.is_loaded(),
        "model_loads": s.slot.loads(),
        "model_unloads": s.slot.unloads(),
        "budget_used_bytes": s.manager.budget().used(),
        "budget_limit_bytes": s.manager.budget().limit(),
    });
    axum::Json(body).into_response()
}

async fn allocs(State(s): State<Arc<AppState>>) -> Response {
    axum::Json(s.tallies.report()).into_response()
}
