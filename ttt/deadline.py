"""A deadline for a whole run (`run.deadline=11h30m`): each task's share of the time left.

The clock starts when the run does (model loading counts). Before each task it divides the time
left, less a reserve for writing the run's outputs, by the tasks left: a task that finishes early
leaves its time to the ones after it, and one that is slow is cut to its share. Within a task's
share, TTT may use `run.ttt_share` (`adapt.TTTClock` stops its fit after the step that passes it;
the run's first step, which compiles, is not charged to its task); inference uses the rest, and
stops decoding when the share is spent, keeping the answers of the views it finished. Inference
always keeps its own part of the share (1 - ttt_share) from when it starts: a TTT that overran its
part (Lightning stops only between steps, and a first step that compiles can take minutes) takes the
overrun from the tasks after it, not from this task's answers. A task reached after the time is out
is not adapted or decoded: its attempts are the fallback (its test input), so `submission.json`
still holds every task; each task cut short says so and why in `results.json` (`cut_short`).

Lightning stops a fit only between steps, and a fit stopped midway by steps alone would leave its
cosine schedule at a high learning rate: under a deadline the schedule runs by time as well
(`ttt.model.module.cosine_with_warmup`, reading `ttt_gone`), so a fit stopped when its part is spent
ends decayed (the default, `run.fit=none`). With `run.fit=samples|epochs`, once the run has timed
its TTT steps (tokens a second), each task's TTT is instead planned beforehand to `ttt_tokens()`
over all its epochs: fewer samples (through the `ttt.max_tokens` budget) or fewer epochs first, and
a sample that alone would overrun is not taken; `TTTClock`'s stop stays the backstop for a pace that
was wrong.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from ttt.knobs import knob

DURATION = re.compile(r"(?:(?P<h>\d+(?:\.\d*)?)h)?(?:(?P<m>\d+(?:\.\d*)?)m)?(?:(?P<s>\d+(?:\.\d*)?)s?)?")
RESERVE_SHARE, RESERVE_MAX_S = 0.02, 60.0  # kept back for the run's summary, report and submission
PACE_MARGIN = 0.85  # of the TTT part the fitted samples are planned to fill (data, held-out NLL, a slower pace)


def parse_duration(text: str | float | int) -> float:
    """Seconds in `11h30m`, `45m`, `90s`, `1.5h` or a plain number of seconds."""
    match = DURATION.fullmatch(str(text).strip())
    if not str(text).strip() or match is None:
        raise ValueError(f"{text!r} is not a duration like 11h30m, 45m, 90s or a number of seconds")
    parts = match.groupdict(default="0")
    return float(parts["h"]) * 3600 + float(parts["m"]) * 60 + float(parts["s"])


@dataclass(frozen=True)
class RunTimeSettings:
    """The whole run's wall-clock bound (configs/train.yaml `run:`)."""

    deadline: str | None = None  # e.g. 11h30m; None: no bound
    ttt_share: float = knob(0.6, gt=0, lt=1)  # of a task's share of the time left, what TTT may use
    fit: str = knob("none", choices=("none", "samples", "epochs"))  # how a task's TTT is fitted to its time

    def problems(self) -> list[str]:
        if self.deadline is None:
            return []
        try:
            seconds = parse_duration(self.deadline)
        except ValueError as error:
            return [f"deadline={self.deadline!r}: {error}"]
        return [] if seconds > 0 else [f"deadline={self.deadline!r}: must be longer than 0 s"]


class RunClock:
    """The run's time left, and the current task's: when its TTT and its inference must stop."""

    def __init__(self, seconds: float, ttt_share: float = 0.6, started: float | None = None):
        self.seconds, self.ttt_share = seconds, ttt_share
        self.started = time.monotonic() if started is None else started
        self.end = self.started + seconds - min(RESERVE_MAX_S, RESERVE_SHARE * seconds)
        self.task_started = self.ttt_started = self.ttt_until = self.until = self.started
        self.inference_part = 0.0  # seconds of the current task's share that are inference's own
        self.trained_tokens, self.training_seconds = 0, 0.0  # the TTT steps timed so far (the pace)

    @classmethod
    def of(cls, settings: RunTimeSettings) -> RunClock | None:
        return None if settings.deadline is None else cls(parse_duration(settings.deadline), settings.ttt_share)

    def begin(self, tasks_left: int, adapting: bool = True) -> None:
        """A task starts, `tasks_left` of them counting it: its share of the time left (without
        adaptation, inference has all of it)."""
        now = time.monotonic()
        share = max(self.end - now, 0.0) / max(tasks_left, 1)
        self.task_started = self.ttt_started = now
        self.until = now + share
        self.ttt_until = now + share * self.ttt_share if adapting else now
        self.inference_part = share * (1 - self.ttt_share) if adapting else share

    def expired(self) -> bool:
        """Whether the run's time (less the reserve) is out."""
        return time.monotonic() >= self.end

    def ttt_seconds(self) -> float:
        """What the current task's TTT may still use."""
        return max(self.ttt_until - time.monotonic(), 0.0)

    def ttt_gone(self) -> float:
        """The fraction of the current task's TTT part gone (the schedule by time reads it)."""
        now = time.monotonic()
        return max(now - self.ttt_started, 0.0) / max(self.ttt_until - self.ttt_started, 1e-9)

    def excuse(self, seconds: float) -> None:
        """`seconds` of the current task's TTT are not charged to it: its TTT part starts and ends
        that much later (the time comes out of the tasks after it). For the run's first step, which
        compiles and warms the kernels: 180 s of a 53 s part on paper80's first task, which then
        trained 1 of its 72 steps."""
        self.ttt_started += seconds
        self.ttt_until += seconds

    def note_step(self, tokens: int, seconds: float) -> None:
        """A TTT step trained `tokens` (not padding) in `seconds`."""
        self.trained_tokens += tokens
        self.training_seconds += seconds

    def pace(self) -> float | None:
        """TTT tokens a second over the steps timed so far; None before the first."""
        return self.trained_tokens / self.training_seconds if self.training_seconds > 0 else None

    def ttt_tokens(self) -> int | None:
        """The most tokens the current task's TTT may train on (all its epochs) to end within its
        TTT part at the measured pace; None while the pace is unknown."""
        pace = self.pace()
        return None if pace is None else int(pace * self.ttt_seconds() * PACE_MARGIN)

    def inference_until(self) -> float:
        """When the current task's decoding must stop (a `time.monotonic()`): the end of its share,
        or inference's own part of it from now if that is later; never after the run's end."""
        return min(max(self.until, time.monotonic() + self.inference_part), self.end)

    def elapsed(self) -> float:
        return time.monotonic() - self.started
