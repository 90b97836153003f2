#!/usr/bin/env bash
# Speed of `runner` against the tools a researcher would otherwise use, in ONE invocation on the
# same host, so every figure is a ratio measured side by side (CPU speed varies 2x between
# sessions: never compare absolute numbers across days).
#
#   decode:  runner bench generate (f32, bf16 and 8-bit weights) vs transformers `generate` (f32,
#            same shape, random weights) and llama.cpp's llama-batched-bench (the same SmolLM2
#            Q4_1 GGUF the runner loads)
#   qwen:    the same at the Qwen2.5-0.5B shape: the real Q4_K_M file (scripts/fetch-qwen-gguf.sh,
#            490 MB; QWEN_GGUF=path), transformers' Qwen2ForCausalLM with random weights
#   tiny:    runner bench generate   vs  a hand-written torch decode loop (same shape)
#   train:   runner bench train      vs  a torch step of the same shape (AdamW, clip 1):
#            tiny NLL, tiny eq. (2) with the KL reference forward, SmolLM2-shape LoRA r 8 (q k v o)
#
# Set-up it does itself (once per machine, cached under target/peers/): `pip install torch
# transformers`; llama.cpp built with cmake from the sources vendored in the PyPI sdist of
# llama-cpp-python==0.3.36. Needs scripts/fetch-fixtures.sh's GGUF and a release build.
#
#   scripts/bench-peers.sh                    # everything (about 30 minutes on 2 cores)
#   PEERS_ONLY=train scripts/bench-peers.sh   # one group: decode, qwen, tiny or train
#   RUNNER=path/to/runner, PEERS_THREADS=2, PEERS_OUT=folder (default target/peers/<timestamp>)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNNER=${RUNNER:-target/release/runner}
THREADS=${PEERS_THREADS:-2}
OUT=${PEERS_OUT:-target/peers/$(date +%Y%m%d-%H%M%S)}
ONLY=${PEERS_ONLY:-decode,qwen,tiny,train}
GGUF=target/fixtures/smollm2-135m-instruct-q4_1.gguf
QWEN=${QWEN_GGUF:-target/fixtures/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf}
mkdir -p "$OUT"
export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS
want() { [[ ",$ONLY," == *",$1,"* ]]; }

[ -x "$RUNNER" ] || { echo "no runner binary at $RUNNER (cargo build --release)" >&2; exit 1; }
python3 -c "import torch, transformers" 2>/dev/null || python3 -m pip install --quiet torch transformers

llama_bench() {
  local dir=target/peers/llama.cpp bin=target/peers/llama.cpp/build/bin/llama-batched-bench
  if [ ! -x "$bin" ]; then
    # Everything but the path goes to stderr: this function's stdout is the binary's path.
    command -v cmake >/dev/null || { apt-get update -qq && apt-get install -y -qq cmake; } >&2
    local tmp
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python \
      llama-cpp-python==0.3.36 -d "$tmp" >&2
    tar xzf "$tmp"/llama_cpp_python-0.3.36.tar.gz -C "$tmp"
    rm -rf "$dir" && mkdir -p target/peers && mv "$tmp"/llama_cpp_python-0.3.36/vendor/llama.cpp "$dir"
    rm -rf "$tmp"
    cmake -S "$dir" -B "$dir/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=OFF >&2
    cmake --build "$dir/build" --target llama-batched-bench -j "$(nproc)" >&2
  fi
  echo "$bin"
}

host=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
avx512=$(grep -qw avx512f /proc/cpuinfo && echo yes || echo no)
echo "{\"host\": \"$host\", \"avx512f\": \"$avx512\", \"threads\": $THREADS, \"runner\": \"$RUNNER\"}" >"$OUT/env.json"
echo "host: $host (avx512f: $avx512), $THREADS threads; results in $OUT" >&2

R=() # rows: group|what|runner|reference|unit
row() { R+=("$1|$2|$3|$4|$5"); }
jget() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

# Decode rows of one GGUF model at batch 1, 16 and 64: runner with f32, bf16 and 8-bit weights
# against transformers (f32, random weights of the same shape and family) and llama.cpp on the
# same file.  decode_rows LABEL GGUF LLAMA_CPP_LABEL
decode_rows() {
  local name=$1 gguf=$2 lcname=$3 b d lc
  "$LB" -m "$gguf" -c 8192 -b 2048 -ub 512 -npp 32 -ntg 64 -npl 1,16,64 -t "$THREADS" \
    --output-format jsonl >"$OUT/llama_cpp_$name.log" 2>&1
  for b in 1 16 64; do
    for d in f32 bf16 q8; do
      "$RUNNER" bench generate --model "$gguf" --dtype $d --batch $b --prompt-tokens 32 --new-tokens 64 \
        --out "$OUT/runner_${name}_${d}_b$b.json" >/dev/null
    done
    python3 scripts/peers/torch_ref.py generate --like "$OUT/runner_${name}_f32_b$b.json" --batch $b \
      --prompt-tokens 32 --new-tokens 64 --threads "$THREADS" >"$OUT/hf_${name}_b$b.json"
    lc=$(python3 - "$OUT/llama_cpp_$name.log" $b <<'PY'
import json, sys
for line in open(sys.argv[1]):
    if line.startswith("{"):
        r = json.loads(line)
        if r.get("pl") == int(sys.argv[2]):
            print(r["speed_tg"])
            break
PY
)
    for d in f32 bf16 q8; do
      local v
      v=$(jget "$OUT/runner_${name}_${d}_b$b.json" decode_tokens_per_s)
      row decode "$name decode tok/s, batch $b, runner $d" "$v" "$(jget "$OUT/hf_${name}_b$b.json" decode_tokens_per_s)" \
        "transformers f32"
      row decode "$name decode tok/s, batch $b, runner $d" "$v" "${lc:-nan}" "llama.cpp $lcname"
    done
  done
}

