//! `mm`: inspect, verify and dequantize GGUF model files, and report memory figures.
//!
//! Every command prints a table for people, or JSON with `--json`. A bad file or a bad
//! argument gives one line on stderr and a non-zero exit status (1 for a bad file or a
//! failed check, 2 for bad usage). Model files are mapped, not copied: they must not be
//! modified or truncated while `mm` reads them; if one is truncated anyway, `mm` says so in
//! one line (from its `SIGBUS` handler) and exits 1. `mm verify --stream` reads through
//! `read(2)` instead, which a changing file cannot crash.

mod commands;
mod mcp;
mod show;
mod sigbus;
mod tokenize;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mm_track::TrackedAlloc = mm_track::TrackedAlloc::new(std::alloc::System);

/// Inspect, verify and dequantize GGUF model files; report memory figures.
///
/// Files are mapped: they must not be modified or truncated while mm reads them.
#[derive(Debug, Parser)]
#[command(name = "mm", version, about)]
struct Cli {
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Header, metadata (long arrays elided), tensor table and memory plan. A damaged or
    /// truncated file shows what could be read, then says what is wrong.
    Inspect {
        /// The GGUF file.
        file: std::path::PathBuf,
        /// Array elements to show per key.
        #[arg(long, default_value_t = 4)]
        array_items: usize,
    },
    /// Full validation: parses strictly and reads every tensor's bytes (with `--dequant`,
    /// dequantizes every tensor too).
    Verify {
        /// The GGUF file.
        file: std::path::PathBuf,
        /// Also dequantize every tensor to f32 and count non-finite values.
        #[arg(long)]
        dequant: bool,
        /// Read through the streaming reader (64 KiB reads) instead of mapping the file.
        #[arg(long)]
        stream: bool,
    },
    /// Dequantize one tensor to f32: summary statistics, or raw little-endian f32 to `--out`.
    Dequant {
        /// The GGUF file.
        file: std::path::PathBuf,
        /// The tensor's name.
        tensor: String,
        /// Write the values (f32, little-endian) to this file.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Replay a captured server-sent-events stream (stdin by default) through the SSE
    /// parser in chunks of N bytes; print one JSON line per event.
    Sse {
        /// The captured stream; stdin when absent.
        file: Option<std::path::PathBuf>,
        /// Bytes fed to the parser at a time (1 to 64 MiB).
        #[arg(
            long,
            default_value_t = 4096,
            value_parser = clap::builder::RangedU64ValueParser::<usize>::new()
                .range(1..=mm_llm::sse::MAX_DUMP_CHUNK as u64)
        )]
        chunk_size: usize,
    },
    /// Tokenize TEXT (stdin when absent) with the model's own tokenizer, read from the
    /// file's `tokenizer.*` metadata: one `id<TAB>piece` line per token, then the count
    /// (`--json`: an object with `ids`, `pieces` and `count`). BOS/EOS are added only with
    /// `--add-special` (and only where the model's add_bos/add_eos flags say);
    /// `<start_of_turn>`-style control tokens in the text are matched only with
    /// `--parse-special`.
    Tokenize {
        /// The GGUF file (a model or a vocabulary-only file).
        file: std::path::PathBuf,
        /// The text; read from stdin when absent.
        text: Option<String>,
        /// Add BOS/EOS as the model's add_bos_token/add_eos_token flags say.
        #[arg(long)]
        add_special: bool,
        /// Match control tokens written in the text as those tokens.
        #[arg(long)]
        parse_special: bool,
    },
    /// The memory report (allocator, budget, process, components; configured from `MM_*`
    /// variables); with a FILE, what loading that model costs.
    Report {
        /// A GGUF file to load (mapped) and account for.
        file: Option<std::path::PathBuf>,
        /// Print the Prometheus text format instead.
        #[arg(long, conflicts_with = "json")]
        prometheus: bool,
    },
    /// Serve the Model Context Protocol on stdin/stdout (JSON-RPC, one message a line), for
    /// AI tools: `memory_report`, `inspect_model`, `trim`.
    ///
    /// Tools:
    ///   memory_report               the memory report as JSON (as `mm report --json`)
    ///   inspect_model {path, array_items?}
    ///                               header, metadata, tensor table and memory plan of a GGUF
    ///                               (as `mm inspect --json`); the file is mapped through
    ///                               the manager's mmap cache and stays listed in the report
    ///                               until trimmed
    ///   trim {fraction}             release idle pool buffers and arena chunks, and cut the
    ///                               mmap cache down to `fraction` (0 to 1) of its budget
    ///
    /// The manager is configured from the `MM_*` variables (see `mm report`); e.g.
    /// MM_MMAP_CACHE_MB=512 keeps a 250 MB model mapped between calls. A bad argument or a
    /// bad file is a tool error result (`isError`) with one line saying what is wrong; an
    /// unknown tool is a JSON-RPC error. Model files are mapped: do not rewrite them in
    /// place while the server runs (replace them by rename). Stdout carries only the
    /// protocol; the server ends when stdin closes.
    ///
    /// Client configuration (Claude Desktop, VS Code and most MCP clients take this shape):
    ///
    ///   { "mcpServers": { "memory": {
    ///       "command": "mm", "args": ["mcp"], "env": { "MM_MMAP_CACHE_MB": "512" } } } }
    #[command(verbatim_doc_comment)]
    Mcp,
}

