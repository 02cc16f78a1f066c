"""Sampling speed side by side: `tinylm generate`'s decoder against llama2.c's `run.c` on the same
exported model (the TinyStories seed's shape: llama-gqa, 5 layers x 128, 8 query and 4 key/value
heads, a 105-piece SentencePiece vocabulary), same prompt, same number of tokens, greedy.

    python benchmarks/bench_llama2c.py                       # ../shared/clients/llama2c/run.c
    python benchmarks/bench_llama2c.py --run-c PATH --tokens 256 --repeats 5

Both run on one thread (run.c has no threads unless built with OpenMP; torch is set to one).
Rates are tokens per CPU second of the process doing the work (`resource` usage of the run.c
child; `time.process_time` for tinylm), so a loaded machine changes them less than the wall clock;
repeats alternate between the two, and the medians are reported. Both count the new tokens
(`--tokens` positions less the prompt) over all the work, the prompt's prefill included. The weights are random (speed
does not depend on them), drawn until the greedy text holds no BOS, where run.c would stop.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from tinylm.data.stories import story
from tinylm.decode.strategies import GenerateConfig, generate
from tinylm.interop.export import export_llama2c
from tinylm.model.checkpoint import save_checkpoint
from tinylm.model.gpt import GPT, GPTConfig
from tinylm.model.presets import model_preset
from tinylm.tokens.text import train_sentencepiece

PROMPT = "Once upon a time"


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parents[2] / "shared" / "clients" / "llama2c" / "run.c"
    ap.add_argument("--run-c", default=str(default), help="llama2.c's run.c")
    ap.add_argument("--tokens", type=int, default=256, help="positions per generation (run.c's -n)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp())
    binary = work / "run"
    cc = shutil.which("cc") or shutil.which("gcc")
    subprocess.run([cc, "-O3", "-o", str(binary), args.run_c, "-lm"], check=True)

    tok = train_sentencepiece([story(0, i) for i in range(2000)], model_type="bpe", vocab_size=105, specials=True)
    cfg = GPTConfig(**{**model_preset("llama-gqa"), "vocab_size": tok.vocab_size, "block_size": max(256, args.tokens)})
    ids = [tok.bos_id] + tok.encode(" " + PROMPT).tolist()
    new = args.tokens - len(ids) + 1
    for seed in range(100):   # random weights whose greedy text never holds BOS, where run.c would stop
        torch.manual_seed(seed)
        model = GPT(cfg).eval()
        if tok.bos_id not in generate(model, [ids], GenerateConfig(max_new_tokens=new), eos_id=None).ids[0]:
            break
    save_checkpoint(work / "m.pt", model_config=asdict(cfg), model_state=model.state_dict(), tokenizer=tok.to_dict())
    out = export_llama2c(work / "m.pt", work / "l2c")
    ours, theirs = [], []
    for _ in range(args.repeats):
        start = time.process_time()
        result = generate(model, [ids], GenerateConfig(max_new_tokens=new), eos_id=None)
        assert len(result.ids[0]) == new
        ours.append(new / (time.process_time() - start))
        before = child_cpu()
        subprocess.run([str(binary), str(out / "model.bin"), "-z", str(out / "tokenizer.bin"), "-t", "0",
                       "-n", str(args.tokens), "-i", PROMPT], capture_output=True, text=True, check=True)
        theirs.append(new / (child_cpu() - before))   # the whole process: loading and the prompt included
    print(f"model: {model.num_params():,} parameters (llama-gqa, vocab {tok.vocab_size}); {args.tokens} positions, "
          f"greedy, 1 thread, {args.repeats} repeats alternating")
    print("| sampler | tokens per CPU second (median) | min–max |")
    print("|---|---|---|")
    print(f"| tinylm `generate` (KV cache, torch) | {statistics.median(ours):,.0f} | {min(ours):,.0f}–{max(ours):,.0f} |")
    print(f"| llama2.c `run.c` (-O3) | {statistics.median(theirs):,.0f} | {min(theirs):,.0f}–{max(theirs):,.0f} |")
    print(f"ratio run.c / tinylm: {statistics.median(theirs) / statistics.median(ours):.2f}x")


if __name__ == "__main__":
    main()
