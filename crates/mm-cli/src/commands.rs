//! The `mm` subcommands.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use mm_gguf::quant::DequantChunks;
use mm_gguf::types::GgmlType;
use mm_gguf::{
    Access, Inspection, MappedGguf, MmapCache, MmapCacheConfig, STREAM_CHUNK, StreamingGguf,
    TensorInfo,
};
use serde_json::{Value as Json, json};

use crate::Fail;
use crate::show;

fn live_heap() -> u64 {
    mm_track::snapshot().map_or(0, |s| s.live_bytes)
}

/// Prefixes a file error with the file's path.
fn at(path: &Path) -> impl Fn(mm_gguf::GgufError) -> Fail + '_ {
    move |e| Fail::file(format!("{}: {e}", path.display()))
}

fn print_json(v: &Json) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Maps `path`; an empty file (which cannot be mapped) gives `None` and inspects as
/// truncated.
pub(crate) fn map(path: &Path) -> Result<Option<Arc<mm_gguf::MappedFile>>, Fail> {
    let meta =
        std::fs::metadata(path).map_err(|e| Fail::file(format!("{}: {e}", path.display())))?;
    if meta.len() == 0 {
        return Ok(None);
    }
    let cache = MmapCache::new(MmapCacheConfig::default());
    crate::sigbus::watch(path);
    // SAFETY: `mm` documents (module docs, `--help`) that the files it reads must not be
    // modified or truncated while it runs, the contract of `MmapCache::get`; a truncation
    // anyway is caught by the SIGBUS handler, which prints one line and exits.
    unsafe { cache.get(path) }.map(Some).map_err(Fail::file)
}

/// Maps and parses `path` (the same contract as [`map`]).
pub(crate) fn open_mapped(path: &Path) -> Result<MappedGguf, Fail> {
    crate::sigbus::watch(path);
    // SAFETY: as in `map`: the documented contract of `mm`, with the SIGBUS handler behind it.
    unsafe { MappedGguf::open(path) }.map_err(at(path))
}

fn tensor_json(t: &TensorInfo<'_>, data_offset: Option<u64>) -> Json {
    json!({
        "name": t.name(), "type": t.ggml_type().name(), "shape": t.shape(),
        "bytes": t.n_bytes(), "offset": data_offset.map(|d| d + t.offset()),
    })
}

/// `mm inspect`.
pub fn inspect(path: &Path, items: usize, as_json: bool) -> Result<(), Fail> {
    let file = map(path)?;
    let bytes: &[u8] = file.as_deref().map_or(&[], |f| &f[..]);
    let (ins, heap, secs) = timed_inspect(bytes);
    if as_json {
        print_json(&inspect_json(path, &ins, items, heap, secs));
    } else {
        inspect_text(path, &ins, items, heap, secs);
    }
    inspection_outcome(path, &ins)
}

/// `mm inspect --json`'s document for `bytes` (the contents of `path`), and the failure
/// `mm inspect` would exit with (truncated or invalid), if any. `mm mcp`'s `inspect_model`.
pub(crate) fn inspect_document(
    path: &Path,
    bytes: &[u8],
    items: usize,
) -> (Json, Result<(), Fail>) {
    let (ins, heap, secs) = timed_inspect(bytes);
    (
        inspect_json(path, &ins, items, heap, secs),
        inspection_outcome(path, &ins),
    )
}

/// Inspects `bytes`, measuring the index's heap and the time taken.
fn timed_inspect(bytes: &[u8]) -> (Inspection<'_>, u64, f64) {
    let (before, t0) = (live_heap(), Instant::now());
    let ins = mm_gguf::inspect(bytes);
    (
        ins,
        live_heap().saturating_sub(before),
        t0.elapsed().as_secs_f64(),
    )
}

