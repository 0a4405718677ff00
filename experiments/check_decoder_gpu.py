"""The decoder's paths on a GPU in bf16, unchanged from the CPU: greedy against generate, the
threshold search, cached scoring against scoring from scratch, and merged-LoRA inference with the
weights restored bit for bit. Random weights in the 135M shape, the answer tokens' rows of the
head scaled up and the others zeroed (as in tests/test_decoding.py) so the model writes short
grids and the search has branches to follow.

    PYTHONPATH=. python experiments/check_decoder_gpu.py --tokenizer <dir> --out <file.json>
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from ttt.arc.formats import CompactFormat
from ttt.inference.answer_head import AnswerHead
from ttt.inference.decoding import Decoder
from ttt.inference.generation import Generator
from ttt.model.teacher_forcing import answer_token_logprobs
from ttt.inference.inference_weights import inference_weights
from ttt.model.lora import LoraSettings, add_lora

from bench_decoder_gpu import prompts_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    text_format = CompactFormat()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, intermediate_size=1536, max_position_embeddings=8192)  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    kept = AnswerHead(model, tokenizer, text_format).token_ids
    with torch.no_grad():
        weight = model.lm_head.weight
        rows = weight[kept] * 40.0
        weight.zero_()
        weight[kept] = rows
    model = model.to(device, torch.bfloat16).eval()
    peft = add_lora(model, LoraSettings(rank=16, alpha=32), seed=0)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    prompts = prompts_of(tokenizer, 8, side=6, demos=3)
    out = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "dtype": "bf16"}

    old = Generator(peft, tokenizer, text_format, 8, max_new_tokens=60)(prompts)
    new = Decoder(peft, tokenizer, text_format, 8, max_new_tokens=60, normalise="vocabulary").greedy(prompts)
    out["greedy_texts_equal_to_generate"] = f"{sum(a.text == b.text for a, b in zip(old, new))}/{len(prompts)}"
    out["greedy_max_logprob_difference"] = max(abs(a.logprob - b.logprob) for a, b in zip(old, new))
    out["greedy_answer_tokens"] = [g.num_tokens for g in new]

    before = {n: p.detach().clone() for n, p in peft.named_parameters()}
    with inference_weights(peft, merge=True) as merged:
        started = time.perf_counter()
        decoder = Decoder(merged, tokenizer, text_format, 8, max_new_tokens=60)
        found = decoder.dfs(prompts, 0.01, max_answers=8)
        torch.cuda.synchronize() if device == "cuda" else None
        out["dfs_seconds"] = round(time.perf_counter() - started, 3)
        out["dfs_answers_per_view"] = [len(v) for v in found]
        out["dfs_probabilities"] = [[round(float(torch.tensor(a.logprob).exp()), 3) for a in v] for v in found]
        pairs = []  # each answer's token ids again (its text drops an ending EOS: put it back)
        for prompt, answers in zip(prompts, found):
            for a in answers:
                ids = tokenizer(a.text, add_special_tokens=False)["input_ids"]
                pairs.append((prompt, ids + [tokenizer.eos_token_id] * (a.num_tokens - len(ids))))
        decoder_v = Decoder(merged, tokenizer, text_format, 8, normalise="vocabulary")
        cached = decoder_v.score(pairs)
        scratch = [sum(t) for t in answer_token_logprobs(merged, pairs, tokenizer.pad_token_id)]
        out["cached_vs_scratch_max_difference"] = max((abs(a - b) for a, b in zip(cached, scratch)), default=None)
    out["weights_restored_bit_for_bit"] = all(torch.equal(p, before[n]) for n, p in peft.named_parameters())
    print(json.dumps(out, indent=1))
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
