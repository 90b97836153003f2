#!/usr/bin/env python3
"""Checks and summary for scripts/gpu-check.sh (standard library only).

  gpu_summary.py logits CPU.json GPU.json --tol T   exit 1 unless the GPU logits agree
  gpu_summary.py tokens CPU.json GPU.json           exit 1 unless greedy token ids agree
  gpu_summary.py summary OUT_DIR                    print summary.md from the JSON results

Logit agreement is relative to the reference's scale: max |gpu - cpu| / max |cpu| over all
positions and vocabulary entries (also printed: the same ratio for the RMS).
"""
import glob
import json
import math
import os
import sys

# HBM bandwidth by card name (bytes/s), vendor figures: H100 SXM5 80GB HBM3 3.35 TB/s,
# H100 PCIe 2.0 TB/s, H100 NVL 3.9 TB/s, H200 4.8 TB/s.
BANDWIDTH = [("H200", 4.8e12), ("H100 NVL", 3.9e12), ("H100 PCIe", 2.0e12), ("H100", 3.35e12)]


def load(path):
    with open(path) as f:
        return json.load(f)


def logits(a_path, b_path, tol):
    a, b = load(a_path), load(b_path)
    if a["input_ids"] != b["input_ids"]:
        sys.exit(f"token ids differ: {a_path} vs {b_path}")
    ref = [x for row in a["logits"] for x in row]
    got = [x for row in b["logits"] for x in row]
    scale = max(abs(x) for x in ref)
    diff = [abs(x - y) for x, y in zip(ref, got)]
    rel_max = max(diff) / scale
    rms = lambda v: math.sqrt(sum(x * x for x in v) / len(v))
    rel_rms = rms(diff) / rms(ref)
    ok = rel_max <= tol and all(math.isfinite(x) for x in got)
    print(json.dumps(dict(check="logits", reference=a_path, candidate=b_path, max_abs_ref=scale,
                          max_abs_diff=max(diff), rel_max=rel_max, rel_rms=rel_rms, tol=tol, ok=ok)))
    return ok


def tokens(a_path, b_path):
    a, b = load(a_path), load(b_path)
    ia, ib = [t["id"] for t in a["tokens"]], [t["id"] for t in b["tokens"]]
    first = next((i for i, (x, y) in enumerate(zip(ia, ib)) if x != y), None)
    ok = ia == ib
    print(json.dumps(dict(check="greedy tokens", reference=a_path, candidate=b_path, n=len(ia),
                          first_difference=first, ok=ok, text=b.get("completion", "")[:200])))
    return ok


def summary(out):
    lines = ["# GPU check summary", ""]
    ref = []
    if os.path.exists(f"{out}/reference.jsonl"):
        ref = [json.loads(l) for l in open(f"{out}/reference.jsonl") if l.strip()]
    env = next((r for r in ref if r["kind"] == "env"), {})
    card = env.get("device", "unknown card")
    bw = next((v for k, v in BANDWIDTH if k in card), None)
    lines += [f"Card: {card}; torch {env.get('torch', '?')}, transformers {env.get('transformers', '?')}.", ""]
    for f in sorted(glob.glob(f"{out}/check-*.json")):
        for l in open(f):
            lines.append(f"- {l.strip()}")
    lines += ["", "## Generation (Llama-3.1-8B shape, random weights, bf16, 64-token prompt, sampling)", ""]
    lines += ["| batch | runner tok/s | transformers tok/s | ratio | runner step ms | transformers step ms "
              "| floor ms | runner share of floor | transformers share |", "|---|---|---|---|---|---|---|---|---|"]
    ours = {}
    for f in glob.glob(f"{out}/gen-b*.json"):
        r = load(f)
        ours.setdefault(r["batch"], r)
    theirs = {r["batch"]: r for r in ref if r["kind"] == "generate"}
    for b in sorted(set(ours) | set(theirs)):
        o, t = ours.get(b), theirs.get(b)
        floor = (o["weight_bytes"] / bw * 1e3) if (o and bw) else None
        f = lambda v, p=1: "-" if v is None else f"{v:.{p}f}"
        os_ = o and o["generated_tokens_per_s_wall"]
        ts = t and t["generated_tokens_per_s_wall"]
        # Like for like: wall time of the whole generate call (prefill included) per new token.
        ostep = o and 1e3 * o["wall_seconds"] / o["new_tokens"]
        tstep = t and t["decode_step_ms"]
        lines.append(f"| {b} | {f(os_)} | {f(ts)} | {f(os_ / ts if os_ and ts else None, 2)} | {f(ostep, 2)} "
                     f"| {f(tstep, 2)} | {f(floor, 2)} | {f(floor / ostep if floor and ostep else None, 2)} "
                     f"| {f(floor / tstep if floor and tstep else None, 2)} |")
    lines += ["", "Step ms: wall time of the whole call (prefill included) / new tokens, for both. "
              "Floor: reading the weights once per decode step at the card's HBM bandwidth "
              f"({'-' if bw is None else f'{bw / 1e12:.2f} TB/s'}).", ""]
    ttft = []
    for name in ("cold", "warm"):
        p = f"{out}/ttft-{name}.json"
        if os.path.exists(p):
            ttft.append(f"{name} {load(p)['first_token_seconds_since_start']:.1f} s")
    if ttft:
        lines += ["Time from process start to the first generated token (8B, batch 1): " + ", ".join(ttft) + ".", ""]
    lines += ["## One LoRA training step (Llama-3.1-8B shape, bf16)", ""]
    tr = next((r for r in ref if r["kind"] == "train"), None)
    ot = load(f"{out}/train.json") if os.path.exists(f"{out}/train.json") else None
    if ot:
        lines.append(f"- runner: {ot['step_seconds']:.3f} s/step (first {ot['first_step_seconds']:.1f} s), batch "
                     f"{ot['batch']} x {ot['seq_len']}, rank {ot['lora_rank']}, loss {ot['final_loss']:.3f}")
    if tr:
        peak = "" if tr.get("peak_gpu_mib") is None else f", peak {tr['peak_gpu_mib']:.0f} MiB allocated"
        lines.append(f"- {tr['impl']}: {tr['step_seconds']:.3f} s/step (first {tr['first_step_seconds']:.1f} s){peak}")
    if ot and tr:
        lines.append(f"- ratio runner / torch: {ot['step_seconds'] / tr['step_seconds']:.2f}")
    for f in sorted(glob.glob(f"{out}/mem-*.csv")):
        vals = [int(x) for x in open(f).read().split() if x.strip().isdigit()]
        if vals:
            lines.append(f"- peak GPU memory during {os.path.basename(f)[4:-4]}: {max(vals)} MiB (nvidia-smi)")
    print("\n".join(lines))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd = sys.argv[1]
    if cmd == "logits":
        tol = float(sys.argv[sys.argv.index("--tol") + 1])
        sys.exit(0 if logits(sys.argv[2], sys.argv[3], tol) else 1)
    if cmd == "tokens":
        sys.exit(0 if tokens(sys.argv[2], sys.argv[3]) else 1)
    if cmd == "summary":
        summary(sys.argv[2])
        return
    sys.exit(__doc__)


if __name__ == "__main__":
    main()