/// What is wrong with an inspected file, as one line naming it (`Ok` for a complete, valid
/// GGUF).
fn inspection_outcome(path: &Path, ins: &Inspection<'_>) -> Result<(), Fail> {
    match &ins.error {
        None => Ok(()),
        Some(e) if ins.is_truncated() => Err(Fail::file(format!(
            "{}: truncated: the file ends at least {} byte(s) early, at offset {}{}",
            path.display(),
            e.missing_bytes().unwrap_or(0),
            e.offset().unwrap_or(ins.file_len),
            ins.cut_in.map(|n| format!(" in '{n}'")).unwrap_or_default()
        ))),
        Some(e) => Err(Fail::file(format!("{}: {e}", path.display()))),
    }
}

fn tensor_totals(ins: &Inspection<'_>) -> (u64, BTreeMap<&'static str, (usize, u64)>) {
    let mut by_type: BTreeMap<&'static str, (usize, u64)> = BTreeMap::new();
    for t in &ins.tensors {
        let e = by_type.entry(t.ggml_type().name()).or_default();
        e.0 += 1;
        e.1 += t.n_bytes();
    }
    (ins.tensors.iter().map(TensorInfo::n_bytes).sum(), by_type)
}

fn inspect_json(path: &Path, ins: &Inspection<'_>, items: usize, heap: u64, secs: f64) -> Json {
    let (tensor_bytes, by_type) = tensor_totals(ins);
    json!({
        "file": path.display().to_string(),
        "file_bytes": ins.file_len,
        "version": ins.version,
        "alignment": ins.alignment,
        "declared_metadata": ins.declared_kv,
        "declared_tensors": ins.declared_tensors,
        "data_offset": ins.data_offset,
        "truncated": ins.is_truncated(),
        "missing_bytes": ins.error.as_ref().and_then(|e| e.missing_bytes()),
        "error": ins.error.as_ref().map(|e| e.to_string()),
        "stopped_in": ins.cut_in,
        "metadata": ins.metadata.iter().map(|m| json!({
            "key": m.key, "type": show::value_type_name(&m.value), "value": show::value_json(&m.value, items),
        })).collect::<Vec<_>>(),
        "tensors": ins.tensors.iter().map(|t| tensor_json(t, ins.data_offset)).collect::<Vec<_>>(),
        "tensor_types": by_type.iter().map(|(k, (n, b))| (k.to_string(), json!({"count": n, "bytes": b}))).collect::<serde_json::Map<_, _>>(),
        "memory_plan": {
            "mode": "mapped",
            "file_backed_bytes": ins.file_len,
            "tensor_bytes": tensor_bytes,
            "header_bytes": ins.data_offset,
            "index_heap_bytes": heap,
            "parse_seconds": secs,
            "copying_loader_heap_bytes": tensor_bytes,
        },
    })
}

