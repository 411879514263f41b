//! `llm-service`: the reference service. See `docs/service.md`.
//!
//! `cargo run --release -p llm-service -- --model PATH [--addr 127.0.0.1:8080] [--upstream URL]`
//! with the memory manager configured from `MM_*` (`MM_MAX_MEMORY_MB=512`, ...).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use llm_service::{ModelSlot, Service, ServiceConfig};
use memory_manager::{MemoryConfig, MemoryManager, PressureDelivery, TrackedAlloc};

#[global_allocator]
static GLOBAL: TrackedAlloc = TrackedAlloc::new(std::alloc::System);

/// The reference LLM service: embeddings, streamed chat, /metrics, /memory, /healthz.
#[derive(Debug, Parser)]
#[command(name = "llm-service", version)]
struct Args {
    /// The GGUF model (its tokenizer and `token_embd.weight` serve the embeddings; its
    /// window bounds the chat conversations).
    #[arg(long)]
    model: PathBuf,
    /// The name clients ask for (default: the file name without `.gguf`).
    #[arg(long)]
    model_name: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// OpenAI-compatible upstream for `/v1/chat/completions` (`http://127.0.0.1:9090`).
    #[arg(long)]
    upstream: Option<String>,
    /// Largest request body in bytes; larger ones get 413 without being read.
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Milliseconds a request waits for memory before it gets 503 with Retry-After.
    #[arg(long, default_value_t = 100)]
    reserve_timeout_ms: u64,
    /// KiB each chat stream reserves from the budget for its life.
    #[arg(long, default_value_t = 256)]
    stream_reserve_kib: u64,
    /// Bytes the embedding cache may hold (capped at a quarter of the memory limit).
    #[arg(long, default_value_t = 32 << 20)]
    cache_bytes: u64,
    /// Serve the same routes built without this project (moka, eventsource-stream, `Vec`
    /// buffers, a `Bump` per request), for comparison.
    #[arg(long)]
    baseline: bool,
    /// Seconds to let streams in flight finish after SIGTERM before exiting.
    #[arg(long, default_value_t = 10)]
    shutdown_grace_secs: u64,
}

/// Registers for SIGTERM and SIGINT (Ctrl-C) now, and returns a future that completes at the
/// first of them. Registering before the service says it is serving means a signal sent as
/// soon as the address is printed stops it gracefully instead of killing it with the
/// default action.
fn termination() -> std::io::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        let mut ctrl_c = tokio::signal::windows::ctrl_c()?;
        Ok(async move {
            ctrl_c.recv().await;
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut config = MemoryConfig::from_env()?;
    if std::env::var_os("MM_PRESSURE_DELIVERY").is_none() {
        // A service runs pressure handlers on their own thread, not on the request that
        // crossed the threshold.
        config = config.with_pressure_delivery(PressureDelivery::Thread);
    }
    let manager = MemoryManager::new(config)?;
    let name = args.model_name.clone().unwrap_or_else(|| {
        args.model
            .file_stem()
            .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned())
    });
    // SAFETY: the model file is not modified while the service runs (docs/service.md says to
    // replace a model file by rename, never in place).
    let slot = unsafe { ModelSlot::register(&manager, &name, &args.model) };
    slot.get()?; // load now, so a bad file fails at start
    let mut service_config = ServiceConfig::new(&name);
    service_config.upstream = args.upstream.clone();
    service_config.max_body_bytes = args.max_body_bytes;
    service_config.reserve_timeout = Duration::from_millis(args.reserve_timeout_ms);
    service_config.stream_reserve = args.stream_reserve_kib << 10;
    service_config.cache_bytes = args.cache_bytes;
    let router = if args.baseline {
        llm_service::baseline::Baseline::new(
            &manager,
            Arc::clone(&slot),
            args.upstream.as_deref(),
            args.cache_bytes,
        )?
        .router()
    } else {
        Service::new(&manager, Arc::clone(&slot), service_config)?.router()
    };
    let terminated = termination()?;
    let listener = tokio::net::TcpListener::bind(&args.addr).await?;
    eprintln!(
        "llm-service: serving `{name}` on http://{} (memory limit {} MiB{})",
        listener.local_addr()?,
        manager.budget().limit() >> 20,
        if args.baseline {
            ", baseline routes"
        } else {
            ""
        }
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, router).with_graceful_shutdown(async {
        let _ = stop_rx.await;
    });
    let server = std::future::IntoFuture::into_future(server);
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => return Ok(r?),
        () = terminated => {}
    }
    eprintln!(
        "llm-service: shutting down (in-flight requests get {} s)",
        args.shutdown_grace_secs
    );
    let _ = stop_tx.send(());
    let grace = tokio::time::sleep(Duration::from_secs(args.shutdown_grace_secs));
    tokio::select! {
        r = &mut server => r?,
        () = grace => eprintln!("llm-service: grace period over, exiting"),
    }
    eprintln!("llm-service: stopped");
    Ok(())
}
