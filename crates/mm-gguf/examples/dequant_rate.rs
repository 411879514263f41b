//! Probe: the dequantization kernels' own rate on one tensor of a model (the chunked walker
//! into one reused buffer, nothing else done with the values), median of several rounds,
//! wall time on a warm map. The reference figure for `mm dequant --out` and `mm verify
//! --dequant`, which docs/benchmarks.md compares with it.
//!
//! ```text
//! cargo run --release -p mm-gguf --example dequant_rate -- MODEL.gguf [TENSOR] [ROUNDS]
//! ```
//! Without TENSOR, every tensor of the model in turn (one whole-model pass per round).

use std::time::Instant;

use mm_gguf::MappedGguf;
use mm_gguf::quant::DequantChunks;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("usage: dequant_rate MODEL.gguf [TENSOR] [ROUNDS]");
    let tensor = args.next().filter(|t| t != "-");
    let rounds: usize = args.next().map_or(7, |r| r.parse().expect("rounds"));
    // SAFETY: the probe's model file is not modified while it runs.
    let m = unsafe { MappedGguf::open(&path) }.expect("open");
    let g = m.gguf();
    let views: Vec<_> = match &tensor {
        Some(name) => vec![g.tensor(name).expect("no such tensor")],
        None => g.tensors().collect(),
    };
    let (mut secs, mut values, mut input) = (Vec::new(), 0u64, 0u64);
    let mut buf = Vec::new();
    for _ in 0..rounds {
        let t0 = Instant::now();
        let (mut n, mut bytes) = (0u64, 0u64);
        for t in &views {
            let chunks = DequantChunks::new(t.ggml_type(), t.data).expect("dequantizable");
            chunks
                .for_each(&mut buf, |c| {
                    n += c.values.len() as u64;
                    std::hint::black_box(c.values.last());
                    Ok::<(), ()>(())
                })
                .expect("dequant");
            bytes += t.n_bytes();
        }
        secs.push(t0.elapsed().as_secs_f64());
        (values, input) = (n, bytes);
    }
    secs.sort_by(f64::total_cmp);
    let s = secs[secs.len() / 2];
    println!(
        "{}: {values} values from {input} B in {:.4} s (median of {rounds}): {:.2} GB/s of input, {:.2} GB/s of f32",
        tensor.as_deref().unwrap_or("all tensors"),
        s,
        input as f64 / s / 1e9,
        (values * 4) as f64 / s / 1e9
    );
}
