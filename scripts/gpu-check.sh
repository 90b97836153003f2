#!/usr/bin/env bash
# The GPU path's device check (issue 7): one call of under 8 minutes on the device machine.
#
#   here:  scripts/stage-device.sh     builds `runner --features cuda` into .device/ (git-ignored
#                                      through .git/info/exclude) with a pretrained tiny checkpoint
#   there: scripts/gpu-check.sh        (device `run` with carry [".device"])
#
# Steps, each under a timeout and all under one deadline ($BUDGET seconds), so a slow step
# leaves the earlier results in place:
#   1. logits of a random `small` Llama on cuda f32 and bf16 against the CPU backend
#      (tolerance 1e-3 and 2e-2 of the logits' scale); greedy tokens of the trained tiny model,
#      CPU vs cuda f32, must be identical;
#   2. transformers reference timings (scripts/gpu_reference.py) on the same card;
#   3. `runner bench generate` on the Llama-3.1-8B shape, bf16, batch 1 with empty kernel and
#      autotune caches (cold time to first token), batch 1 again (warm), 16 and 64;
#   4. `runner bench train`: LoRA rank 16 steps on the 8B shape;
#   5. summary.md (scripts/gpu_summary.py): ratios, share of the memory-bandwidth floor.
# CPU dry run of the plumbing (no CUDA): GPU_CHECK_BACKEND=cpu GPU_CHECK_SHAPE=small scripts/gpu-check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${RUNNER:-$ROOT/.device/runner}
TINY=${TINY:-$ROOT/.device/tiny}
OUT=${OUT:-$ROOT/.cache/gpu-out}
BUDGET=${BUDGET:-450}
BACKEND=${GPU_CHECK_BACKEND:-cuda}
SHAPE=${GPU_CHECK_SHAPE:-llama-3.1-8b}
NEW=${GPU_CHECK_NEW_TOKENS:-256}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu-check.log") 2>&1
export CUDA_PATH=${CUDA_PATH:-/usr/local/cuda}
export LD_LIBRARY_PATH="$CUDA_PATH/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# burn/CubeCL read cubecl.toml from the working folder: kernel (PTX) and autotune caches in a
# git-ignored folder that stays while the machine is warm.
CACHE=$ROOT/.cache/cubecl
WORK=$ROOT/.cache/gpu-work
mkdir -p "$WORK" "$CACHE"
cat > "$WORK/cubecl.toml" <<TOML
[autotune]
cache = { file = "$CACHE/autotune" }
[compilation]
cache = { file = "$CACHE/kernels" }
TOML
cd "$WORK"

FAIL=0
step() { # NAME TIMEOUT COMMAND...: runs under min(TIMEOUT, time left), samples GPU memory
  local name=$1 t=$2; shift 2
  local left=$((BUDGET - SECONDS))
  # Messages go to stderr: stdout is the command's own (often redirected to a result file).
  if [ "$left" -lt 15 ]; then echo "== $name: skipped, $left s left of the budget" >&2; FAIL=1; return 1; fi
  [ "$t" -gt "$left" ] && t=$left
  echo "== $name (timeout $t s, at $SECONDS s)" >&2
  local mem=""
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$OUT/mem-$name.csv" &
    mem=$!
  fi
  local t0=$SECONDS
  timeout "$t" "$@"
  local rc=$?
  [ -n "$mem" ] && kill "$mem" 2>/dev/null
  echo "== $name: rc=$rc after $((SECONDS - t0)) s" >&2
  [ "$rc" -ne 0 ] && FAIL=1
  return $rc
}

echo "== environment"
date
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
ls "$CUDA_PATH"/lib64/libnvrtc.so* 2>/dev/null || echo "no libnvrtc under $CUDA_PATH/lib64"
"$BIN" --version || { echo "no runner at $BIN: run scripts/stage-device.sh first"; exit 1; }
GPU=(--backend "$BACKEND")
BF16=(--dtype bf16)
[ "$BACKEND" = cpu ] && BF16=(--dtype f32)

# 1. Agreement with the CPU backend.
TEXT="Ann has 12 apples. She buys 7 more apples. How many apples does she have now?

12 + 7 = 19

