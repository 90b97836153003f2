#!/usr/bin/env python3
"""Accuracy cost of the CPU's weight types on a real model: `runner score` of one arithmetic
question and answer under --dtype f32, bf16 and q8, and each type's per-token log-probability
difference against f32 (mean and max |difference|, total log-probability).

    scripts/score-dtypes.py MODEL [RUNNER ...]

MODEL: a GGUF file or model folder; RUNNER: runner binaries to compare (default
target/release/runner), each row labelled with its path."""
import json
import subprocess
import sys

TEXT = ("Question: Tom has 17 marbles. He gives 5 to Ann and buys 12 more. How many marbles does "
        "he have now?\nAnswer: 17 - 5 = 12. 12 + 12 = 24. The answer is 24.")


def score(binary, model, dtype):
    out = subprocess.run([binary, "score", "--model", model, "--dtype", dtype, "--text", TEXT],
                         capture_output=True, text=True, check=True).stdout
    j = json.loads(out)
    return [t["logprob"] for t in j["tokens"][1:]], j["total_logprob"]


def main():
    model = sys.argv[1]
    runners = sys.argv[2:] or ["target/release/runner"]
    print(f"model {model}, {TEXT!r}")
    print("| runner | dtype | tokens | mean abs diff | max abs diff | total log-prob (f32) |")
    print("|---|---|---|---|---|---|")
    for binary in runners:
        ref, ref_total = score(binary, model, "f32")
        for dtype in ["bf16", "q8"]:
            lp, total = score(binary, model, dtype)
            d = [abs(a - b) for a, b in zip(lp, ref)]
            print(f"| {binary} | {dtype} | {len(d)} | {sum(d) / len(d):.4f} | {max(d):.3f} | "
                  f"{total:.2f} ({ref_total:.2f}) |")


if __name__ == "__main__":
    main()
