"""Writes the small GGUF fixtures in tests/fixtures/gguf/ with gguf-py's GGUFWriter, and next
to each the JSON that scripts/dump_gguf.py (gguf-py's GGUFReader) makes of it.

Usage: python make_fixtures.py OUT_DIR     (the committed ones: tests/fixtures/gguf)

Covers every metadata value type (scalars, strings with non-ASCII text, arrays of every
element type, a nested array), a custom alignment, and tensors of every type gguf-py can
write: F32, F16, BF16, F64, I8, I16, I32, I64 and the quantized types it can quantize
(Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, TQ1_0, TQ2_0, MXFP4). Deterministic (fixed seed).
"""
import json
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as Q, GGUFValueType as T, GGUFWriter
from gguf.quants import quantize

sys.path.insert(0, str(Path(__file__).parent))
from dump_gguf import dump  # noqa: E402


def add_every_value_type(w: GGUFWriter) -> None:
    w.add_key_value("test.u8", 200, T.UINT8)
    w.add_key_value("test.i8", -100, T.INT8)
    w.add_key_value("test.u16", 60000, T.UINT16)
    w.add_key_value("test.i16", -30000, T.INT16)
    w.add_key_value("test.u32", 4_000_000_000, T.UINT32)
    w.add_key_value("test.i32", -2_000_000_000, T.INT32)
    w.add_key_value("test.f32", 3.14159, T.FLOAT32)
    w.add_key_value("test.u64", 2**63 + 5, T.UINT64)
    w.add_key_value("test.i64", -(2**62), T.INT64)
    w.add_key_value("test.f64", -2.718281828459045, T.FLOAT64)
    w.add_key_value("test.bool_true", True, T.BOOL)
    w.add_key_value("test.bool_false", False, T.BOOL)
    w.add_key_value("test.string", "héllo, wörld ✓ 日本", T.STRING)
    w.add_key_value("test.empty_string", "", T.STRING)
    for name, t, vals in [
        ("u8", T.UINT8, [0, 1, 255]), ("i8", T.INT8, [-128, 0, 127]),
        ("u16", T.UINT16, [0, 65535]), ("i16", T.INT16, [-32768, 32767]),
        ("u32", T.UINT32, [1, 2, 3, 4_294_967_295]), ("i32", T.INT32, [-1, 0, 1]),
        ("f32", T.FLOAT32, [0.5, -1.25, 1e-30, float("inf")]),
        ("u64", T.UINT64, [2**64 - 1]), ("i64", T.INT64, [-(2**63), 2**63 - 1]),
        ("f64", T.FLOAT64, [1.0 / 3.0, -0.0]), ("bool", T.BOOL, [True, False, True]),
        ("string", T.STRING, ["a", "", "ünïcode", "x" * 300]),
    ]:
        w.add_key_value(f"test.array.{name}", vals, T.ARRAY, sub_type=t)
    w.add_key_value("test.array.nested", [[1, 2, 3], [4, 5]], T.ARRAY, sub_type=T.ARRAY)
    w.add_key_value("test.array.nested_strings", [["a", "b"], ["c"]], T.ARRAY, sub_type=T.ARRAY)


def add_every_tensor_type(w: GGUFWriter, rng: np.random.Generator) -> None:
    base = rng.standard_normal((4, 256), dtype=np.float32)
    w.add_tensor("plain.f32", base)
    w.add_tensor("plain.f16", base.astype(np.float16))
    w.add_tensor("plain.f64", base[:1].astype(np.float64))
    w.add_tensor("plain.i8", rng.integers(-128, 127, (2, 32), dtype=np.int8))
    w.add_tensor("plain.i16", rng.integers(-30000, 30000, (3, 16), dtype=np.int16))
    w.add_tensor("plain.i32", rng.integers(-2**31, 2**31 - 1, (5,), dtype=np.int32))
    w.add_tensor("plain.i64", rng.integers(-2**62, 2**62, (2, 2, 2), dtype=np.int64))
    for q in [Q.BF16, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.TQ1_0, Q.TQ2_0, Q.MXFP4]:
        data = quantize(base, q)
        w.add_tensor(f"quant.{q.name.lower()}", data, raw_shape=base.shape if data.dtype != np.uint8 else None, raw_dtype=q)


def write(path: Path, build) -> None:
    w = GGUFWriter(path, "fixture")
    build(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    path.with_suffix(".json").write_text(json.dumps(dump(str(path)), indent=1) + "\n")


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20260101)
    write(out / "gguf_py_metadata.gguf", add_every_value_type)
    write(out / "gguf_py_tensors.gguf", lambda w: add_every_tensor_type(w, rng))

    def aligned(w: GGUFWriter) -> None:
        w.data_alignment = 64
        w.add_custom_alignment(64)
        w.add_tensor("a", np.arange(3, dtype=np.float32))
        w.add_tensor("b", np.arange(17, dtype=np.float32))
        w.add_tensor("c", np.arange(1, dtype=np.int8))
    write(out / "gguf_py_align64.gguf", aligned)


if __name__ == "__main__":
    main()