fn inspect_text(path: &Path, ins: &Inspection<'_>, items: usize, heap: u64, secs: f64) {
    let (tensor_bytes, by_type) = tensor_totals(ins);
    println!("{}", path.display());
    println!(
        "  size          {} B ({})",
        ins.file_len,
        show::bytes(ins.file_len)
    );
    match ins.version {
        Some(v) => println!(
            "  format        GGUF v{v}, little-endian, alignment {}",
            ins.alignment
        ),
        None => println!("  format        (header unreadable)"),
    }
    if let (Some(kv), Some(nt)) = (ins.declared_kv, ins.declared_tensors) {
        println!("  declared      {kv} metadata keys, {nt} tensors");
    }
    if let Some(d) = ins.data_offset {
        println!(
            "  data section  at offset {d} (header {}), tensor data {}",
            show::bytes(d),
            show::bytes(tensor_bytes)
        );
    }
    println!("metadata ({} read):", ins.metadata.len());
    let width = ins
        .metadata
        .iter()
        .map(|m| m.key.len())
        .max()
        .unwrap_or(0)
        .min(48);
    for m in &ins.metadata {
        println!(
            "  {:width$}  {:18} {}",
            m.key,
            show::type_text(&m.value),
            show::value_text(&m.value, items)
        );
    }
    println!("tensors ({} read):", ins.tensors.len());
    let width = ins
        .tensors
        .iter()
        .map(|t| t.name().len())
        .max()
        .unwrap_or(0)
        .min(48);
    println!(
        "  {:width$}  {:8} {:24} {:>12}  {:>12}",
        "name", "type", "shape", "bytes", "offset"
    );
    for t in &ins.tensors {
        let offset = ins
            .data_offset
            .map_or_else(|| "?".to_string(), |d| (d + t.offset()).to_string());
        println!(
            "  {:width$}  {:8} {:24} {:>12}  {:>12}",
            t.name(),
            t.ggml_type().name(),
            format!("{:?}", t.shape()),
            t.n_bytes(),
            offset
        );
    }
    for (ty, (n, b)) in &by_type {
        println!("  {n:4} x {ty:8} {}", show::bytes(*b));
    }
    println!("memory plan (mapped, the default):");
    println!(
        "  file-backed   {} in the shared page cache, faulted in on first touch, evictable",
        show::bytes(ins.file_len)
    );
    println!(
        "  heap          {} for the index ({} keys, {} tensors), parsed in {:.2} ms",
        show::bytes(heap),
        ins.metadata.len(),
        ins.tensors.len(),
        secs * 1e3
    );
    println!(
        "  vs copying    a loader that reads tensors onto the heap needs {} more",
        show::bytes(tensor_bytes)
    );
    if let Some(e) = &ins.error {
        if let Some(name) = ins.cut_in {
            println!("  (stopped inside the record of '{name}')");
        }
        if ins.is_truncated() {
            println!(
                "TRUNCATED: the file ends at least {} byte(s) early: {e}",
                e.missing_bytes().unwrap_or(0)
            );
        } else {
            println!("INVALID: {e}");
        }
    }
}

/// A checksum of a byte stream that is the same however the stream is cut into chunks:
/// FNV-1a over little-endian 64-bit words in four interleaved lanes (32 bytes a round, so
/// the four multiplications overlap; about 10 GB/s where byte-wise FNV-1a ran at about
/// 1 GB/s and dominated `mm verify`), the tail of a chunk carried into the next one, and
/// the lanes and the last partial round folded at the end.
#[derive(Debug, Clone)]
struct StreamSum {
    lanes: [u64; 4],
    carry: [u8; 32],
    carried: usize,
}

const FNV_PRIME: u64 = 0x100_0000_01b3;
const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

impl Default for StreamSum {
    fn default() -> Self {
        StreamSum {
            lanes: [FNV_START, FNV_START ^ 1, FNV_START ^ 2, FNV_START ^ 3],
            carry: [0; 32],
            carried: 0,
        }
    }
}

impl StreamSum {
    fn round(&mut self, block: &[u8]) {
        for (lane, word) in self.lanes.iter_mut().zip(block.chunks_exact(8)) {
            let w = u64::from_le_bytes(word.try_into().unwrap_or_default());
            *lane = (*lane ^ w).wrapping_mul(FNV_PRIME);
        }
    }

    fn update(&mut self, mut bytes: &[u8]) {
        if self.carried > 0 {
            let take = (32 - self.carried).min(bytes.len());
            self.carry[self.carried..self.carried + take].copy_from_slice(&bytes[..take]);
            self.carried += take;
            bytes = &bytes[take..];
            if self.carried < 32 {
                return;
            }
            let block = self.carry;
            self.round(&block);
            self.carried = 0;
        }
        let mut blocks = bytes.chunks_exact(32);
        // Four independent scalar multiply chains, kept in registers for the whole chunk.
        // Left alone, the compiler packs pairs of lanes into SSE2, which has no 64-bit
        // multiply and emulates it with three: `in_register` stops that.
        let [mut a, mut b, mut c, mut d] = self.lanes;
        let word = |block: &[u8], i: usize| {
            u64::from_le_bytes(block[i * 8..i * 8 + 8].try_into().unwrap_or_default())
        };
        for block in &mut blocks {
            a = in_register((a ^ word(block, 0)).wrapping_mul(FNV_PRIME));
            b = in_register((b ^ word(block, 1)).wrapping_mul(FNV_PRIME));
            c = in_register((c ^ word(block, 2)).wrapping_mul(FNV_PRIME));
            d = in_register((d ^ word(block, 3)).wrapping_mul(FNV_PRIME));
        }
        self.lanes = [a, b, c, d];
        let rest = blocks.remainder();
        self.carry[..rest.len()].copy_from_slice(rest);
        self.carried = rest.len();
    }

