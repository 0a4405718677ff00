"""A stop signal is never lost, even when its exception is raised inside a finalizer, where Python
swallows it ("Exception ignored in ..."): CI once saw SIGTERM land in a progress bar's `__del__`
and the run carry on to the end with exit code 0."""

import gc
import json
import os
import signal

import pytest

from ttt import interrupt
from ttt.interrupt import Interrupted, signals_raise


class SignalsWhileCollected:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        sum(range(1000))  # the handler runs here, inside the finalizer: its exception is swallowed


def test_a_signal_raises_where_the_run_is():
    with pytest.raises(Interrupted, match="SIGTERM") as stop:
        with signals_raise():
            os.kill(os.getpid(), signal.SIGTERM)
            sum(range(1000))
    assert stop.value.exit_code == 143


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowed exception, as pytest reports it
def test_a_signal_swallowed_by_a_finalizer_is_raised_again_between_tasks():
    steps = []
    with pytest.raises(Interrupted, match="SIGTERM"):
        with signals_raise():
            SignalsWhileCollected()
            gc.collect()
            steps.append("went on")  # the exception was swallowed
            interrupt.check()  # what adapt_tasks and the predictor call before each task
            steps.append("next task")
    assert steps == ["went on"]
    interrupt.check()  # forgotten once the block is left: nothing pending


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_signal_swallowed_after_the_last_check_is_raised_when_the_block_ends():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted, match="SIGTERM"):
        with signals_raise():
            SignalsWhileCollected()
            gc.collect()
    assert signal.getsignal(signal.SIGTERM) == before  # the previous handler is back


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_run_whose_last_task_swallowed_a_signal_is_recorded_interrupted_not_finished(tmp_path):
    from ttt.outputs import RUN_RECORD
    from ttt.run import _job

    with pytest.raises(Interrupted):
        with signals_raise(), _job(tmp_path, {"status": "running"}):
            SignalsWhileCollected()
            gc.collect()  # after the last task's check: only leaving the job can notice
    assert json.loads((tmp_path / RUN_RECORD).read_text())["status"] == "interrupted"
