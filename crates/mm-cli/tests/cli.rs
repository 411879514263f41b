//! The `mm` binary end to end on small files made by the writer.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mm_gguf::{GgufWriter, MetaValue};

fn mm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mm"))
        .args(args)
        .output()
        .expect("run mm")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One clear line on stderr, and the given exit status.
fn assert_fails(o: &Output, code: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("mm: ") && err.contains(needle), "{err:?}");
}

#[path = "common/tiny_model.rs"]
mod tiny_model;
use tiny_model::model;

#[test]
fn inspect_shows_header_metadata_tensors_and_plan() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = model(dir.path());
    let o = mm(&["inspect", p.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for needle in [
        "GGUF v3",
        "general.architecture",
        "[string; 1000]",
        "... 996 more",
        "F32",
        "[64, 4]",
        "memory plan",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    let o = mm(&["inspect", "--json", p.to_str().unwrap()]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["version"], 3);
    assert_eq!(j["tensors"][0]["shape"], serde_json::json!([64, 4]));
    assert_eq!(j["metadata"][1]["value"]["len"], 1000);
    assert_eq!(j["truncated"], false);
}

#[test]
fn truncated_files_show_what_was_read_and_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = model(dir.path());
    let bytes = std::fs::read(&p).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() - 600]).unwrap();
    let o = mm(&["inspect", cut.to_str().unwrap()]);
    assert_fails(&o, 1, "truncated");
    let text = stdout(&o);
    assert!(
        text.contains("general.architecture") && text.contains("TRUNCATED"),
        "{text}"
    );
    let o = mm(&["inspect", "--json", cut.to_str().unwrap()]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["truncated"], true);
    assert!(j["missing_bytes"].as_u64().unwrap() > 0);
    assert_fails(&mm(&["verify", cut.to_str().unwrap()]), 1, "truncated");
}

#[test]
fn bad_files_and_arguments_give_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"\x7fELF not a model").unwrap();
    assert_fails(
        &mm(&["verify", junk.to_str().unwrap()]),
        1,
        "not a GGUF file",
    );
    assert_fails(
        &mm(&["inspect", "/nonexistent/model.gguf"]),
        1,
        "model.gguf",
    );
    assert_fails(&mm(&["frobnicate"]), 2, "frobnicate");
    assert_fails(&mm(&["inspect"]), 2, "FILE");
    // A chunk size outside 1..=64 MiB is bad usage, refused before any input is read.
    assert_fails(&mm(&["sse", "--chunk-size", "0"]), 2, "--chunk-size");
    assert_fails(&mm(&["sse", "--chunk-size", "67108865"]), 2, "--chunk-size");
    let (p, _) = model(dir.path());
    assert_fails(
        &mm(&["dequant", p.to_str().unwrap(), "nope"]),
        1,
        "no tensor named 'nope'",
    );
}

