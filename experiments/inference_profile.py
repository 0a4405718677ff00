"""Where a task's inference seconds go (issue 35, item 1): per task, the seconds of prompt
encoding, of the decoding steps' forward passes and LM head, of the search's own Python, of
scoring the candidates and of the held-out NLL, with the tokens encoded, the decoding steps, the
branch-steps (rows of all decoding passes: tokens decoded) and the answers found per view.
Runs train.py in this process with the given overrides, timing the decoder's parts in place:

    PYTHONPATH=. python experiments/inference_profile.py data=arc_agi_1_dev_mid ttt.enabled=false \\
        hydra.run.dir=/tmp/profile > /tmp/profile.log    # a PROFILE line per task, JSON
"""
import collections, functools, json, runpy, sys, time
from ttt import host_memory
from ttt.inference import decoding, kv_cache, predictor

seconds, counts = collections.Counter(), collections.Counter()


def timed(owner, name, part, count=None):
    """Wrap `owner.name` to add its seconds to `seconds[part]` (`part(args)` where it depends on
    the call) and `count(args)` to its counts."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds[part(*args) if callable(part) else part] += time.perf_counter() - start
            for key, value in (count(*args, **kwargs) if count else {}).items():
                counts[key] += value
    setattr(owner, name, wrapper)


def _encoded(decoder, prompts, views, until):
    return {"views": len(views), "prompt tokens": sum(len(prompts[v]) for v in views)}


def _step(cache, ids, *rest):  # a decoding step: one new token for each live branch
    return ids.shape[1] == 1


def _forwarded(cache, ids, *rest):
    return {"steps": 1, "branch-steps": ids.shape[0]} if _step(cache, ids) else {"encode passes": 1}


timed(predictor, "predict_task", "task")  # inference as `seconds` in predictions.json counts it
timed(predictor, "measure_model", "held-out NLL")
timed(decoding.Decoder, "_search", "search")
timed(decoding.Decoder, "_encode", "encode", _encoded)
timed(decoding.Decoder, "score", "score", lambda decoder, pairs: {"scored": len(pairs)})
# the LM head: a decoding step's (one row a branch) within the search, else scoring's
timed(decoding.AnswerHead, "logprobs", lambda head, hidden: "step head" if hidden.dim() == 2 else "score head")
timed(kv_cache.PromptCache, "forward", lambda *a: "step forward" if _step(*a) else "encode or score forward", _forwarded)
release = host_memory.release


def report():
    release()
    s = {k: round(v, 1) for k, v in seconds.items()}
    s["search python"] = round(seconds["search"] - seconds["encode"] - seconds["step forward"] - seconds["step head"], 1)
    s["rest of task"] = round(seconds["task"] - seconds["search"] - seconds["score"], 1)  # prompts, parsing, voting
    print("PROFILE", json.dumps({"seconds": s, "counts": dict(counts)}), flush=True)
    seconds.clear()
    counts.clear()


host_memory.release = report  # the predictor calls it after each task
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path("train.py", run_name="__main__")  # as experiments/memory_probe.py: Hydra finds configs/ beside it
