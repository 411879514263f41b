//! `mm mcp`: the memory manager as a Model Context Protocol tool server over stdio, on the
//! official Rust SDK (`rmcp`).
//!
//! One [`MemoryManager`], configured from the `MM_*` variables as for `mm report`, lives as
//! long as the session. Its tools:
//! - `memory_report`: the manager's report, the JSON of `docs/report-schema.md`;
//! - `inspect_model {path, array_items?}`: the document `mm inspect --json` prints (header,
//!   metadata with long arrays elided, tensor table, per-type totals, memory plan). The file
//!   is mapped through the manager's mmap cache, so it then shows in the report (within the
//!   cache's budget) until `trim` or memory pressure evicts it;
//! - `trim {fraction}`: [`MemoryManager::trim`]: idle pool buffers and arena chunks are
//!   released, and the mmap cache is cut down to `fraction` of its budget.
//!
//! Errors follow the protocol's split. A call of an unknown tool is a JSON-RPC error
//! (`-32602`, from the SDK's router). A call that reaches a tool and fails is a tool result
//! with `isError: true` and a one-line message a person or a model can act on, so it can
//! correct itself: arguments that do not decode (missing, of the wrong JSON type, unknown:
//! the input schemas say `additionalProperties: false`; the SDK's message), and ours: no such
//! file, not a GGUF, a damaged or hostile GGUF, a fraction or `array_items` out of range.
//! `inspect_model` adds what it could read as structured content.
//!
//! Files given to `inspect_model` are mapped: the contract of every `mm` command (the file is
//! not modified in place or truncated while mapped; replace it by rename) holds for as long
//! as the cache keeps the map. A truncation anyway raises `SIGBUS`, which `mm` turns into one
//! line on stderr and exit status 1.

use std::path::Path;

use memory_manager::{MemoryManager, Residency};
use rmcp::Json;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::{ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Fail;
use crate::commands;

/// Array elements shown per metadata key when `array_items` is not given.
pub const DEFAULT_ARRAY_ITEMS: u32 = 4;
/// The most array elements `inspect_model` shows per metadata key.
pub const MAX_ARRAY_ITEMS: u32 = 256;

/// `inspect_model`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InspectModelArgs {
    /// Path of the GGUF file as the server sees it (absolute, or relative to the server's
    /// working directory).
    pub path: String,
    /// Array elements shown per metadata key, 0 to 256 (default 4); longer arrays are
    /// elided with a count.
    #[serde(default)]
    #[schemars(range(max = 256))]
    pub array_items: Option<u32>,
}

/// `trim`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrimArgs {
    /// The share of the mmap cache's budget to keep, 0 to 1: 0 evicts every map not in use,
    /// 1 evicts nothing from the cache. Idle pool buffers and arena chunks are released
    /// whatever the value.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub fraction: f64,
}

/// The MCP server: the tools over one manager.
#[derive(Debug, Clone)]
pub struct MemoryTools {
    manager: MemoryManager,
}

/// A tool-level failure: `isError: true` and the message as text.
fn tool_error(msg: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(msg)])
}

/// A tool's answer: the JSON as structured content (and as text), or the failure.
fn answer(result: Result<Value, CallToolResult>) -> CallToolResult {
    result.map_or_else(|failure| failure, CallToolResult::structured)
}

#[tool_router]
impl MemoryTools {
    /// Serves `manager`.
    pub fn new(manager: MemoryManager) -> Self {
        MemoryTools { manager }
    }

