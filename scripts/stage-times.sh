#!/usr/bin/env bash
# Wall time per stage of an experiment, from its run.log ("<label>: computing (<stage>)" and
# "<label>: done in <s>s" lines), as a markdown table on stdout. Stages found finished (reused)
# print no lines, so a resumed run lists what it computed in each invocation.
#   scripts/stage-times.sh results/smollm2_arith > results/smollm2_arith/stage-times.md
set -euo pipefail
log="${1:?usage: $0 RESULTS_DIR}/run.log"
[ -f "$log" ] || { echo "$0: $log not found" >&2; exit 1; }
python3 - "$log" <<'PY'
import re, sys
computing, rows = {}, []
for line in open(sys.argv[1]):
    m = re.match(r"\[\s*[\d.]+s\] (.*): computing \((\S+)\)$", line.strip())
    if m:
        computing[m.group(1)] = m.group(2)
        continue
    m = re.match(r"\[\s*[\d.]+s\] (.*): done in ([\d.]+)s$", line.strip())
    if m and m.group(1) in computing:
        rows.append((m.group(1), computing.pop(m.group(1)), float(m.group(2))))
print("| stage | folder | wall seconds |\n|---|---|---|")
for label, folder, s in rows:
    print(f"| {label} | `{folder}` | {s:.1f} |")
print(f"| total | | {sum(r[2] for r in rows):.1f} |")
PY
