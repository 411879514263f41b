//! mm-gguf through the facade: a synthetic GGUF model written at start with mm-gguf's own
//! writer (or a real file with `--model`), mapped through the manager's mmap cache, parsed in
//! place and every tensor dequantized to `f32`; then the same file read again with the
//! streaming loader (64 KiB window, charged to the manager's budget) and dequantized chunk
//! by chunk.
//!
//! The two paths must give the same bits (a per-tensor FNV digest over every value, in
//! order), no value may be NaN or infinite (the synthetic data is drawn so that every f16 or
//! f32 field is finite), and the streaming path's peak heap, measured with mm-track, must
//! stay near 1 MB however large the model is.

use std::path::{Path, PathBuf};
use std::time::Instant;

use memory_manager::{MemoryBudget, MemoryConfig, MemoryManager};
use mm_gguf::quant::DequantChunks;
use mm_gguf::types::GgmlType;
use mm_gguf::{GgufWriter, MappedGguf, MetaValue, StreamingGguf};

use super::{live_bytes, mb};
use crate::Options;
use crate::check::{Check, Report, fmt_num};
use crate::workload::Rng;

const PART: &str = "mm-gguf";

/// The streaming loader's working-memory target: about 1 MB (1 MiB).
pub const STREAM_LIMIT: f64 = 1_048_576.0;

/// Input bytes dequantized at a time on the streaming path.
const STREAM_DEQUANT_BYTES: usize = 16 * 1024;

/// A model file to load: the synthetic one (in a temp dir removed on drop) or a real one.
#[derive(Debug)]
pub struct Model {
    /// The file.
    pub path: PathBuf,
    /// What the synthetic model holds (`None` for a real file).
    pub expected: Option<Expected>,
    _dir: Option<tempfile::TempDir>,
}

/// What the synthetic model was written with.
#[derive(Debug, Clone, Copy)]
pub struct Expected {
    /// Tensors.
    pub tensors: usize,
    /// Strings in `tokenizer.ggml.tokens`.
    pub vocab: usize,
    /// Values over all tensors.
    pub values: u64,
}

/// The tensor types of the synthetic model's layers, cycled through for the extra tensor.
const EXTRA_TYPES: [GgmlType; 4] = [
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q2_K,
    GgmlType::Q5_1,
];

impl Model {
    /// Writes a synthetic llama-shaped model with `layers` layers and a vocabulary of
    /// `vocab` tokens: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q2_K..Q6_K tensors
    /// with random blocks whose every byte is below 0x7C, so every f16/f32 field in them is
    /// finite.
    ///
    /// # Errors
    /// An I/O or writer error, as text.
    pub fn synthetic(layers: usize, vocab: usize) -> Result<Self, String> {
        const HIDDEN: u64 = 1024;
        const FF: u64 = 2816;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("synthetic.gguf");
        let mut specs: Vec<(String, GgmlType, Vec<u64>)> = vec![
            (
                "token_embd.weight".into(),
                GgmlType::Q6_K,
                vec![HIDDEN, vocab as u64],
            ),
            ("output_norm.weight".into(), GgmlType::F32, vec![HIDDEN]),
        ];
        for l in 0..layers {
            let b = |n: &str| format!("blk.{l}.{n}");
            specs.extend([
                (b("attn_norm.weight"), GgmlType::F32, vec![HIDDEN]),
                (b("attn_q.weight"), GgmlType::Q4_K, vec![HIDDEN, HIDDEN]),
                (b("attn_k.weight"), GgmlType::Q4_0, vec![HIDDEN, 256]),
                (b("attn_v.weight"), GgmlType::Q8_0, vec![HIDDEN, 256]),
                (
                    b("attn_output.weight"),
                    GgmlType::Q5_K,
                    vec![HIDDEN, HIDDEN],
                ),
                (b("ffn_gate.weight"), GgmlType::Q5_0, vec![HIDDEN, FF]),
                (b("ffn_up.weight"), GgmlType::Q4_1, vec![HIDDEN, FF]),
                (b("ffn_down.weight"), GgmlType::Q3_K, vec![FF, HIDDEN]),
                (
                    b("extra.weight"),
                    EXTRA_TYPES[l % EXTRA_TYPES.len()],
                    vec![HIDDEN, 256],
                ),
            ]);
        }
        let mut rng = Rng::new(2024);
        let mut data = Vec::with_capacity(specs.len());
        let mut values = 0u64;
        for (name, ty, shape) in &specs {
            let n = ty
                .tensor_bytes(shape)
                .ok_or_else(|| format!("{name}: bad shape {shape:?}"))?;
            let mut bytes = vec![0u8; n as usize];
            for chunk in bytes.chunks_mut(8) {
                let r = rng.next_u64().to_le_bytes();
                for (b, x) in chunk.iter_mut().zip(r) {
                    *b = x % 0x7C;
                }
            }
            data.push(bytes);
            values += shape.iter().product::<u64>();
        }
        let mut w = GgufWriter::new();
        let tokens = (0..vocab).map(|i| format!("tok{i}"));
        let meta = [
            ("general.architecture", MetaValue::String("llama".into())),
            (
                "general.name",
                MetaValue::String("mm-stress synthetic".into()),
            ),
            ("llama.block_count", MetaValue::U32(layers as u32)),
            ("llama.embedding_length", MetaValue::U32(HIDDEN as u32)),
            ("llama.feed_forward_length", MetaValue::U32(FF as u32)),
            ("tokenizer.ggml.tokens", MetaValue::strings(tokens)),
        ];
        for (k, v) in meta {
            w.add_metadata(k, v).map_err(|e| e.to_string())?;
        }
        for ((name, ty, shape), bytes) in specs.iter().zip(&data) {
            w.add_tensor(name.clone(), *ty, shape, bytes)
                .map_err(|e| e.to_string())?;
        }
        w.write_file(&path).map_err(|e| e.to_string())?;
        Ok(Model {
            path,
            expected: Some(Expected {
                tensors: specs.len(),
                vocab,
                values,
            }),
            _dir: Some(dir),
        })
    }