    fn finish(&self) -> u64 {
        let mut h = FNV_START;
        for lane in self.lanes {
            h = (h ^ lane).wrapping_mul(FNV_PRIME);
        }
        for &b in &self.carry[..self.carried] {
            h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
        h
    }
}

/// `x`, which the optimizer must assume an empty `asm!` may have changed: a barrier that
/// keeps the value a scalar in a register (no memory round trip, unlike `black_box`).
#[inline(always)]
fn in_register(mut x: u64) -> u64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the template is a comment: no instruction runs, no memory or flag is touched; the
    // operand only tells the compiler that `x` is read and written in a register.
    unsafe {
        std::arch::asm!("/* {0} */", inout(reg) x, options(pure, nomem, nostack, preserves_flags));
    }
    x
}

/// Counts and bytes of one verification pass.
#[derive(Debug, Default)]
struct Tally {
    tensors: usize,
    bytes: u64,
    values: u64,
    non_finite: u64,
    checksum: StreamSum,
}

impl Tally {
    fn touch(&mut self, chunk: &[u8]) {
        // Reads every byte (so every page is faulted in).
        self.checksum.update(chunk);
        self.bytes += chunk.len() as u64;
    }

    fn dequant(
        &mut self,
        ty: GgmlType,
        chunk: &[u8],
        buf: &mut Vec<f32>,
        name: &str,
    ) -> Result<(), Fail> {
        let chunks = DequantChunks::new(ty, chunk)
            .map_err(|e| Fail::file(format!("tensor '{name}': {e}")))?;
        chunks.for_each(buf, |c| {
            self.values += c.values.len() as u64;
            self.non_finite += non_finite(c.values);
            Ok::<(), Fail>(())
        })
    }
}

/// How many of `values` are infinite or NaN. First one branch-free pass that only asks
/// whether any is (an OR of one bit per value, four values per SSE2 instruction); the count
/// is taken only for a chunk that has one.
fn non_finite(values: &[f32]) -> u64 {
    // Exponent all ones, i.e. magnitude bits >= 0x7f80_0000: adding 0x0080_0000 carries into
    // the top bit exactly then.
    let flag = |v: &f32| ((v.to_bits() & 0x7fff_ffff) + 0x0080_0000) & 0x8000_0000;
    if values.iter().fold(0, |acc, v| acc | flag(v)) == 0 {
        return 0;
    }
    values.iter().filter(|v| !v.is_finite()).count() as u64
}

