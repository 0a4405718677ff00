import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings, strategies as st

from ttt.arc.grid import MAX_SIDE

settings.register_profile("default", max_examples=100, deadline=None)
settings.load_profile("default")


def grids(max_side: int = MAX_SIDE):
    """Hypothesis strategy: rectangular grids of colours 0-9."""
    return st.integers(1, max_side).flatmap(
        lambda h: st.integers(1, max_side).flatmap(
            lambda w: st.lists(
                st.tuples(*[st.integers(0, 9)] * w).map(tuple), min_size=h, max_size=h
            ).map(tuple)
        )
    )


@pytest.fixture(scope="session")
def tokenizer():
    """The embedded model's real tokenizer (SmolLM2, from the GGUF file; no network)."""
    from ttt.model.loading import load_tokenizer

    return load_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    """A tiny random Llama and the real tokenizer saved as a local model directory."""
    from fixtures import tiny_llama

    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama(len(tokenizer)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def train_py():
    """Runs `python train.py <overrides>` from the repository root; returns the finished process."""

    def run(*overrides: str, timeout: int = 900) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "train.py", *overrides], cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )

    return run