    /// A real GGUF file.
    pub fn real(path: &Path) -> Self {
        Model {
            path: path.to_owned(),
            expected: None,
            _dir: None,
        }
    }

    /// The model `opts` asks for: the real file of `--model`, or a synthetic one sized for
    /// the run.
    ///
    /// # Errors
    /// As [`Model::synthetic`].
    pub fn for_run(opts: &Options) -> Result<Self, String> {
        match &opts.model {
            Some(p) => Ok(Model::real(p)),
            None if opts.quick || opts.soak.is_some() => Model::synthetic(1, 2_000),
            None => Model::synthetic(4, 8_000),
        }
    }
}

/// What a dequantization pass saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Digest {
    /// One FNV-1a digest over each tensor's values' bits, in tensor index order.
    pub tensors: Vec<u64>,
    /// Values decoded.
    pub values: u64,
    /// Values that were NaN or infinite.
    pub non_finite: u64,
    /// Bytes of tensor data read.
    pub bytes: u64,
}

fn fold(h: &mut u64, non_finite: &mut u64, values: &[f32]) {
    for v in values {
        *h = (*h ^ u64::from(v.to_bits())).wrapping_mul(0x0000_0100_0000_01b3);
        *non_finite += u64::from(!v.is_finite());
    }
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// Maps the model through the manager's mmap cache, parses it in place and dequantizes
/// every tensor with the default chunk size. Returns the digest and the parsed file.
///
/// # Errors
/// A mapping, parse or dequantization error, as text.
pub fn mapped_pass(manager: &MemoryManager, path: &Path) -> Result<(Digest, MappedGguf), String> {
    // SAFETY: the run's own fixture or the `--model` file, which must not change while the
    // stress run reads it (as its usage text says).
    let file = unsafe { manager.map(path) }.map_err(|e| e.to_string())?;
    let model = MappedGguf::from_mapped(file).map_err(|e| e.to_string())?;
    let mut d = Digest::default();
    let mut buf = Vec::new();
    for t in model.gguf().tensors() {
        let mut h = FNV_START;
        let mut chunks =
            DequantChunks::new(t.info.ggml_type(), t.data).map_err(|e| e.to_string())?;
        while let Some(c) = chunks.next_into(&mut buf) {
            d.values += c.values.len() as u64;
            fold(&mut h, &mut d.non_finite, c.values);
        }
        d.bytes += t.data.len() as u64;
        d.tensors.push(h);
    }
    Ok((d, model))
}

/// Reads the model with the streaming loader (charged to `budget`) and dequantizes every
/// tensor 16 KiB of input at a time.
///
/// # Errors
/// An I/O, parse, budget or dequantization error, as text.
pub fn streamed_pass(path: &Path, budget: &MemoryBudget) -> Result<Digest, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut s = StreamingGguf::open_with(file, Some(budget)).map_err(|e| e.to_string())?;
    let mut d = Digest::default();
    let mut buf = Vec::new();
    let mut failure = None;
    for i in 0..s.tensors().len() {
        let ty = s.tensors()[i].info().ggml_type();
        let mut h = FNV_START;
        s.read_tensor(i, |_, bytes| {
            match DequantChunks::with_chunk_bytes(ty, bytes, STREAM_DEQUANT_BYTES) {
                Ok(mut chunks) => {
                    while let Some(c) = chunks.next_into(&mut buf) {
                        d.values += c.values.len() as u64;
                        fold(&mut h, &mut d.non_finite, c.values);
                    }
                }
                Err(e) => failure = Some(e.to_string()),
            }
            d.bytes += bytes.len() as u64;
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        d.tensors.push(h);
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(d),
    }
}

/// Runs the GGUF checks.
pub fn run(opts: &Options, report: &mut Report) {
    let written = Instant::now();
    let model = match Model::for_run(opts) {
        Ok(m) => m,
        Err(e) => {
            report.push(Check::holds(PART, "synthetic GGUF model written", false, "yes").detail(e));
            return;
        }
    };
    let write_time = written.elapsed();
    let manager = match MemoryManager::new(MemoryConfig::default().with_max_memory(1 << 30)) {
        Ok(m) => m,
        Err(e) => {
            report.push(
                Check::holds(PART, "gguf: manager builds", false, "yes").detail(e.to_string()),
            );
            return;
        }
    };
    let file_len = std::fs::metadata(&model.path).map_or(0, |m| m.len());
    let what = match model.expected {
        Some(_) => "synthetic model".to_owned(),
        None => format!(
            "model {}",
            model.path.file_name().map_or_else(
                || model.path.display().to_string(),
                |n| n.to_string_lossy().into_owned()
            )
        ),
    };

    let started = Instant::now();
    let (mapped, open_heap) = mm_track::count(|| mapped_pass(&manager, &model.path));
    let mapped_time = started.elapsed();
    let (mapped, parsed) = match mapped {
        Ok(m) => m,
        Err(e) => {
            report.push(
                Check::holds(
                    PART,
                    &format!("{what} loads through the mmap cache"),
                    false,
                    "yes",
                )
                .detail(e),
            );
            return;
        }
    };
    let g = parsed.gguf();
    let (shape_ok, shape_detail) = match model.expected {
        Some(x) => {
            let vocab = g.get_array("tokenizer.ggml.tokens").map_or(0, |a| a.len());
            let ok = g.n_tensors() == x.tensors
                && vocab == x.vocab as u64
                && mapped.values == x.values
                && g.get_str("general.architecture").ok() == Some("llama");
            (
                ok,
                format!(
                    "{} tensors (wrote {}), {} tokens (wrote {}), {} values (wrote {})",
                    g.n_tensors(),
                    x.tensors,
                    vocab,
                    x.vocab,
                    mapped.values,
                    x.values
                ),
            )
        }
        None => (
            g.n_tensors() > 0 && mapped.bytes == g.tensor_bytes(),
            format!(
                "{} tensors, {} metadata keys, {} of tensor data",
                g.n_tensors(),
                g.metadata().len(),
                mb(g.tensor_bytes() as f64)
            ),
        ),
    };
    let in_cache = manager.mmap_cache().contains(&model.path);
    report.push(
        Check::holds(
            PART,
            &format!("{what} mapped through the cache, parsed, dequantized"),
            shape_ok,
            if model.expected.is_some() {
                "as written"
            } else {
                "every tensor decodes"
            },
        )
        .detail(format!(
            "{} file{}; {shape_detail}; open + dequantize {:.2} s ({:.0} M values/s); heap kept by the open model {}; {}",
            mb(file_len as f64),
            if model.expected.is_some() {
                format!(" written in {:.2} s", write_time.as_secs_f64())
            } else {
                String::new()
            },
            mapped_time.as_secs_f64(),
            mapped.values as f64 / mapped_time.as_secs_f64().max(1e-9) / 1e6,
            mb(open_heap.net_bytes() as f64),
            if in_cache {
                "held by the cache"
            } else {
                "mapped uncached (larger than the cache budget)"
            }
        )),
    );
    report.push(
        Check::equals(
            PART,
            "non-finite dequantized values",
            mapped.non_finite as f64,
            "values",
            0.0,
        )
        .detail(format!("{} values checked", fmt_num(mapped.values as f64))),
    );
    drop(parsed);

    // The streaming pass, alone on the machine's heap: its peak over the live bytes before
    // it is its working memory (the tracker's peak is exact to LIVE_SLACK_BYTES per thread,
    // and no other thread is running).
    let base = live_bytes();
    mm_track::reset_peak();
    let started = Instant::now();
    let streamed = streamed_pass(&model.path, manager.budget());
    let stream_time = started.elapsed();
    let peak = mm_track::snapshot().map_or(0, |s| s.peak_bytes);
    let (streamed, err) = match streamed {
        Ok(d) => (d, String::new()),
        Err(e) => (Digest::default(), e),
    };
    let working = peak.saturating_sub(base) as f64;
    report.push(
        Check::at_most(
            PART,
            "streaming-load working memory (peak heap)",
            working,
            "bytes",
            STREAM_LIMIT,
        )
        .detail(format!(
            "read and dequantized {} in {:.2} s; peak {} B over {} B live before",
            mb(streamed.bytes as f64),
            stream_time.as_secs_f64(),
            peak,
            base
        ))
        .require(err.is_empty(), &err)
        .require(
            mm_track::is_active(),
            "the tracker is not the global allocator",
        ),
    );
    let same = err.is_empty() && streamed == mapped;
    report.push(
        Check::holds(
            PART,
            "streamed values bit-identical to mapped values",
            same,
            "same digest, every tensor",
        )
        .detail(format!(
            "{} tensors, {} values each way",
            mapped.tensors.len(),
            fmt_num(streamed.values as f64)
        )),
    );
}