/// A command's failure: the one line for stderr and the exit status.
#[derive(Debug)]
pub struct Fail {
    msg: String,
    code: u8,
}

impl Fail {
    /// A bad file or a failed check (exit status 1).
    pub fn file(msg: impl std::fmt::Display) -> Self {
        Fail {
            msg: msg.to_string(),
            code: 1,
        }
    }
}

impl From<mm_gguf::GgufError> for Fail {
    fn from(e: mm_gguf::GgufError) -> Self {
        Fail::file(e)
    }
}

/// `mm sse`: the logic is `mm_llm::sse::cli_dump`; a summary goes to stderr.
fn sse(file: Option<&std::path::Path>, chunk_size: usize) -> Result<(), Fail> {
    let out = std::io::stdout().lock();
    let summary = match file {
        Some(path) => {
            let f = std::fs::File::open(path)
                .map_err(|e| Fail::file(format!("{}: {e}", path.display())))?;
            mm_llm::sse::cli_dump(std::io::BufReader::new(f), out, chunk_size)
        }
        None => mm_llm::sse::cli_dump(std::io::stdin().lock(), out, chunk_size),
    }
    .map_err(Fail::file)?;
    eprintln!(
        "mm sse: {} bytes, {} events{}",
        summary.bytes,
        summary.events,
        if summary.discarded_tail {
            ", unterminated final event discarded"
        } else {
            ""
        }
    );
    Ok(())
}

fn main() -> ExitCode {
    sigbus::install();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            let text = e.to_string();
            let what: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .filter(|l| !l.is_empty())
                .collect();
            eprintln!(
                "mm: {} (see `mm --help`)",
                what.join(" ").trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
    let out = match cli.command {
        Command::Inspect { file, array_items } => commands::inspect(&file, array_items, cli.json),
        Command::Verify {
            file,
            dequant,
            stream,
        } => commands::verify(&file, dequant, stream, cli.json),
        Command::Dequant { file, tensor, out } => {
            commands::dequant(&file, &tensor, out.as_deref(), cli.json)
        }
        Command::Report { file, prometheus } => {
            commands::report(file.as_deref(), cli.json, prometheus)
        }
        Command::Sse { file, chunk_size } => sse(file.as_deref(), chunk_size),
        Command::Mcp => mcp::serve(),
        Command::Tokenize {
            file,
            text,
            add_special,
            parse_special,
        } => tokenize::run(&file, text, add_special, parse_special, cli.json),
    };
    match out {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("mm: {}", f.msg.replace('\n', " "));
            ExitCode::from(f.code)
        }
    }
}
