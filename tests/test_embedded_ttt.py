"""End to end on the real embedded model (SmolLM2-135M-Instruct GGUF) and a real ARC task."""

import json

import pytest


@pytest.mark.slow
def test_train_py_adapts_the_embedded_model_to_one_small_arc_task(train_py, tmp_path):
    overrides = [
        "data.task_ids=[00576224]", "ttt.max_examples=4", "ttt.epochs=1", "ttt.lora.rank=16",
        "data.max_seq_len=512", "trainer.progress_bar=false", f"hydra.run.dir={tmp_path}",
    ]  # fmt: skip
    result = train_py(*overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "00576224" / "ttt.json").read_text())
    assert record["status"] == "done" and record["num_examples"] == 4
    assert 0 < record["final_loss"] < 5  # a pretrained LM on ARC digits, not a random one (~10.8)
    assert (tmp_path / "00576224" / "adapter_model.safetensors").is_file()
    assert "00576224: adapted on 4 examples" in result.stdout