#[test]
fn verify_reads_everything_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = model(dir.path());
    let mapped: serde_json::Value =
        serde_json::from_slice(&mm(&["verify", "--dequant", "--json", p.to_str().unwrap()]).stdout)
            .unwrap();
    let streamed: serde_json::Value = serde_json::from_slice(
        &mm(&[
            "verify",
            "--dequant",
            "--stream",
            "--json",
            p.to_str().unwrap(),
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(mapped["ok"], true);
    assert_eq!(mapped["dequantized_values"], 256);
    assert_eq!(mapped["checksum"], streamed["checksum"]);
    assert_eq!(mapped["bytes"], streamed["bytes"]);
}

#[test]
fn dequant_writes_exact_f32_values() {
    let dir = tempfile::tempdir().unwrap();
    let (p, values) = model(dir.path());
    let out = dir.path().join("w.f32");
    // An older, longer output is overwritten in place and cut to the new length.
    std::fs::write(&out, vec![0xAAu8; 4096]).unwrap();
    let o = mm(&[
        "dequant",
        "--json",
        p.to_str().unwrap(),
        "w",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["values"], 256);
    assert_eq!(j["min"], -3.0);
    let got: Vec<f32> = std::fs::read(&out)
        .unwrap()
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(got, values);
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 256 * 4);
}

#[test]
fn report_gives_process_and_model_figures() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = model(dir.path());
    // The facade's settings apply; the test suite's own MM_* variables do not confuse it.
    let o = Command::new(env!("CARGO_BIN_EXE_mm"))
        .args(["report", "--json", p.to_str().unwrap()])
        .env("MM_GGUF_TEST_MODEL", "/nonexistent")
        .env("MM_MMAP_CACHE_MB", "7")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        j["report"]["allocator"]["tracked"], true,
        "mm-track is the allocator: {j}"
    );
    assert!(j["report"]["process"].is_object(), "{j}");
    assert_eq!(
        j["report"]["mmap"]["budget_bytes"],
        7 << 20,
        "MM_MMAP_CACHE_MB applied"
    );
    assert_eq!(j["model"]["tensors"], 1);
    assert!(j["model"]["mapped_bytes"].as_u64().unwrap() > 0);
    // Loaded through the manager: listed in its `models` section, the index heap charged.
    let file_len = std::fs::metadata(&p).unwrap().len();
    let row = &j["report"]["models"][0];
    assert_eq!(row["state"], "loaded", "{j}");
    assert_eq!(row["mapped_bytes"], file_len, "{j}");
    assert_eq!(row["file_bytes"], file_len, "{j}");
    let heap = row["index_heap_bytes"].as_u64().unwrap();
    assert!(heap > 0, "{j}");
    let models = j["report"]["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "models")
        .expect("models component");
    assert_eq!(models["held_bytes"], heap);
    assert!(j["report"]["budget"]["used_bytes"].as_u64().unwrap() >= heap);
    let o = mm(&["report", "--prometheus"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("mm_"), "{}", stdout(&o));
    let o = mm(&["report", p.to_str().unwrap()]);
    assert!(
        o.status.success() && stdout(&o).contains("index heap"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn report_with_only_a_limit_is_valid() {
    let o = Command::new(env!("CARGO_BIN_EXE_mm"))
        .arg("report")
        .env("MM_MAX_MEMORY_MB", "64")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("of 64.0 MiB"), "{}", stdout(&o));
}

/// A header with the key `general.name` twice (what `GgufWriter` refuses to write).
fn duplicate_key_file(dir: &Path) -> (PathBuf, u64) {
    let mut v = b"GGUF".to_vec();
    v.extend_from_slice(&3u32.to_le_bytes());
    v.extend_from_slice(&0u64.to_le_bytes());
    v.extend_from_slice(&2u64.to_le_bytes());
    let mut second = 0;
    for (i, value) in [b"first", b"other"].iter().enumerate() {
        if i == 1 {
            second = v.len() as u64;
        }
        v.extend_from_slice(&12u64.to_le_bytes());
        v.extend_from_slice(b"general.name");
        v.extend_from_slice(&8u32.to_le_bytes()); // string
        v.extend_from_slice(&(value.len() as u64).to_le_bytes());
        v.extend_from_slice(*value);
    }
    let p = dir.join("dup.gguf");
    std::fs::write(&p, v).unwrap();
    (p, second)
}

#[test]
fn duplicate_keys_are_shown_then_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (p, at) = duplicate_key_file(dir.path());
    let o = mm(&["inspect", p.to_str().unwrap()]);
    let needle = format!("duplicate metadata key 'general.name' at offset {at}");
    assert_fails(&o, 1, &needle);
    let text = stdout(&o);
    let shown = text
        .lines()
        .filter(|l| l.trim_start().starts_with("general.name"))
        .count();
    assert_eq!(shown, 2, "both shown: {text}");
    assert!(text.contains("INVALID"), "{text}");
    let o = mm(&["--json", "inspect", p.to_str().unwrap()]);
    assert_fails(&o, 1, &needle);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["metadata"].as_array().unwrap().len(), 2);
    assert!(j["error"].as_str().unwrap().contains("duplicate"));
    assert_fails(&mm(&["verify", p.to_str().unwrap()]), 1, &needle);
    assert_fails(
        &mm(&["verify", "--stream", p.to_str().unwrap()]),
        1,
        &needle,
    );
}

/// A tiny SentencePiece-style vocabulary file.
fn vocab_file(dir: &Path) -> PathBuf {
    let pieces = [
        "<unk>",
        "<s>",
        "</s>",
        "<start_of_turn>",
        "▁",
        "h",
        "i",
        "▁h",
        "▁hi",
    ];
    let mut w = GgufWriter::new();
    w.add_metadata("tokenizer.ggml.model", MetaValue::String("llama".into()))
        .unwrap();
    w.add_metadata("tokenizer.ggml.tokens", MetaValue::strings(pieces))
        .unwrap();
    let scores = [0.0f32, 0.0, 0.0, 0.0, -1.0, -2.0, -2.0, -1.5, -1.0];
    w.add_metadata(
        "tokenizer.ggml.scores",
        MetaValue::Array(mm_gguf::ValueType::F32, scores.map(MetaValue::F32).to_vec()),
    )
    .unwrap();
    let types = [2, 3, 3, 3, 1, 1, 1, 1, 1];
    w.add_metadata(
        "tokenizer.ggml.token_type",
        MetaValue::Array(mm_gguf::ValueType::I32, types.map(MetaValue::I32).to_vec()),
    )
    .unwrap();
    let path = dir.join("vocab.gguf");
    w.write_file(&path).unwrap();
    path
}

#[test]
fn tokenize_prints_ids_pieces_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = vocab_file(dir.path());
    let p = path.to_str().unwrap();
    let o = mm(&["tokenize", p, "hi hi"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "8\t▁hi\n8\t▁hi\n2 tokens (5 bytes of text)\n");
    // BOS only with --add-special; control tokens in the text only with --parse-special.
    let o = mm(&[
        "--json",
        "tokenize",
        p,
        "<start_of_turn>hi",
        "--add-special",
        "--parse-special",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ids"], serde_json::json!([1, 3, 8]));
    assert_eq!(v["count"], 3);
    let o = mm(&["--json", "tokenize", p, "hi"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ids"], serde_json::json!([8]));
    // stdin when no text is given.
    let mut child = Command::new(env!("CARGO_BIN_EXE_mm"))
        .args(["--json", "tokenize", p])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"hi").unwrap();
    let o = child.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ids"], serde_json::json!([8]));
    // A file without a tokenizer is one clear line.
    let (model, _) = model(dir.path());
    let o = mm(&["tokenize", model.to_str().unwrap(), "hi"]);
    assert_fails(&o, 1, "tokenizer");
    let help = stdout(&mm(&["tokenize", "--help"]));
    assert!(
        help.contains("--add-special") && help.contains("stdin"),
        "{help}"
    );
}

/// `mm mcp` over real pipes, without a client library: the handshake, the tool list, a
/// call, and the end of the session when stdin closes.
#[test]
fn mcp_answers_json_rpc_on_stdio_and_ends_with_stdin() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = model(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_mm"))
        .arg("mcp")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run mm mcp");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ask = |msg: serde_json::Value| {
        writeln!(stdin, "{msg}").unwrap();
        if msg.get("id").is_none() {
            return serde_json::Value::Null;
        }
        let line = lines.next().expect("a reply").unwrap();
        serde_json::from_str::<serde_json::Value>(&line).unwrap()
    };
    let init = ask(
        serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "cli-test", "version": "0"}}}),
    );
    assert_eq!(init["result"]["serverInfo"]["name"], "mm", "{init}");
    ask(serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    let list = ask(serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
    let mut names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["inspect_model", "memory_report", "trim"], "{list}");
    let call = ask(
        serde_json::json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "inspect_model", "arguments": {"path": p}}}),
    );
    assert_eq!(call["result"]["isError"], false, "{call}");
    assert_eq!(
        call["result"]["structuredContent"]["tensors"][0]["name"],
        "w"
    );
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn mcp_help_lists_the_tools_and_a_client_config() {
    let o = mm(&["mcp", "--help"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for needle in [
        "memory_report",
        "inspect_model",
        "trim",
        "\"mcpServers\"",
        "MM_MMAP_CACHE_MB",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}