fn progress(total: u64, as_json: bool) -> indicatif::ProgressBar {
    if as_json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// `mm verify`.
pub fn verify(path: &Path, dequant: bool, stream: bool, as_json: bool) -> Result<(), Fail> {
    let (t0, cpu0) = (Instant::now(), cpu_seconds());
    mm_track::reset_peak();
    let heap0 = live_heap();
    let mut tally = Tally::default();
    let mut buf: Vec<f32> = Vec::new();
    let (n_tensors, mode) = if stream {
        let f = std::fs::File::open(path)
            .map_err(|e| Fail::file(format!("{}: {e}", path.display())))?;
        let mut s = StreamingGguf::open(f).map_err(at(path))?;
        let bar = progress(
            s.tensors().iter().map(|t| t.info().n_bytes()).sum(),
            as_json,
        );
        let mut current = String::new();
        let mut result = Ok(());
        s.for_each_tensor(|info, _, chunk| {
            if current != info.name() {
                current = info.name().to_string();
                tally.tensors += 1;
            }
            tally.touch(chunk);
            if dequant && let Err(e) = tally.dequant(info.ggml_type(), chunk, &mut buf, info.name())
            {
                result = Err(e);
            }
            bar.inc(chunk.len() as u64);
            Ok(())
        })
        .map_err(at(path))?;
        result?;
        bar.finish_and_clear();
        (s.tensors().len(), "streamed")
    } else {
        let m = open_mapped(path)?;
        let _ = m.advise(Access::Sequential);
        let g = m.gguf();
        let bar = progress(g.tensor_bytes(), as_json);
        for t in g.tensors() {
            bar.set_message(t.name().to_string());
            tally.tensors += 1;
            if dequant {
                // Checksum and dequantize a piece at a time, so the dequantization reads
                // what the checksum just brought into the cache instead of the whole tensor
                // twice from memory.
                let block = t.ggml_type().type_size().max(1) as usize;
                for piece in t.data.chunks((STREAM_CHUNK / block).max(1) * block) {
                    tally.touch(piece);
                    tally.dequant(t.ggml_type(), piece, &mut buf, t.name())?;
                }
            } else {
                tally.touch(t.data);
            }
            bar.inc(t.n_bytes());
        }
        bar.finish_and_clear();
        (g.n_tensors(), "mapped")
    };
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    let peak = mm_track::snapshot()
        .map_or(0, |s| s.peak_bytes)
        .saturating_sub(heap0);
    debug_assert_eq!(n_tensors, tally.tensors);
    if as_json {
        print_json(&json!({
            "file": path.display().to_string(), "ok": true, "mode": mode, "tensors": tally.tensors,
            "bytes": tally.bytes, "checksum": format!("{:016x}", tally.checksum.finish()), "seconds": secs, "cpu_seconds": cpu,
            "dequantized_values": dequant.then_some(tally.values),
            "non_finite_values": dequant.then_some(tally.non_finite),
            "peak_heap_bytes": peak,
        }));
    } else {
        println!("{}: OK ({mode})", path.display());
        println!(
            "  tensors       {} read, {} in {:.3} s ({}/s; {:.3} s of CPU)",
            tally.tensors,
            show::bytes(tally.bytes),
            secs,
            show::bytes((tally.bytes as f64 / secs.max(1e-9)) as u64),
            cpu
        );
        if dequant {
            println!(
                "  dequantized   {} values, {} non-finite",
                tally.values, tally.non_finite
            );
        }
        println!("  checksum      {:016x}", tally.checksum.finish());
        println!("  peak heap     {} above the start", show::bytes(peak));
    }
    Ok(())
}

/// Summary statistics of dequantized values: count, sum, min and max of the finite ones,
/// and how many are not finite. A chunk with no non-finite value (the usual case) takes a
/// branch-free path the compiler vectorizes.
#[derive(Debug)]
struct Stats {
    n: u64,
    sum: f64,
    min: f32,
    max: f32,
    non_finite: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            n: 0,
            sum: 0.0,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            non_finite: 0,
        }
    }
}

