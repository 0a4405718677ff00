"""report.html of a real small run (the embedded model, real ARC tasks, TTT and inference) opened in
headless Chromium through Playwright: every task's section renders, the grids drawn match the run's
files in number and colour, the summary table sorts, and the page asks nothing of the network.

Chromium comes from the system package manager (`apt-get install chromium`; `.ci/run` does it),
since Playwright's own browser download is not reachable here; `CHROMIUM_PATH` names another one.
"""

import json
import os
import shutil
from pathlib import Path

import pytest

from ttt.grid_drawing import PALETTE
from ttt.html_report import TOP_CANDIDATES

TASKS = '["00576224","8b28cd80"]'  # 8b28cd80: two test inputs
CHROMIUM_ARGS = [  # root in CI: no sandbox; nothing in the background may reach for the network
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip


@pytest.fixture(scope="module")
def chromium() -> str:
    """The browser's path (checked before the real run is made)."""
    path = os.environ.get("CHROMIUM_PATH") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
    )
    if not path:
        pytest.fail("no Chromium: `apt-get install chromium` (as .ci/run does), or set CHROMIUM_PATH")
    return path


@pytest.fixture(scope="module")
def real_run(train_py, tmp_path_factory):
    out = tmp_path_factory.mktemp("report-run")
    result = train_py(
        f"data.task_ids={TASKS}", "ttt.max_examples=4", "ttt.epochs=1", "trainer.progress_bar=false",
        f"hydra.run.dir={out}", timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert f"report: {out / 'report.html'} (open it in a browser)" in result.stdout
    return out


@pytest.fixture(scope="module")
def page(chromium, real_run):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.requests, page.errors = [], []
        page.on("request", lambda request: page.requests.append(request.url))
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        page.on("console", lambda message: page.errors.append(message.text) if message.type == "error" else None)
        page.goto((real_run / "report.html").as_uri())
        yield page
        browser.close()


def read(run_dir: Path, relative: str):
    return json.loads((run_dir / relative).read_text())


@pytest.mark.slow
def test_every_task_renders_with_as_many_grids_as_the_run_has(page, real_run):
    results = read(real_run, "results.json")
    assert [r["task_id"] for r in results] == json.loads(TASKS)
    for row in results:
        section = page.locator(f"section#task-{row['task_id']}")
        assert section.is_visible() and section.bounding_box()["height"] > 100
        task = read(real_run, f"{row['task_id']}/task.json")
        prediction = read(real_run, f"{row['task_id']}/predictions.json")
        expected = 2 * len(task["train"]) + sum(
            2 + len(test["attempts"]) + min(TOP_CANDIDATES, len(test["candidates"])) for test in prediction["tests"]
        )
        grids = section.locator("svg.grid")
        assert grids.count() == expected
        assert all(grids.nth(i).bounding_box()["width"] > 0 for i in range(grids.count()))
        assert section.locator("[data-role=test-input]").count() == len(task["test"]) == len(prediction["tests"])
    assert page.errors == []


def cell_colour(page, grid, row: int, col: int) -> str:
    """The fill of what the browser draws at the centre of a cell of `grid` (an svg locator)."""
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    rows, cols = int(grid.get_attribute("data-rows")), int(grid.get_attribute("data-cols"))
    x, y = box["x"] + (col + 0.5) * box["width"] / cols, box["y"] + (row + 0.5) * box["height"] / rows
    return page.evaluate("([x, y]) => document.elementFromPoint(x, y).getAttribute('fill')", [x, y])


@pytest.mark.slow
def test_the_colours_drawn_are_the_results_files_cells(page, real_run):
    for row in read(real_run, "results.json"):
        section = page.locator(f"section#task-{row['task_id']}")
        task = read(real_run, f"{row['task_id']}/task.json")
        for t, entry in enumerate(row["attempts"]):  # results.json: the submitted attempts
            test = section.locator(f"div.test[data-test='{t}']")
            for n in (1, 2):
                grid = test.locator(f"figure[data-attempt='{n}'] svg.grid")
                cells = entry[f"attempt_{n}"]
                for r, c in {(0, 0), (len(cells) - 1, len(cells[0]) - 1), (len(cells) // 2, len(cells[0]) // 2)}:
                    assert cell_colour(page, grid, r, c) == PALETTE[cells[r][c]], (row["task_id"], t, n, r, c)
            truth = task["test"][t]["output"]
            last = (len(truth) - 1, len(truth[0]) - 1)
            assert cell_colour(page, test.locator("[data-role=truth] svg.grid"), *last) == PALETTE[truth[last[0]][last[1]]]
        first_demo = task["train"][0]["input"]
        demo = section.locator("[data-role=demo-input] svg.grid").first
        assert cell_colour(page, demo, 0, 0) == PALETTE[first_demo[0][0]]


@pytest.mark.slow
def test_the_summary_table_sorts_by_a_clicked_column(page, real_run):
    results = read(real_run, "results.json")
    order = lambda: page.locator("table#summary tbody tr").evaluate_all("rows => rows.map(r => r.dataset.task)")  # noqa: E731
    heading = page.locator("table#summary th", has_text="inference s")
    heading.click()
    assert order() == [r["task_id"] for r in sorted(results, key=lambda r: r["seconds"])]
    assert heading.get_attribute("aria-sort") == "ascending"
    heading.click()
    assert order() == [r["task_id"] for r in sorted(results, key=lambda r: -r["seconds"])]
    page.locator("table#summary th", has_text="task").first.click()
    assert order() == sorted(r["task_id"] for r in results)


@pytest.mark.slow
def test_the_page_makes_no_network_request(page, real_run):
    page.reload()
    assert page.requests and set(page.requests) == {(real_run / "report.html").as_uri()}
