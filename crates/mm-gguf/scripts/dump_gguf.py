"""Dumps what gguf-py's GGUFReader sees in a GGUF file as JSON, for the Rust cross-checks.

Usage: python dump_gguf.py FILE > dump.json

Output: {"version", "alignment", "data_offset",
         "metadata": [{"key", "offset", "types": [type ids, outer first], "value"}],
         "tensors": [{"name", "type", "shape", "n_elements", "n_bytes", "data_offset"}]}
Floats are written as their IEEE bit patterns (float32 -> uint32, float64 -> uint64) so the
comparison is exact, NaNs included. Nested arrays come out flattened, as gguf-py reads them.
"""
import json
import struct
import sys

from gguf import GGUFReader, GGUFValueType


def encode(value, leaf_type):
    if isinstance(value, list):
        return [encode(v, leaf_type) for v in value]
    if leaf_type == GGUFValueType.FLOAT32:
        return struct.unpack("<I", struct.pack("<f", value))[0]
    if leaf_type == GGUFValueType.FLOAT64:
        return struct.unpack("<Q", struct.pack("<d", value))[0]
    if leaf_type == GGUFValueType.BOOL:
        return bool(value)
    return value


def dump(path):
    reader = GGUFReader(path)
    metadata = []
    for field in reader.fields.values():
        if field.name.startswith("GGUF."):
            if field.name == "GGUF.version":
                version = int(field.parts[0][0])
            continue
        types = [int(t) for t in field.types]
        value = field.contents()
        if types and types[0] == GGUFValueType.ARRAY and len(field.data) == 0:
            value = []
        metadata.append({
            "key": field.name,
            "offset": int(field.offset),
            "types": types,
            "value": encode(value, field.types[-1] if field.types else None),
        })
    tensors = [{
        "name": t.name,
        "type": int(t.tensor_type),
        "shape": [int(d) for d in t.shape],
        "n_elements": int(t.n_elements),
        "n_bytes": int(t.n_bytes),
        "data_offset": int(t.data_offset),
    } for t in reader.tensors]
    return {
        "version": version,
        "alignment": int(reader.alignment),
        "data_offset": int(reader.data_offset),
        "metadata": metadata,
        "tensors": tensors,
    }


if __name__ == "__main__":
    json.dump(dump(sys.argv[1]), sys.stdout)