impl Stats {
    fn add(&mut self, values: &[f32]) {
        self.n += values.len() as u64;
        let bad = non_finite(values);
        if bad == 0 {
            self.add_finite(values);
            return;
        }
        self.non_finite += bad;
        for &v in values.iter().filter(|v| v.is_finite()) {
            self.sum += f64::from(v);
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
    }

    /// Adds values known to be finite: eight lanes, no branch, so the compiler vectorizes.
    /// Sums run in `f32` over blocks of 1,024 values (128 per lane) and are carried in `f64`
    /// between blocks: converting every value to `f64` made the statistics cost four times
    /// the dequantization, and a block's rounding error (about 1e-5 of its magnitude) stays far
    /// below the printed precision.
    fn add_finite(&mut self, values: &[f32]) {
        {
            let mut acc = [0f64; 8];
            let mut lo = [f32::INFINITY; 8];
            let mut hi = [f32::NEG_INFINITY; 8];
            let mut blocks = values.chunks_exact(1024);
            for block in &mut blocks {
                let mut part = [0f32; 8];
                for g in block.chunks_exact(8) {
                    for k in 0..8 {
                        let v = g[k];
                        part[k] += v;
                        // Plain compares (the values are finite): `f32::min`'s NaN rule
                        // costs three more instructions per lane.
                        lo[k] = if v < lo[k] { v } else { lo[k] };
                        hi[k] = if v > hi[k] { v } else { hi[k] };
                    }
                }
                for k in 0..8 {
                    acc[k] += f64::from(part[k]);
                }
            }
            for &v in blocks.remainder() {
                acc[0] += f64::from(v);
                lo[0] = lo[0].min(v);
                hi[0] = hi[0].max(v);
            }
            self.sum += acc.iter().sum::<f64>();
            self.min = lo.iter().fold(self.min, |m, &v| m.min(v));
            self.max = hi.iter().fold(self.max, |m, &v| m.max(v));
        }
    }
}

/// CPU time of this process so far (user + system, all threads), in seconds: on a busy
/// machine the wall time also counts the waits for a core.
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_PROCESS_CPUTIME_ID is supported on
    // Linux, and on failure `ts` stays zeroed (a visible 0 reading, nothing unsound).
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// `values` as little-endian bytes: the values' own memory on a little-endian machine,
/// else a copy in `scratch`.
fn le_bytes<'a>(values: &'a [f32], scratch: &'a mut Vec<u8>) -> &'a [u8] {
    if cfg!(target_endian = "little") {
        // SAFETY: `f32` has no padding and every byte of it is initialized, `u8` has
        // alignment 1, and the length covers exactly the same `values.len() * 4` bytes of
        // the same borrow.
        return unsafe {
            std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
        };
    }
    scratch.clear();
    scratch.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    scratch
}

/// `mm dequant`.
pub fn dequant(path: &Path, name: &str, out: Option<&Path>, as_json: bool) -> Result<(), Fail> {
    // The time covers the whole command's work: map (and populate), dequantize, write.
    let (t0, cpu0) = (Instant::now(), cpu_seconds());
    let m = open_mapped(path)?;
    let g = m.gguf();
    let t = g.tensor(name).ok_or_else(|| {
        Fail::file(format!(
            "{}: no tensor named '{name}' (see `mm inspect`)",
            path.display()
        ))
    })?;
    let chunks = DequantChunks::new(t.ggml_type(), t.data)
        .map_err(|e| Fail::file(format!("tensor '{name}': {e}")))?;
    // An existing output file is overwritten in place and cut to length at the end, not
    // truncated first: rewriting pages the file already has skips freeing and allocating
    // them again (half the system time of a rerun into the same tmpfs file).
    let mut sink = match out {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(p)
                .map_err(|e| Fail::file(format!("{}: {e}", p.display())))?,
        ),
        None => None,
    };
    let mut stats = Stats::default();
    let mut head: Vec<f32> = Vec::new();
    let mut buf = Vec::new();
    let mut bytes_out: Vec<u8> = Vec::new();
    chunks.for_each(&mut buf, |c| {
        stats.add(c.values);
        if head.len() < 8 {
            head.extend(c.values.iter().take(8 - head.len()));
        }
        if let Some(w) = sink.as_mut() {
            // One write per chunk (about 64 KiB of input), not one per value, straight from
            // the values on a little-endian machine.
            w.write_all(le_bytes(c.values, &mut bytes_out))
                .map_err(|e| Fail::file(format!("writing output: {e}")))?;
        }
        Ok::<(), Fail>(())
    })?;
    // Written with `write(2)` straight from the values: nothing is left to flush, only a
    // longer old file's tail to cut.
    if let Some(w) = sink {
        w.set_len(stats.n * 4)
            .map_err(|e| Fail::file(format!("writing output: {e}")))?;
    }
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    let Stats {
        n,
        sum,
        min,
        max,
        non_finite,
    } = stats;
    let mean = if n > non_finite {
        sum / (n - non_finite) as f64
    } else {
        0.0
    };
    if as_json {
        print_json(&json!({
            "tensor": name, "type": t.ggml_type().name(), "shape": t.shape(), "values": n,
            "min": min, "max": max, "mean": mean, "non_finite": non_finite, "head": head,
            "out": out.map(|p| p.display().to_string()), "seconds": secs, "cpu_seconds": cpu,
            "input_bytes_per_second": t.n_bytes() as f64 / secs.max(1e-9),
            "output_bytes_per_second": (n * 4) as f64 / secs.max(1e-9),
        }));
    } else {
        println!(
            "{name}: {} {:?}, {n} values",
            t.ggml_type().name(),
            t.shape()
        );
        println!("  min {min}  max {max}  mean {mean:.6}  non-finite {non_finite}");
        println!("  first {head:?}");
        println!(
            "  took          {:.3} s ({:.3} s of CPU): {}/s of input, {}/s of f32{}",
            secs,
            cpu,
            show::bytes((t.n_bytes() as f64 / secs.max(1e-9)) as u64),
            show::bytes(((n * 4) as f64 / secs.max(1e-9)) as u64),
            if out.is_some() { " written" } else { "" }
        );
        if let Some(p) = out {
            println!(
                "  wrote {} of f32 little-endian to {}",
                show::bytes(n * 4),
                p.display()
            );
        }
    }
    Ok(())
}