    /// `memory_report`.
    #[tool(
        description = "The memory manager's report as JSON: allocator (live, peak, counts), \
                       budget (limit, used, pressure level), process and cgroup memory, each \
                       component (held and bound bytes, hits, misses, evictions), the mmap \
                       cache, models, arenas and pressure handling. Byte figures are bytes.",
        annotations(read_only_hint = true)
    )]
    pub async fn memory_report(&self) -> CallToolResult {
        answer(Ok(commands::report_json(
            &self.manager.report_with(Residency::Measure),
        )))
    }

    /// `inspect_model`.
    #[tool(
        description = "Inspect a GGUF model file: header (version, alignment, counts), \
                       metadata (long arrays elided), tensor table (name, type, shape, bytes, \
                       offset), per-type totals and the memory plan (file-backed bytes vs the \
                       index's heap). The file is mapped through the manager's mmap cache and \
                       listed in memory_report until trimmed. A damaged or truncated file is an \
                       error result carrying what could be read.",
        annotations(read_only_hint = true)
    )]
    pub async fn inspect_model(
        &self,
        Parameters(args): Parameters<InspectModelArgs>,
    ) -> CallToolResult {
        answer(self.inspect(&args))
    }

    /// `trim`.
    #[tool(
        description = "Release idle memory under the manager's rules: idle pool buffers and \
                       arena chunks, and the mmap cache cut down to `fraction` (0 to 1) of its \
                       budget, least recently used first; maps still in use are not counted as \
                       freed. Returns the bytes freed and the cache before and after."
    )]
    pub async fn trim(
        &self,
        Parameters(args): Parameters<TrimArgs>,
    ) -> Result<Json<Trimmed>, CallToolResult> {
        self.trim_now(&args)
    }

    fn inspect(&self, args: &InspectModelArgs) -> Result<Value, CallToolResult> {
        let items = args.array_items.unwrap_or(DEFAULT_ARRAY_ITEMS);
        if items > MAX_ARRAY_ITEMS {
            return Err(tool_error(format!(
                "array_items must be at most {MAX_ARRAY_ITEMS}, got {items}"
            )));
        }
        if args.path.is_empty() {
            return Err(tool_error("path is empty: give the GGUF file's path"));
        }
        let path = Path::new(&args.path);
        let at = |e: &dyn std::fmt::Display| tool_error(format!("{}: {e}", path.display()));
        let meta = std::fs::metadata(path).map_err(|e| at(&e))?;
        if !meta.is_file() {
            return Err(at(&"not a regular file"));
        }
        let (doc, outcome) = if meta.len() == 0 {
            // An empty file cannot be mapped; it inspects as truncated, as in `mm inspect`.
            commands::inspect_document(path, &[], items as usize)
        } else {
            // SAFETY: the contract of `mm`, stated in `mm mcp --help` and this module's docs:
            // files given to `inspect_model` are not modified in place or truncated while
            // mapped (here: while the manager's cache keeps the map); files are replaced by
            // rename, which the cache's identity check notices on the next `get`. A
            // truncation anyway is caught by `mm`'s SIGBUS handler (one line, exit 1).
            let file = unsafe { self.manager.map(path) }.map_err(|e| at(&e))?;
            commands::inspect_document(path, &file, items as usize)
        };
        match outcome {
            Ok(()) => Ok(doc),
            Err(Fail { msg, .. }) => {
                let mut failure =
                    CallToolResult::structured_error(json!({ "error": msg, "inspection": doc }));
                failure.content = vec![ContentBlock::text(msg)];
                Err(failure)
            }
        }
    }

    fn trim_now(&self, args: &TrimArgs) -> Result<Json<Trimmed>, CallToolResult> {
        let fraction = args.fraction;
        if !(0.0..=1.0).contains(&fraction) {
            return Err(tool_error(format!(
                "fraction must be between 0 and 1 (the share of the mmap cache's budget to \
                 keep), got {fraction}"
            )));
        }
        let mmap_before = CacheFigures::of(&self.manager);
        let freed_bytes = self.manager.trim(fraction);
        Ok(Json(Trimmed {
            fraction,
            freed_bytes,
            mmap_before,
            mmap_after: CacheFigures::of(&self.manager),
        }))
    }
}

/// `trim`'s result (its output schema).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Trimmed {
    /// The fraction asked for.
    pub fraction: f64,
    /// Bytes released now: idle pool buffers and the maps the cache dropped (arena chunks
    /// are released at their thread's next request end and not counted).
    pub freed_bytes: u64,
    /// The mmap cache before the trim.
    pub mmap_before: CacheFigures,
    /// The mmap cache after the trim.
    pub mmap_after: CacheFigures,
}

