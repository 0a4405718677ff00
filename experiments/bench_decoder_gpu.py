"""Decoding throughput of the ARC decoder against transformers' generate on a GPU, with random
weights in the shapes of the embedded 135M model, Llama-3.2-1B and Llama-3-8B (bf16).

Random weights write no sensible answers, so both paths are made to decode exactly `--tokens`
tokens per view (no stop, no hopeless rule): `generate` with `min_new_tokens` (EOS blocked until
then) and the same arguments the old path passes (suppressed tokens, per-step logits, the
hopeless-answer criterion, which still decodes every answer each step); the new decoder with its
stops switched off. The prompts are real ARC tasks in the compact format (the embedded model's
tokenizer, 49k tokens, for all shapes: the 1B/8B heads are 128k in truth). Also timed: scoring
8 candidates under each view, old (every prompt + candidate encoded again) vs new (prompt cached).

    PYTHONPATH=. python experiments/bench_decoder_gpu.py --tokenizer <dir> --out <file.json>
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch
import transformers
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, StoppingCriteriaList

from ttt.arc.formats import CompactFormat
from ttt.arc.task import Example
from ttt.data.tokenize import SegmentTokenizer
from ttt.inference.decoding import Decoder
from ttt.inference.generation import Generator, HopelessAnswers
from ttt.model.teacher_forcing import answer_logprobs
from ttt.data.padding import pad
from ttt.model.precision import DTYPES

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: only to try the script (--shapes tiny)
SHAPES = {  # hidden, layers, heads, kv heads, intermediate
    "tiny": (64, 2, 4, 2, 128),
    "135m": (576, 30, 9, 3, 1536),
    "1b": (2048, 16, 32, 8, 8192),
    "8b": (4096, 32, 32, 8, 14336),
}


class Endless(CompactFormat):
    """The compact format with no end: nothing is hopeless and no text ends an answer."""

    end_marker = "\uffff"

    def hopeless(self, partial: str) -> bool:
        return False


def prompts_of(tokenizer, count: int, side: int, demos: int, seed: int = 0) -> list[list[int]]:
    """`count` prompts of `demos` random side x side demonstrations and a test input."""
    rng = random.Random(seed)
    grid = lambda: tuple(tuple(rng.randrange(10) for _ in range(side)) for _ in range(side))  # noqa: E731
    encoder, text_format = SegmentTokenizer(tokenizer), CompactFormat()
    return [
        encoder.encode(text_format.render([Example(grid(), grid()) for _ in range(demos)], grid())).input_ids
        for _ in range(count)
    ]


def timed(fn, repeats: int = 1) -> float:
    sync = torch.cuda.synchronize if DEVICE == "cuda" else (lambda: None)
    fn()  # warm-up
    sync()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - started)
    return best


def old_generate(model, tokenizer, prompts, tokens: int, batch_size: int):
    generator = Generator(model, tokenizer, CompactFormat(), batch_size)
    for start in range(0, len(prompts), batch_size):
        ids, mask = (t.to(DEVICE) for t in pad(prompts[start : start + batch_size], tokenizer.pad_token_id, left=True))
        model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
            use_cache=True, eos_token_id=generator.stop_ids, pad_token_id=tokenizer.pad_token_id,
            suppress_tokens=generator.suppress, output_logits=True, return_dict_in_generate=True,
            stopping_criteria=StoppingCriteriaList([HopelessAnswers(tokenizer, Endless(), ids.shape[1])]),
            temperature=None, top_p=None, top_k=None,
        )  # fmt: skip


def new_greedy(model, tokenizer, prompts, tokens: int, batch_size: int):
    decoder = Decoder(model, tokenizer, Endless(), batch_size, max_new_tokens=tokens)
    decoder.head.stops[:] = False
    decoder.greedy(prompts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--shapes", nargs="*", default=list(SHAPES))
    parser.add_argument("--tokens", type=int, nargs="*", default=[64, 256])
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu"
    results = {"device": device, "dtype": args.dtype, "torch": torch.__version__, "transformers": transformers.__version__, "rows": []}
    prompts = prompts_of(tokenizer, 8, side=10, demos=3)  # ~600 tokens each, 8 views
    for shape in args.shapes:
        hidden, layers, heads, kv, inter = SHAPES[shape]
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                             num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
                             max_position_embeddings=8192)  # fmt: skip
        torch.manual_seed(0)
        with torch.device(DEVICE):  # initialised where it runs, in its dtype (an 8B on the CPU first is slow)
            torch.set_default_dtype(DTYPES[args.dtype])
            model = LlamaForCausalLM(config).eval()
            torch.set_default_dtype(torch.float32)
        for tokens in args.tokens:
            for batch_size in (1, 8) if tokens == min(args.tokens) else (8,):  # one view at a time: shortest only
                old = timed(lambda: old_generate(model, tokenizer, prompts, tokens, batch_size))
                new = timed(lambda: new_greedy(model, tokenizer, prompts, tokens, batch_size))
                row = {"shape": shape, "new_tokens_per_view": tokens, "views": len(prompts), "batch_size": batch_size,
                       "prompt_tokens": sum(map(len, prompts)) // len(prompts),
                       "generate_s": round(old, 3), "decoder_s": round(new, 3), "speedup": round(old / new, 2),
                       "generate_tok_s": round(tokens * len(prompts) / old), "decoder_tok_s": round(tokens * len(prompts) / new)}  # fmt: skip
                results["rows"].append(row)
                print(json.dumps(row), flush=True)
        answers = [a[-120:] for a in prompts_of(tokenizer, 8, side=10, demos=0, seed=1)]  # 8 candidates, 120 tokens
        pairs = [(p, a) for p in prompts for a in answers]
        old = timed(lambda: answer_logprobs(model, pairs, tokenizer.pad_token_id, batch_size=8))
        new = timed(lambda: Decoder(model, tokenizer, CompactFormat(), 8, restrict_alphabet=False).score(pairs))
        row = {"shape": shape, "scoring_pairs": len(pairs), "old_score_s": round(old, 3), "cached_score_s": round(new, 3),
               "speedup": round(old / new, 2)}  # fmt: skip
        results["rows"].append(row)
        print(json.dumps(row), flush=True)
        with open(args.out, "w") as f:  # after every shape: a killed run keeps what it measured
            json.dump(results, f, indent=1)
        del model
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
