#!/usr/bin/env bash
# Prepares .device/ for scripts/gpu-check.sh: a stripped `runner` built with --features cuda
# (no CUDA toolkit needed here: CUDA is loaded at run time) and the pretrained tiny checkpoint
# of the embedded default experiment (run `runner experiments/tiny_arith.toml` first).
# .device/ is kept out of git by .git/info/exclude and carried to the device machine.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >>.git/info/exclude
cargo build --release --features cuda --bin runner
mkdir -p .device
strip -o .device/runner target/release/runner
ckpt=$(ls -d results/tiny_arith/cache/pretrain-*/checkpoint 2>/dev/null | head -1 || true)
if [ -n "$ckpt" ]; then
  rm -rf .device/tiny && cp -r "$ckpt" .device/tiny
else
  echo "no pretrained tiny checkpoint under results/tiny_arith/cache: the greedy check will be skipped" >&2
fi
du -sh .device
