//! Serves the memory report as Prometheus text on `GET /metrics` (std `TcpListener`, one
//! request at a time), while a worker thread keeps the manager busy so counters move.
//!
//! ```text
//! cargo run -p memory-manager --example metrics_endpoint -- --print          # one exposition
//! cargo run -p memory-manager --example metrics_endpoint -- 127.0.0.1:9184 120  # serve 120 s
//! ```
//! `.ci/prometheus.sh` checks the printed exposition with `promtool check metrics` and has a
//! real Prometheus server scrape the endpoint.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use memory_manager::{MemoryConfig, MemoryManager, MetricsConfig, TrackedAlloc};
use mm_gguf::{GgufWriter, MetaValue, ModelRegistry, RegistryConfig, types::GgmlType};

#[global_allocator]
static GLOBAL: TrackedAlloc = TrackedAlloc::new(std::alloc::System);

/// One unit of work: a pooled buffer, an interned word, an arena scope.
fn work(manager: &MemoryManager, i: u64) -> Result<(), memory_manager::MemoryError> {
    let mut buf = manager.buffer(4096)?;
    buf.extend_from_slice(b"data: chunk\n\n");
    manager
        .interner()
        .get_or_intern(["alpha", "beta", "gamma"][(i % 3) as usize]);
    manager.scope(|arena| arena.alloc_str("a request's scratch").map(|_| ()))?;
    Ok(())
}

fn write_model(path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let data = vec![0u8; 4096];
    let mut w = GgufWriter::new();
    w.add_metadata("general.name", MetaValue::String("tiny".into()))?;
    w.add_tensor("blk.0.w", GgmlType::F32, &[1024], &data)?;
    w.write_file(path)?;
    Ok(())
}

/// Answers one HTTP/1.1 request: `/metrics` gets the exposition, anything else a 404.
fn serve(mut stream: TcpStream, manager: &MemoryManager, config: &MetricsConfig) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Skip the headers (bounded: a few KiB at most from Prometheus).
    let mut line = String::new();
    for _ in 0..100 {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {}
        }
    }
    let (status, body) = if request_line.starts_with("GET /metrics") {
        match manager.report().to_prometheus_with(config) {
            Ok(text) => ("200 OK", text),
            Err(e) => ("500 Internal Server Error", format!("{e}\n")),
        }
    } else {
        ("404 Not Found", "try /metrics\n".to_owned())
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let manager = Arc::new(MemoryManager::new(
        MemoryConfig::new().with_max_memory(256 << 20),
    )?);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("tiny.gguf");
    write_model(&path)?;
    let models = ModelRegistry::from_manager(&manager, RegistryConfig::new());
    // SAFETY: the file was written above and is not modified while mapped.
    unsafe { models.register("tiny", &path) };
    drop(models.get("tiny")?);
    for i in 0..100 {
        work(&manager, i)?;
    }
    let config = MetricsConfig::new().with_label("service", "metrics-endpoint");

    if args.first().map(String::as_str) == Some("--print") {
        print!("{}", manager.report().to_prometheus_with(&config)?);
        return Ok(());
    }
    let addr = args.first().map_or("127.0.0.1:9184", String::as_str);
    let seconds: u64 = args.get(1).map_or(Ok(60), |s| s.parse())?;
    let deadline = Instant::now() + Duration::from_secs(seconds);

    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (manager, stop) = (Arc::clone(&manager), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let _ = work(&manager, i);
                i += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    eprintln!("serving http://{addr}/metrics for {seconds} s");
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                serve(stream, &manager, &config);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = worker.join();
    Ok(())
}
