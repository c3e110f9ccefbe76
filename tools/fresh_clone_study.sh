#!/bin/bash
# Issue 12's reproducibility check: clone this repository's HEAD into a new folder, run `make study`
# there (set-up included: venv, packages, data, kernel), and record what it did in
# outputs/benchmarks/fresh_clone_study.json: exit status, wall seconds, the sweep's own stage times,
# whether any run was trained, and which committed files the study changed (report/tables must
# not change; the PDF's bytes may, by its timestamps).
# Usage: tools/fresh_clone_study.sh [CLONE_DIR]   (default /tmp/fmnist-fresh; removed first)
set -u
cd "$(dirname "$0")/.."
repo=$(pwd)
clone=${1:-/tmp/fmnist-fresh}
rm -rf "$clone" && git clone -q "$repo" "$clone" || exit 1
commit=$(git -C "$clone" rev-parse --short HEAD)
SECONDS=0
(cd "$clone" && make study) > "$clone.log" 2>&1
status=$?
seconds=$SECONDS
changed=$(git -C "$clone" status --porcelain | awk '{print $2}' | paste -sd, -)
tables=$(git -C "$clone" diff --stat -- report/tables | tail -n 1)
times=$(grep -a '^times: ' "$clone.log" | tail -n 1 | sed 's/^times: //')
runs=$(grep -a '^notebooks: ' "$clone.log" | tail -n 1)
"$repo/.venv/bin/python" - "$commit" "$status" "$seconds" "$changed" "$tables" "$times" "$runs" "$(nproc)" <<'EOF'
import json, os, re, sys
commit, status, seconds, changed, tables, times, runs, cores = sys.argv[1:]
new = re.search(r"(\d+) new$", runs)
out = {"command": "git clone <repo> && cd <clone> && make study", "commit": commit, "exit_status": int(status),
       "wall_s": round(float(seconds), 1), "cores": int(cores), "stage_times": times, "runs": runs,
       "runs_trained": int(new.group(1)) if new else None,
       "changed_files": [f for f in changed.split(",") if f],
       "report_tables_diff": tables or "none"}
path = "outputs/benchmarks/fresh_clone_study.json"
with open(path + ".tmp", "w") as f:
    json.dump(out, f, indent=1)
os.replace(path + ".tmp", path)
print(json.dumps(out, indent=1))
EOF
exit $status
