//! `llm-stub`: an OpenAI-compatible upstream that replays a recorded chat-completions
//! stream at a chosen pace, for tests and the load stage (no network needed).
//!
//! `llm-stub --addr 127.0.0.1:9090 --pace-ms 20 [--replay FILE.sse]`

use std::time::Duration;

use clap::Parser;
use llm_service::stub::{RECORDED, Stub};

/// Replays a recorded chat-completions SSE stream.
#[derive(Debug, Parser)]
#[command(name = "llm-stub", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9090")]
    addr: String,
    /// Milliseconds between events.
    #[arg(long, default_value_t = 20)]
    pace_ms: u64,
    /// An SSE recording to replay instead of the built-in one.
    #[arg(long)]
    replay: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let recording = match &args.replay {
        Some(p) => std::fs::read_to_string(p)?,
        None => RECORDED.to_owned(),
    };
    let stub = Stub::new(&recording, Duration::from_millis(args.pace_ms));
    let listener = tokio::net::TcpListener::bind(&args.addr).await?;
    eprintln!("llm-stub: listening on {}", listener.local_addr()?);
    axum::serve(listener, stub.router())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
