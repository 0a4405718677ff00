"""Parity with the paper's reference code, checked on what that code produced (../shared/parity/).

The token files need the Llama-3 tokenizer: `python -m ttt.model.llama3_tokenizer` (the README's
test command runs it). A missing tokenizer or folder fails these tests; it never skips them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from ttt import parity
from ttt.arc.formats import get_format
from ttt.arc.grid import from_rows
from ttt.arc.task import Example, Task
from ttt.data.paper_ttt_data import build_paper_ttt_tasks, reference_colours, reference_translate
from ttt.data.synthetic_tasks import SyntheticTask, TTTDataConfig, build_ttt_tasks, leave_one_out, leave_two_out
from ttt.inference.paper_voting import majority_grid, paper_attempts
from ttt.inference.views import make_paper_views
from ttt.inference.candidates import Prediction
from ttt.inference.voting import vote
from ttt.model import llama3_tokenizer
from ttt.model.lora import LoraSettings, add_lora
from ttt.settings import TTTSettings

PARITY = Path(os.environ.get("TTT_PARITY_DIR", Path(__file__).resolve().parents[2] / "shared" / "parity"))


@pytest.fixture(scope="module")
def parity_dir() -> Path:
    if not (PARITY / "README.md").is_file():
        pytest.fail(f"no reference outputs in {PARITY}: set TTT_PARITY_DIR to a folder like ../shared/parity")
    return PARITY


@pytest.fixture(scope="module")
def llama3():
    return llama3_tokenizer.load()  # fails naming the fetch command when it is not cached


@pytest.fixture(scope="module")
def tasks():
    return parity.arc_agi_1_tasks()


def entries(parity_dir: Path, name: str, keys=None) -> dict:
    data = json.loads((parity_dir / name).read_text())
    return data if keys is None else {k: data[k] for k in keys}


def assert_all_match(checks):
    assert checks and all(c.ok for c in checks), "\n".join(line for c in checks for line in c.lines())


def test_messages_and_chat_prompts_match_the_reference_on_all_419_test_inputs(parity_dir, tasks):
    checks = parity.check_prompts(entries(parity_dir, parity.PROMPTS), tasks)
    assert [c.total for c in checks] == [419] * 4
    assert_all_match(checks)


def test_ttt_token_ids_and_loss_masks_match_the_reference_on_its_20_samples(parity_dir, tasks, llama3):
    checks = parity.check_tokens(entries(parity_dir, parity.TOKENS), tasks, llama3)
    assert [c.total for c in checks] == [20, 20]
    assert_all_match(checks)


def test_ttt_data_counts_match_the_reference_on_one_task_of_each_case(parity_dir, tasks, llama3):
    # K=2 topped up with 0-demonstration samples; K=3 with duplicates removed before the colour
    # copies; K=4 topped up from leave-two-out; K=6 capped at 250; no leave-one-out sample fits
    # 8192 tokens, so every leave-two-out sample is used
    keys = ["00576224", "0692e18c", "0c9aba6e", "3d31c5b3", "3490cc26"]
    checks = parity.check_data_counts(entries(parity_dir, parity.DATA_COUNTS, keys), tasks, llama3)
    assert_all_match(checks)


@pytest.mark.slow
def test_the_parity_command_matches_every_file(parity_dir):
    result = subprocess.run(
        [sys.executable, "-m", "ttt.parity", str(parity_dir)], capture_output=True, text=True, timeout=1800
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 12 and all("(all match)" in line for line in lines), result.stdout


def test_the_paper_views_match_the_reference_on_its_28_test_inputs(parity_dir, tasks, llama3):
    # views, views per inverse transform, demonstrations per view (de493100's K-1 views fit only
    # by the true output's size: the reference sized them with the solutions loaded)
    assert_all_match(parity.check_views(entries(parity_dir, parity.VIEWS), tasks, llama3))


def test_paper_views_leave_n_out_in_three_orders_then_five_transformed_views():
    task = Task("t", [Example(grid(i), grid(i + 10)) for i in range(3)], [Example(grid(20), grid(21))])
    views = make_paper_views(task, 0, include_n=1, permute_n=2)
    plain = [v for v in views if v.group == "identity"]
    assert sorted(set(map(frozenset, (v.order for v in plain)))) == sorted({frozenset({1, 2}), frozenset({0, 2}), frozenset({0, 1})})
    assert len(plain) == len(set(v.order for v in plain)) <= 6  # 2 demonstrations: 2 orders per subset
    assert [v.group for v in views[len(plain):]] == ["transpose", "flip_ud", "flip_lr", "rot90", "rot180"]
    assert {len(v.order) for v in views} == {2}
    assert {len(v.order) for v in make_paper_views(task, 0, include_n=0)} == {3}
    uniform = tuple(tuple([1] * 3) for _ in range(3))  # every transform of it is itself
    symmetric = Task("s", [Example(uniform, uniform)] * 2, [Example(uniform, uniform)])
    assert [v.group for v in make_paper_views(symmetric, 0)] == ["identity"]  # its views all show the same


def test_the_paper_vote_returns_the_references_attempts_in_order_on_all_72_cases(parity_dir):
    cases = json.loads((parity_dir / parity.VOTING).read_text())
    assert_all_match(parity.check_voting(cases))
    # the project's own rule agrees as a set on 60 of them (issue 23's comparison)
    hierarchical = [
        set(vote([Prediction(from_rows(p["grid"]), p["group"]) for p in c["predictions"]], ((0,),))[0])
        == {from_rows(g) for g in c["reference_attempts"]}
        for c in cases
    ]
    assert sum(hierarchical) == 60


def test_the_paper_vote_fills_missing_slots_with_majority_grids_and_may_repeat_an_attempt():
    a, b, c, d = ((1, 1), (5, 5)), ((1, 1), (6, 6)), ((2, 2), (7, 7)), ((3, 3), (7, 7))
    assert majority_grid([a, b, c, d]) == ((1, 1), (7, 7))  # row by row: a grid no view produced
    assert paper_attempts([Prediction(a, "identity")]) == [a, a]  # one grid fills every slot
    assert paper_attempts([Prediction(None, "identity")]) == []  # nothing parsed: vote() falls back


def test_the_checker_names_the_first_difference_and_exits_1(parity_dir, tmp_path, capsys):
    prompts = entries(parity_dir, parity.PROMPTS, ["00576224-0", "009d5c81-0"])
    prompts["009d5c81-0"]["user"] = prompts["009d5c81-0"]["user"].replace("[[", "[ [", 1)
    (tmp_path / parity.PROMPTS).write_text(json.dumps(prompts))
    assert parity.main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "user                   1/2 match (1 differ)" in out
    assert "009d5c81-0: at char 1 (lengths 438 and 439): ours '[0 0 0" in out and "vs reference ' [0 0 0" in out
    assert out.count("(all match)") == 3  # system, assistant, chat_prompt


def test_the_checker_refuses_an_unknown_task_and_a_missing_folder(tmp_path, capsys):
    assert parity.main([str(tmp_path / "absent")]) == 2
    (tmp_path / parity.PROMPTS).write_text(json.dumps({"ffffffff-0": {}}))
    assert parity.main([str(tmp_path)]) == 2
    assert "prompts_new_format.json: task 'ffffffff' is not an ARC-AGI-1" in capsys.readouterr().err


def test_a_missing_tokenizer_is_an_error_that_names_the_fetch_command(tmp_path):
    with pytest.raises(llama3_tokenizer.TokenizerMissingError, match="python -m ttt.model.llama3_tokenizer"):
        llama3_tokenizer.load(tmp_path)


# The paper's TTT data rule, piece by piece.
def grid(seed: int, h: int = 5, w: int = 5, colours=(0, 1, 2)):
    rng = np.random.RandomState(seed)
    return tuple(tuple(int(c) for c in row) for row in rng.choice(colours, size=(h, w)))


def test_two_demonstrations_leave_two_out_to_samples_without_context():
    demos = [Example(grid(0), grid(1)), Example(grid(2), grid(3))]
    assert [len(s.demonstrations) for s in leave_two_out(demos)] == [0, 0]
    assert [s.test for s in leave_one_out(demos)] == demos


def test_reference_translate_shifts_all_inputs_alike_and_all_outputs_alike_and_leaves_the_rng():
    examples = [Example(grid(i), grid(i + 10)) for i in range(3)]
    rng = np.random.RandomState(0)
    moved = reference_translate(examples, rng)
    # RandomState(0) draws 0, 3 (the inputs' rows, columns), then 1, 0 (the outputs')
    for before, after in zip(examples, moved):
        assert after.input == tuple(map(tuple, np.roll(np.array(before.input), (0, 3), axis=(0, 1))))
        assert after.output == tuple(map(tuple, np.roll(np.array(before.output), (1, 0), axis=(0, 1))))
    assert rng.randint(0, 4) == np.random.RandomState(0).randint(0, 4)  # copies drew, not rng


def test_reference_colours_keep_0_and_send_used_colours_to_unused_ones():
    sample = SyntheticTask((Example(grid(0, colours=(0, 1, 2)), grid(1, colours=(0, 3))),), Example(grid(2), grid(3)))
    mapping = reference_colours(sample, np.random.RandomState(0)).mapping
    assert mapping[0] == 0 and {mapping[c] for c in (1, 2, 3)} <= set(range(4, 10))
    every = SyntheticTask((), Example(grid(4, colours=tuple(range(10))), grid(5, colours=tuple(range(10)))))
    mapping = reference_colours(every, np.random.RandomState(0)).mapping  # no colour unused: swaps
    assert mapping[0] == 0 and sorted(mapping) == list(range(10))


def test_duplicates_go_before_the_colour_copies_so_each_unique_sample_gets_one_copy():
    def uniform(colour):  # every rotation and flip of it is itself
        return tuple(tuple([colour] * 4) for _ in range(4))

    task = Task("uniform", [Example(uniform(1), uniform(2)), Example(uniform(3), uniform(4))], [])
    config = TTTDataConfig(augmenters=("rot90", "flip_ud"), max_examples=250, rule="paper")
    samples = build_paper_ttt_tasks(task, config)
    # 2 leave-one-out samples (their rotations and flips are the same samples) + one colour copy
    # each; K=2 also tops up with 2 samples without demonstrations + their copies
    assert sorted(len(s.demonstrations) for s in samples) == [0, 0, 0, 0, 1, 1, 1, 1]
    project = build_ttt_tasks(task, TTTDataConfig(augmenters=("rot90", "flip_ud"), max_examples=250))
    assert len(project) > 4  # copies made before deduplication: each duplicate got its own colours


def test_the_paper_data_rule_refuses_what_the_reference_has_not():
    problems = TTTSettings(data_rule="paper", max_tokens=8000, mode="direct").problems()
    assert any("ttt.max_tokens=8000" in p for p in problems) and any("ttt.mode='direct'" in p for p in problems)


def test_lora_on_the_output_head_as_the_papers_8b_run_had():
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False)  # fmt: skip
    targets = ("q_proj", "v_proj", "gate_proj", "up_proj", "down_proj", "lm_head")
    model = add_lora(LlamaForCausalLM(config), LoraSettings(rank=4, alpha=16, target_modules=targets))
    trainable = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(targets)
    assert model(torch.tensor([[1, 2, 3]])).logits.shape == (1, 3, 64)


def test_the_reference_layout_refuses_a_tokenizer_without_llama3_chat_tokens(tokenizer):
    with pytest.raises(ValueError, match="lacks .*<\\|start_header_id\\|>.*use model.chat=template"):
        get_format("paper", "reference").render([], ((1,),), tokenizer=tokenizer)  # the embedded SmolLM2 tokenizer