/// The `memory-manager` facade configured from its `MM_*` settings
/// (`memory_manager::SETTINGS`; other `MM_*` variables, such as the test suite's
/// `MM_GGUF_TEST_MODEL`, are not the facade's and are left out).
pub(crate) fn manager_from_env() -> Result<memory_manager::MemoryManager, Fail> {
    let settings = std::env::vars().filter(|(k, _)| {
        memory_manager::SETTINGS
            .iter()
            .any(|(name, _, _)| name == k)
    });
    let config = memory_manager::MemoryConfig::from_vars(settings)
        .map_err(|e| Fail::file(format!("MM_* configuration: {e}")))?;
    memory_manager::MemoryManager::new(config)
        .map_err(|e| Fail::file(format!("MM_* configuration: {e}")))
}

/// The report as a JSON value (`MemoryReport::to_json`, the documented schema).
pub(crate) fn report_json(report: &memory_manager::MemoryReport) -> Json {
    serde_json::from_str(&report.to_json()).unwrap_or(Json::Null)
}

/// `mm report`: the `memory-manager` facade's report, configured from the facade's `MM_*`
/// settings ([`manager_from_env`]); with a FILE, the model is mapped through the facade's
/// cache and its cost shown too.
pub fn report(file: Option<&Path>, as_json: bool, prometheus: bool) -> Result<(), Fail> {
    let mm = manager_from_env()?;
    // The model is loaded the way a service loads it: by a registry that is a component of
    // the manager (its cache, its budget, its report's `models` section).
    let registry = mm_gguf::ModelRegistry::from_manager(&mm, mm_gguf::RegistryConfig::new());
    let model = match file {
        Some(p) => {
            let before = live_heap();
            let t0 = Instant::now();
            crate::sigbus::watch(p);
            let name = p
                .file_stem()
                .map_or_else(|| "model".to_owned(), |s| s.to_string_lossy().into_owned());
            // SAFETY: as in `map`: the documented contract of `mm`, with the SIGBUS handler.
            unsafe { registry.register(name.as_str(), p) };
            let m = registry.get(&name).map_err(at(p))?;
            let took = t0.elapsed().as_secs_f64();
            let heap = live_heap().saturating_sub(before);
            Some((p, m, heap, took))
        }
        None => None,
    };
    let report = mm.report_with(memory_manager::Residency::Measure);
    if prometheus {
        print!("{}", report.to_prometheus());
        return Ok(());
    }
    let model_json = model.as_ref().map(|(p, m, heap, took)| {
        json!({
            "file": p.display().to_string(), "mapped_bytes": m.mapped_bytes(),
            "tensor_bytes": m.gguf().tensor_bytes(), "tensors": m.gguf().n_tensors(),
            "index_heap_bytes": heap, "open_seconds": took,
        })
    });
    if as_json {
        print_json(&json!({ "report": report_json(&report), "model": model_json }));
        return Ok(());
    }
    println!("{report}");
    if let Some((p, m, heap, took)) = &model {
        println!("model {}", p.display());
        println!(
            "  mapped        {} (file-backed; counted in rss file once touched)",
            show::bytes(m.mapped_bytes())
        );
        println!(
            "  tensors       {} in {} tensors",
            show::bytes(m.gguf().tensor_bytes()),
            m.gguf().n_tensors()
        );
        println!(
            "  index heap    {} (opened in {:.2} ms)",
            show::bytes(*heap),
            took * 1e3
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_counts_nan_and_infinities_only() {
        let v = [
            1.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            1e-45,
            -0.0,
        ];
        assert_eq!(non_finite(&v), 3);
        assert_eq!(non_finite(&v[4..]), 0);
        assert_eq!(non_finite(&[]), 0);
    }

    #[test]
    fn stats_match_a_plain_pass_with_and_without_non_finite_values() {
        let values: Vec<f32> = (0..5000)
            .map(|i| ((i * 37) % 1001) as f32 / 7.0 - 60.0)
            .collect();
        let mut s = Stats::default();
        for piece in values.chunks(1500) {
            s.add(piece);
        }
        let sum: f64 = values.iter().map(|&v| f64::from(v)).sum();
        assert_eq!(s.n, 5000);
        assert!(
            (s.sum - sum).abs() < 1e-6 * sum.abs().max(1.0),
            "{} vs {sum}",
            s.sum
        );
        assert_eq!(s.min, values.iter().copied().fold(f32::INFINITY, f32::min));
        assert_eq!(
            s.max,
            values.iter().copied().fold(f32::NEG_INFINITY, f32::max)
        );
        let mut t = Stats::default();
        t.add(&[2.0, f32::NAN, -3.0, f32::INFINITY]);
        assert_eq!(
            (t.n, t.non_finite, t.sum, t.min, t.max),
            (4, 2, -1.0, -3.0, 2.0)
        );
    }

    #[test]
    fn le_bytes_are_the_values_little_endian() {
        let v = [1.5f32, -2.0, f32::MIN_POSITIVE];
        let mut scratch = Vec::new();
        let expected: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(le_bytes(&v, &mut scratch), &expected[..]);
    }

    #[test]
    fn stream_sum_does_not_depend_on_chunking() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let mut whole = StreamSum::default();
        whole.update(&data);
        for cut in [1usize, 3, 7, 31, 32, 33, 100, 999] {
            let mut parts = StreamSum::default();
            for piece in data.chunks(cut) {
                parts.update(piece);
            }
            assert_eq!(parts.finish(), whole.finish(), "chunks of {cut}");
        }
        let mut other = StreamSum::default();
        other.update(&data[1..]);
        assert_ne!(other.finish(), whole.finish());
    }

    #[test]
    fn stats_agree_on_both_paths() {
        let clean: Vec<f32> = (0..100).map(|i| i as f32 - 50.0).collect();
        let mut fast = Stats::default();
        fast.add(&clean);
        assert_eq!(
            (fast.n, fast.min, fast.max, fast.non_finite),
            (100, -50.0, 49.0, 0)
        );
        assert_eq!(fast.sum, -50.0);
        let mut dirty = clean.clone();
        dirty.extend([f32::NAN, f32::INFINITY]);
        let mut slow = Stats::default();
        slow.add(&dirty);
        assert_eq!(
            (slow.n, slow.min, slow.max, slow.non_finite),
            (102, -50.0, 49.0, 2)
        );
        assert_eq!(slow.sum, -50.0);
    }
}