/// The mmap cache's figures around a trim.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CacheFigures {
    /// Bytes of the maps the cache holds.
    pub held_bytes: u64,
    /// Maps the cache holds.
    pub entries: u64,
    /// The cache's byte budget (null before the cache is first used).
    pub budget_bytes: Option<u64>,
}

impl CacheFigures {
    fn of(manager: &MemoryManager) -> Self {
        let cache = manager.report().mmap;
        CacheFigures {
            held_bytes: cache.as_ref().map_or(0, |c| c.held_bytes),
            entries: cache.as_ref().map_or(0, |c| c.entries),
            budget_bytes: cache.map(|c| c.budget_bytes),
        }
    }
}

#[tool_handler(
    name = "mm",
    instructions = "Memory figures of this process's memory manager (memory_report), GGUF \
                    model inspection (inspect_model) and trimming idle memory (trim)."
)]
impl ServerHandler for MemoryTools {}

/// `mm mcp`: serves the tools on stdin/stdout until the client closes stdin.
pub fn serve() -> Result<(), Fail> {
    let manager = commands::manager_from_env()?;
    crate::sigbus::watch_many("mm mcp");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Fail::file(format!("mcp: cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let running = MemoryTools::new(manager)
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| Fail::file(format!("mcp: the session did not start: {e}")))?;
        running
            .waiting()
            .await
            .map_err(|e| Fail::file(format!("mcp: the session failed: {e}")))?;
        Ok(())
    })
}

#[cfg(test)]
#[path = "../tests/common/tiny_model.rs"]
mod tiny_model;

#[cfg(test)]
mod tests {
    use super::*;
    use memory_manager::MemoryConfig;
    use rmcp::model::CallToolRequestParams;
    use rmcp::service::ServiceError;

    fn tools() -> MemoryTools {
        let config = MemoryConfig::new().with_mmap_cache(64 << 20);
        MemoryTools::new(MemoryManager::new(config).unwrap())
    }

    /// The shared tiny model's path.
    fn model(dir: &Path) -> std::path::PathBuf {
        super::tiny_model::model(dir).0
    }

    fn text(r: &CallToolResult) -> String {
        r.content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn ok(r: CallToolResult) -> Value {
        assert_eq!(r.is_error, Some(false), "{}", text(&r));
        r.structured_content.expect("structured content")
    }

    /// `trim`'s typed answer as the result the SDK sends.
    fn trimmed(r: Result<Json<Trimmed>, CallToolResult>) -> CallToolResult {
        r.map_or_else(
            |failure| failure,
            |Json(t)| CallToolResult::structured(serde_json::to_value(t).unwrap()),
        )
    }

    fn failed(r: &CallToolResult, needle: &str) {
        assert_eq!(r.is_error, Some(true), "{}", text(r));
        assert!(text(r).contains(needle), "{:?} lacks {needle:?}", text(r));
    }

    fn inspect_args(path: &Path) -> Parameters<InspectModelArgs> {
        Parameters(InspectModelArgs {
            path: path.display().to_string(),
            array_items: Some(2),
        })
    }

    #[tokio::test]
    async fn inspect_model_gives_the_inspect_document_and_maps_through_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let p = model(dir.path());
        let t = tools();
        let doc = ok(t.inspect_model(inspect_args(&p)).await);
        assert_eq!(doc["version"], 3);
        assert_eq!(doc["declared_tensors"], 1);
        assert_eq!(doc["tensors"][0]["name"], "w");
        assert_eq!(doc["tensors"][0]["bytes"], 1024);
        assert_eq!(doc["tensor_types"]["F32"]["count"], 1);
        let tokens = &doc["metadata"][1]["value"];
        assert_eq!(
            (
                tokens["len"].as_u64(),
                tokens["head"].as_array().map(Vec::len)
            ),
            (Some(1000), Some(2))
        );
        let file_bytes = std::fs::metadata(&p).unwrap().len();
        assert_eq!(doc["memory_plan"]["file_backed_bytes"], file_bytes);
        assert_eq!(doc["memory_plan"]["tensor_bytes"], 1024);

        // The map stays in the manager's cache: the report lists it, trim(0) evicts it.
        let report = ok(t.memory_report().await);
        assert_eq!(report["mmap"]["held_bytes"], file_bytes);
        assert_eq!(report["mmap"]["entries"], 1);
        let half = ok(trimmed(
            t.trim(Parameters(TrimArgs { fraction: 1.0 })).await,
        ));
        assert_eq!(half["mmap_after"]["held_bytes"], file_bytes);
        let trimmed = ok(trimmed(
            t.trim(Parameters(TrimArgs { fraction: 0.0 })).await,
        ));
        assert_eq!(trimmed["mmap_before"]["held_bytes"], file_bytes);
        assert_eq!(trimmed["mmap_after"]["held_bytes"], 0);
        assert!(trimmed["freed_bytes"].as_u64().unwrap() >= file_bytes);
        let report = ok(t.memory_report().await);
        assert_eq!(report["mmap"]["held_bytes"], 0);
        assert_eq!(report["mmap"]["evictions"], 1);
    }