The final answer is 19."
step score-cpu 120 "$BIN" score --model preset:small --backend cpu --text "$TEXT" --logits-out "$OUT/logits-cpu.json" >/dev/null
step score-f32 120 "$BIN" score --model preset:small "${GPU[@]}" --dtype f32 --text "$TEXT" --logits-out "$OUT/logits-f32.json" >/dev/null
step score-bf16 120 "$BIN" score --model preset:small "${GPU[@]}" "${BF16[@]}" --text "$TEXT" --logits-out "$OUT/logits-bf16.json" >/dev/null
python3 "$ROOT/scripts/gpu_summary.py" logits "$OUT/logits-cpu.json" "$OUT/logits-f32.json" --tol 1e-3 >"$OUT/check-logits-f32.json" || FAIL=1
python3 "$ROOT/scripts/gpu_summary.py" logits "$OUT/logits-cpu.json" "$OUT/logits-bf16.json" --tol 2e-2 >"$OUT/check-logits-bf16.json" || FAIL=1
cat "$OUT"/check-logits-*.json
Q="Ann has 9 apples. She buys 4 more. She gives away 3. She doubles them. How many apples does Ann have now?

"
if [ -d "$TINY" ]; then
  step greedy-cpu 60 "$BIN" generate --model "$TINY" --context 256 --max-tokens 120 --prompt "$Q" >"$OUT/greedy-cpu.json"
  step greedy-gpu 120 "$BIN" generate --model "$TINY" --context 256 --max-tokens 120 --prompt "$Q" "${GPU[@]}" >"$OUT/greedy-gpu.json"
  python3 "$ROOT/scripts/gpu_summary.py" tokens "$OUT/greedy-cpu.json" "$OUT/greedy-gpu.json" >"$OUT/check-greedy.json" || FAIL=1
  cat "$OUT/check-greedy.json"
else
  echo "no tiny checkpoint at $TINY: greedy agreement skipped"; FAIL=1
fi

# 2. transformers on the same card.
DEV=cuda; [ "$BACKEND" = cpu ] && DEV=cpu
REF_SHAPE=$SHAPE; [ "$SHAPE" != llama-3.1-8b ] && REF_SHAPE=tiny
step reference 150 python3 "$ROOT/scripts/gpu_reference.py" --shape "$REF_SHAPE" --device "$DEV" \
  --dtype "${BF16[1]}" --new-tokens "$NEW" --out "$OUT/reference.jsonl"

# 3. Generation on the 8B shape: cold caches, warm caches, batch 16 and 64.
rm -rf "$CACHE/autotune" "$CACHE/kernels"
# Cache capacity = prompt + new tokens + 1: attention costs what a right-sized cache costs.
GEN=(bench generate --model "preset:$SHAPE" "${GPU[@]}" "${BF16[@]}" --prompt-tokens 64 --context $((64 + NEW + 1)))
step gen-b1-cold 150 "$BIN" "${GEN[@]}" --batch 1 --new-tokens "$NEW" --out "$OUT/gen-b1.json" >/dev/null
cp "$OUT/gen-b1.json" "$OUT/ttft-cold.json" 2>/dev/null
step gen-b1-warm 60 "$BIN" "${GEN[@]}" --batch 1 --new-tokens 4 --out "$OUT/ttft-warm.json" >/dev/null
step gen-b64 120 "$BIN" "${GEN[@]}" --batch 64 --new-tokens "$NEW" --out "$OUT/gen-b64.json" >/dev/null
step gen-b16 90 "$BIN" "${GEN[@]}" --batch 16 --new-tokens "$NEW" --out "$OUT/gen-b16.json" >/dev/null

# 4. One LoRA step on the 8B shape.
step train 120 "$BIN" bench train --model "preset:$SHAPE" "${GPU[@]}" "${BF16[@]}" --batch 4 --seq-len 512 \
  --lora-rank 16 --steps 3 --out "$OUT/train.json" >/dev/null

# 5. Summary.
python3 "$ROOT/scripts/gpu_summary.py" summary "$OUT" | tee "$OUT/summary.md"
echo "== done in $SECONDS s, failures: $FAIL"
exit $FAIL
