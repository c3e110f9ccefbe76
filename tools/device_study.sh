#!/bin/bash
# The study's training on a lent GPU machine, bounded in time; brings back the finished records.
#
# Here, once:   mkdir -p .device-data && cp /usr/share/datasets/fashion-mnist/*.gz .device-data/
# Device tool:  run(command="bash tools/device_study.sh 540", carry=[".device-data"], timeout_s=600)
# Here, after:  tar -xzf <files_at>/runs.tar.gz   (from the repository root; outputs/runs/<id>/...)
#               cp <files_at>/model_epochs_gpu.* outputs/benchmarks/ and set "commit" in the .json
#               to the commit that ran (the device has no .git); make benchmarks shows it as (f)
#
# 1. smoke: every registered method trains a few steps on the GPU (a failure stops here, so no
#    failed record of a CUDA problem enters the study);
# 2. model-epochs per second of the batched engine at K = 1, 8, 32, 128 ($OUT/model_epochs_gpu.csv,
#    and what measured it in $OUT/model_epochs_gpu.json);
# 3. the study's planner (most valuable first) until LIMIT seconds after the script's start, less a
#    margin for the archive, 12 worker processes
#    sharing the GPU; interrupted units are lost, finished ones are written atomically;
# 4. $OUT/runs.tar.gz: the finished and diverged runs written in step 3 (failed ones stay behind).
set -u
LIMIT=${1:-540}
START=$SECONDS
OUT=${OUT:-/tmp/device-out}
mkdir -p "$OUT"
export FASHION_MNIST_DIR="$PWD/.device-data" PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
python3 - <<'EOF' || exit 1
import tempfile, torch
from helpers.engine.config import RunConfig
from helpers.optimizers import names
from helpers.study.records import run_and_record
print("torch", torch.__version__, torch.cuda.get_device_name(0), flush=True)
bad = []
with tempfile.TemporaryDirectory() as root:
    for m in names():
        meta = run_and_record(RunConfig(optimizer=m, epochs=1, train_fraction=0.005, eval_split="val",
                                        val_size=1000, tag="tune"), root)
        device = meta.get("environment", {}).get("device", "")
        if meta["status"] == "failed" or not device.startswith("cuda"):
            bad.append((m, meta.get("error"), device))
print("smoke failures:", bad or "none", flush=True)
raise SystemExit(1 if bad else 0)
EOF
python3 - <<EOF
import os
from benchmarks.methods import model_epochs
from helpers.problem.data import load
import json, time, torch
model_epochs(load(device="cuda", val_size=10_000), (1, 8, 32, 128)).to_csv("$OUT/model_epochs_gpu.csv", index=False)
about = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "commit": "?",
         "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": "bash tools/device_study.sh $LIMIT"}
open("$OUT/model_epochs_gpu.json", "w").write(json.dumps(about))
EOF
mark=$(mktemp)
LEFT=$((LIMIT - (SECONDS - START) - 45))
echo "study for $LEFT s"
timeout --signal=INT --kill-after=20 "$LEFT" python3 -m helpers.study plan --profile full --jobs 12 2>&1 | tee "$OUT/study.log"
python3 - "$mark" <<EOF
import json, os, sys, tarfile
from pathlib import Path
since = os.path.getmtime(sys.argv[1])
runs = [p.parent for p in Path("outputs/runs").glob("*/meta.json") if p.stat().st_mtime > since
        and json.loads(p.read_text()).get("status") in ("finished", "diverged")]
with tarfile.open("$OUT/runs.tar.gz", "w:gz") as tar:
    for run in runs:
        tar.add(run)
print(len(runs), "runs brought back")
EOF
