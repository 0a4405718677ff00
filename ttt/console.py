"""What a run prints while it works: progress bars only where someone watches them.

A progress bar redraws itself with carriage returns; in a log file (a batch job, `nohup`, CI) each
redraw is a new fragment of one endless line. So the task bar, Lightning's step bar and
transformers' loading bars are drawn only where stderr is a terminal; a log gets the one line per
task that the run writes either way (adapted on N examples in S s; views, answers parsed, score).
"""

from __future__ import annotations

import sys


def interactive() -> bool:
    """Whether stderr is a terminal (progress bars are drawn there only)."""
    return sys.stderr.isatty()