if want decode || want qwen; then
  LB=$(llama_bench)
fi
if want decode; then
  [ -s "$GGUF" ] || scripts/fetch-fixtures.sh >&2
  decode_rows SmolLM2-135M "$GGUF" Q4_1
fi
if want qwen; then
  # The real Qwen2.5-Coder-0.5B-Instruct Q4_K_M file (490 MB, scripts/fetch-qwen-gguf.sh).
  if [ ! -s "$QWEN" ]; then
    [ -z "${QWEN_GGUF:-}" ] || { echo "QWEN_GGUF=$QWEN_GGUF: no such file" >&2; exit 1; }
    scripts/fetch-qwen-gguf.sh >&2
  fi
  decode_rows Qwen2.5-0.5B "$QWEN" Q4_K_M
fi

if want tiny; then
  "$RUNNER" bench generate --model preset:tiny --batch 64 --prompt-tokens 32 --new-tokens 64 \
    --out "$OUT/runner_tiny_b64.json" >/dev/null
  python3 scripts/peers/torch_ref.py loop --like "$OUT/runner_tiny_b64.json" --batch 64 \
    --prompt-tokens 32 --new-tokens 64 --threads "$THREADS" >"$OUT/torch_tiny_loop_b64.json"
  row tiny "tiny decode tok/s, batch 64" "$(jget "$OUT/runner_tiny_b64.json" decode_tokens_per_s)" \
    "$(jget "$OUT/torch_tiny_loop_b64.json" decode_tokens_per_s)" "torch loop"
fi

if want train; then
  # runner reports seconds per step: the ratio is reference / runner (higher = runner faster).
  # Step times on a shared 2-core host drift by 10-20% between runs, so each pair is run
  # ROUNDS times, alternating runner and torch, and the medians are compared.
  ROUNDS=${PEERS_ROUNDS:-3}
  t() { # name, runner args..., -- torch args...
    local name=$1; shift
    local ra=() ta=()
    while [ "$1" != "--" ]; do ra+=("$1"); shift; done
    shift; ta=("$@")
    for r in $(seq 1 "$ROUNDS"); do
      "$RUNNER" bench train "${ra[@]}" --steps 10 --out "$OUT/runner_train_${name}_r$r.json" >/dev/null
      python3 scripts/peers/torch_ref.py train --like "$OUT/runner_train_${name}_r$r.json" "${ta[@]}" \
        --steps 10 --threads "$THREADS" >"$OUT/torch_train_${name}_r$r.json"
    done
  }
  med() { # median steps/s over the rounds of one file prefix
    python3 - "$@" <<'PY'
import json, statistics, sys
print(statistics.median(1 / json.load(open(f))["step_seconds"] for f in sys.argv[1:]))
PY
  }
  t tiny_nll --model preset:tiny --lora-rank 0 --batch 16 --seq-len 100 -- --batch 16 --seq-len 100
  t tiny_kl --model preset:tiny --lora-rank 0 --batch 16 --seq-len 100 --objective kl -- \
    --batch 16 --seq-len 100 --objective kl
  t smollm2_lora --model "$GGUF" --lora-rank 8 --lora-targets q,k,v,o --batch 4 --seq-len 128 -- \
    --batch 4 --seq-len 128 --lora-rank 8 --lora-targets q,k,v,o
  for n in tiny_nll tiny_kl smollm2_lora; do
    row train "train step/s, $n (median of $ROUNDS)" "$(med "$OUT"/runner_train_${n}_r*.json)" \
      "$(med "$OUT"/torch_train_${n}_r*.json)" "torch"
  done
fi

{
  echo "host: $host (avx512f: $avx512), $THREADS threads, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "| measurement | runner | reference | reference value | runner / reference |"
  echo "|---|---|---|---|---|"
  for r in "${R[@]}"; do
    IFS='|' read -r g what a b ref <<<"$r"
    python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'| {sys.argv[3]} | {a:.1f} | {sys.argv[4]} | {b:.1f} | **{a/b:.2f}x** |')" "$a" "$b" "$what" "$ref"
  done
} | tee "$OUT/summary.md"