    #[tokio::test]
    async fn bad_files_are_tool_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let t = tools();
        let missing = dir.path().join("missing.gguf");
        failed(
            &t.inspect_model(inspect_args(&missing)).await,
            "missing.gguf",
        );
        failed(
            &t.inspect_model(inspect_args(dir.path())).await,
            "not a regular file",
        );
        let empty = Parameters(InspectModelArgs {
            path: String::new(),
            array_items: None,
        });
        failed(&t.inspect_model(empty).await, "path is empty");

        let text_file = dir.path().join("notes.txt");
        std::fs::write(&text_file, "not a model at all, just some words").unwrap();
        let r = t.inspect_model(inspect_args(&text_file)).await;
        failed(&r, "notes.txt");
        let partial = r.structured_content.as_ref().unwrap();
        assert!(partial["error"].as_str().unwrap().contains("notes.txt"));
        assert_eq!(partial["inspection"]["version"], Value::Null);

        let zero = dir.path().join("zero.gguf");
        std::fs::write(&zero, b"").unwrap();
        failed(&t.inspect_model(inspect_args(&zero)).await, "truncated");

        // A cut file shows what could be read.
        let whole = std::fs::read(model(dir.path())).unwrap();
        let cut = dir.path().join("cut.gguf");
        std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
        let r = t.inspect_model(inspect_args(&cut)).await;
        failed(&r, "truncated");
        assert_eq!(r.structured_content.unwrap()["inspection"]["version"], 3);
    }

    /// Headers that claim absurd counts and lengths are refused before anything is
    /// allocated for them: an error result, not a panic or an abort.
    #[tokio::test]
    async fn hostile_headers_are_tool_errors() {
        let dir = tempfile::tempdir().unwrap();
        let t = tools();
        let header = |kv: u64, tensors: u64, tail: &[u8]| {
            let mut b = b"GGUF".to_vec();
            b.extend(3u32.to_le_bytes());
            b.extend(tensors.to_le_bytes());
            b.extend(kv.to_le_bytes());
            b.extend(tail);
            b
        };
        let huge_key = {
            let mut tail = u64::MAX.to_le_bytes().to_vec();
            tail.extend(b"k");
            tail
        };
        for (name, bytes) in [
            ("counts", header(u64::MAX, u64::MAX, &[])),
            ("key_len", header(1, 0, &huge_key)),
            ("version", {
                let mut b = header(0, 0, &[]);
                b[4..8].copy_from_slice(&99u32.to_le_bytes());
                b
            }),
        ] {
            let p = dir.path().join(format!("{name}.gguf"));
            std::fs::write(&p, bytes).unwrap();
            let r = t.inspect_model(inspect_args(&p)).await;
            failed(&r, &format!("{name}.gguf"));
        }
    }

    #[tokio::test]
    async fn out_of_range_arguments_are_tool_errors() {
        let t = tools();
        for fraction in [-0.1, 1.5, f64::INFINITY, f64::NAN] {
            failed(
                &trimmed(t.trim(Parameters(TrimArgs { fraction })).await),
                "fraction must be between 0 and 1",
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let p = model(dir.path());
        let args = InspectModelArgs {
            path: p.display().to_string(),
            array_items: Some(MAX_ARRAY_ITEMS + 1),
        };
        failed(
            &t.inspect_model(Parameters(args)).await,
            "array_items must be at most 256",
        );
    }

    /// The tools through the SDK's own client over an in-process pipe: the handshake, the
    /// tool list with its schemas, a call of each, and the protocol's errors.
    #[tokio::test]
    async fn an_rmcp_client_lists_and_calls_the_tools() {
        let (server_io, client_io) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move {
            tools()
                .serve(server_io)
                .await
                .unwrap()
                .waiting()
                .await
                .unwrap();
        });
        let client = ().serve(client_io).await.unwrap();
        let info = client.peer_info().unwrap();
        assert_eq!(
            info.server_info.as_ref().map(|s| s.name.as_str()),
            Some("mm")
        );
        assert!(info.capabilities.tools.is_some());

        let listed = client.list_all_tools().await.unwrap();
        let mut names: Vec<&str> = listed.iter().map(|t| t.name.as_ref()).collect();
        names.sort_unstable();
        assert_eq!(names, ["inspect_model", "memory_report", "trim"]);
        let trim = listed.iter().find(|t| t.name == "trim").unwrap();
        let schema = Value::Object((*trim.input_schema).clone());
        assert_eq!(schema["required"], json!(["fraction"]));
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["properties"]["fraction"]["minimum"], 0.0);
        assert_eq!(schema["properties"]["fraction"]["maximum"], 1.0);
        let output =
            Value::Object((*trim.output_schema.clone().expect("trim's output schema")).clone());
        assert_eq!(
            output["properties"]["freed_bytes"]["type"], "integer",
            "{output}"
        );
        let inspect = listed.iter().find(|t| t.name == "inspect_model").unwrap();
        assert_eq!(
            Value::Object((*inspect.input_schema).clone())["required"],
            json!(["path"])
        );

        let call = |name: &'static str, args: Value| {
            let mut params = CallToolRequestParams::new(name);
            if let Value::Object(map) = args {
                params = params.with_arguments(map);
            }
            client.call_tool(params)
        };
        let report = ok(call("memory_report", json!({})).await.unwrap());
        assert!(report["budget"]["limit_bytes"].as_u64().unwrap() > 0);

        let dir = tempfile::tempdir().unwrap();
        let p = model(dir.path());
        let doc = ok(call("inspect_model", json!({ "path": p })).await.unwrap());
        assert_eq!(doc["tensors"][0]["name"], "w");
        let trimmed = ok(call("trim", json!({ "fraction": 0.0 })).await.unwrap());
        assert_eq!(trimmed["mmap_after"]["held_bytes"], 0);

        failed(
            &call("trim", json!({ "fraction": 2 })).await.unwrap(),
            "between 0 and 1",
        );
        // Arguments that do not decode: the SDK answers with an error result too.
        for bad in [
            json!({}),
            json!({ "fraction": "half" }),
            json!({ "fraction": 0.5, "x": 1 }),
        ] {
            let r = call("trim", bad.clone()).await.unwrap();
            assert_eq!(r.is_error, Some(true), "{bad}: {}", text(&r));
        }
        match call("no_such_tool", json!({})).await {
            Err(ServiceError::McpError(e)) => assert_eq!(e.code.0, -32602, "{e:?}"),
            other => panic!("expected a protocol error, got {other:?}"),
        }

        client.cancel().await.unwrap();
        server.await.unwrap();
    }
}
