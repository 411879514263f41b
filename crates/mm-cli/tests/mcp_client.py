"""`mm mcp` end to end with the official Python MCP client (PyPI `mcp`).

usage: python mcp_client.py MM_BINARY MODEL.gguf

Spawns `MM_BINARY mcp` over stdio, initialises, lists the tools and checks their input
schemas, calls each tool (inspect_model on MODEL, a real GGUF), checks the figures against
each other and against the file, and checks the error cases: a bad fraction and a missing
file (tool error results) and an unknown tool (a protocol error). Exits non-zero on the first
mismatch; every request has a timeout and the whole run a deadline.
"""

import json
import os
import sys
import tempfile
from pathlib import Path

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

REQUEST_TIMEOUT_S = 30
RUN_DEADLINE_S = 120


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok: {what}")


def text_of(result):
    return "\n".join(c.text for c in result.content if getattr(c, "type", None) == "text")


def structured(result, tool):
    check(not result.is_error, f"{tool} succeeds ({text_of(result)[:200]!r})")
    data = result.structured_content
    check(isinstance(data, dict), f"{tool} returns structured JSON")
    # The text content carries the same JSON, for clients that only read text.
    check(json.loads(result.content[0].text) == data, f"{tool}'s text content is the same JSON")
    return data


async def run(mm, model):
    file_bytes = model.stat().st_size
    server = StdioServerParameters(
        command=str(mm),
        args=["mcp"],
        # A cache budget above the model's size, so the map stays cached between calls.
        env={"MM_MMAP_CACHE_MB": "512"},
    )
    async with stdio_client(server) as (read, write):
        async with ClientSession(read, write, read_timeout_seconds=REQUEST_TIMEOUT_S) as session:
            init = await session.initialize()
            check(init.server_info.name == "mm", f"server is mm ({init.server_info.name})")
            check(init.capabilities.tools is not None, "server offers tools")

            tools = {t.name: t for t in (await session.list_tools()).tools}
            check(
                sorted(tools) == ["inspect_model", "memory_report", "trim"],
                f"three tools listed: {sorted(tools)}",
            )
            trim_schema = tools["trim"].input_schema
            check(trim_schema.get("required") == ["fraction"], "trim requires fraction")
            frac = trim_schema["properties"]["fraction"]
            check(
                (frac.get("minimum"), frac.get("maximum")) == (0.0, 1.0),
                "trim's schema bounds fraction to [0, 1]",
            )
            out = tools["trim"].output_schema or {}
            check("freed_bytes" in out.get("properties", {}), "trim declares an output schema")
            check(
                tools["inspect_model"].input_schema.get("required") == ["path"],
                "inspect_model requires path",
            )

            report = structured(await session.call_tool("memory_report", {}), "memory_report")
            for key in ["allocator", "budget", "process", "components", "pressure"]:
                check(key in report, f"report has {key}")
            check(report["budget"]["limit_bytes"] > 0, "budget limit is set")

            doc = structured(
                await session.call_tool("inspect_model", {"path": str(model), "array_items": 2}),
                "inspect_model",
            )
            check(doc["version"] == 3, f"GGUF v3 ({doc['version']})")
            check(doc["file_bytes"] == file_bytes, "file_bytes is the file's size")
            check(
                len(doc["tensors"]) == doc["declared_tensors"] > 0,
                f"tensor table has every declared tensor ({doc['declared_tensors']})",
            )
            check(
                len(doc["metadata"]) == doc["declared_metadata"] > 0,
                f"metadata has every declared key ({doc['declared_metadata']})",
            )
            arch = next(m["value"] for m in doc["metadata"] if m["key"] == "general.architecture")
            check(arch == "gemma3", f"architecture is gemma3 ({arch})")
            tensor_bytes = sum(t["bytes"] for t in doc["tensors"])
            plan = doc["memory_plan"]
            check(plan["tensor_bytes"] == tensor_bytes, "memory plan's tensor bytes add up")
            check(plan["file_backed_bytes"] == file_bytes, "memory plan: the whole file is file-backed")
            check(0 < plan["index_heap_bytes"] < file_bytes // 100, "index heap is a sliver of the file")
            check(
                sum(v["bytes"] for v in doc["tensor_types"].values()) == tensor_bytes,
                "per-type totals add up",
            )
            longest = max(
                (m["value"] for m in doc["metadata"] if isinstance(m["value"], dict)),
                key=lambda v: v.get("len", 0),
            )
            check(len(longest["head"]) <= 2 < longest["len"], "long arrays are elided to array_items")

            report = structured(await session.call_tool("memory_report", {}), "memory_report")
            check(report["mmap"]["held_bytes"] == file_bytes, "report: the model is held in the mmap cache")

            trimmed = structured(await session.call_tool("trim", {"fraction": 0}), "trim")
            check(trimmed["freed_bytes"] >= file_bytes, f"trim freed the map ({trimmed['freed_bytes']} B)")
            check(trimmed["mmap_after"]["held_bytes"] == 0, "trim emptied the mmap cache")
            report = structured(await session.call_tool("memory_report", {}), "memory_report")
            check(report["mmap"]["held_bytes"] == 0, "report: the cache holds nothing after trim")
            check(report["mmap"]["evictions"] >= 1, "report: the eviction is counted")

            bad = await session.call_tool("trim", {"fraction": 1.5})
            check(bad.is_error, "trim with fraction 1.5 is a tool error")
            check("between 0 and 1" in text_of(bad), f"... saying the range: {text_of(bad)!r}")

            missing = model.parent / "no-such-model.gguf"
            bad = await session.call_tool("inspect_model", {"path": str(missing)})
            check(bad.is_error, "inspect_model on a missing file is a tool error")
            check("no-such-model.gguf" in text_of(bad), f"... naming the file: {text_of(bad)!r}")

            with tempfile.TemporaryDirectory() as tmp:
                junk = Path(tmp) / "notes.gguf"
                junk.write_bytes(b"GGUF" + b"\xff" * 60)
                bad = await session.call_tool("inspect_model", {"path": str(junk)})
                check(bad.is_error, "inspect_model on a damaged header is a tool error")
                check("notes.gguf" in text_of(bad), f"... naming the file: {text_of(bad)!r}")
                check(
                    bad.structured_content["inspection"]["file_bytes"] == 64,
                    "... with what could be read",
                )

            try:
                await session.call_tool("no_such_tool", {})
            except MCPError as e:
                check(e.error.code == -32602, f"unknown tool: protocol error {e.error.code}")
            else:
                check(False, "unknown tool raises a protocol error")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    mm, model = Path(sys.argv[1]), Path(sys.argv[2])
    for p in (mm, model):
        if not p.is_file():
            sys.exit(f"mcp_client.py: {p} is not a file")

    async def bounded():
        with anyio.fail_after(RUN_DEADLINE_S):
            await run(mm, model)

    try:
        anyio.run(bounded)
    except (AssertionError, TimeoutError) as e:
        print(f"FAIL: {e or 'the run passed its deadline'}", file=sys.stderr)
        sys.exit(1)
    print("mcp_client.py: all checks passed")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
