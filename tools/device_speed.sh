#!/bin/bash
# The engine's GPU speed variants on a lent GPU machine, in one call (issue 14).
#
# Here, once:   mkdir -p .device-data && cp /usr/share/datasets/fashion-mnist/*.gz .device-data/
# Device tool:  run(command="bash tools/device_speed.sh 480", carry=[".device-data"], timeout_s=560)
# Here, after:  cp <files_at>/gpu_variants.csv <files_at>/gpu_profile.txt <files_at>/gpu_variants.json
#               outputs/benchmarks/, set "commit" in the .json to the commit that ran, then
#               python -m benchmarks.run --render   (README table (h); measures nothing)
#
# 1. the CUDA tests: graph replay against the eager step, the unfolded conv blocks and the Triton
#    conv1 kernel against the grouped path (tests/test_cuda_graphs.py, test_triton_convs.py; a failure is reported and the measurements still run,
#    their rows saying which variant failed);
# 2. benchmarks.gpu_variants: model-epochs per second for each way of running the step, K = 1 to
#    256, and the top kernels of 20 steps at K = 256 per conv path, until LIMIT seconds after the
#    script's start.
set -u
LIMIT=${1:-480}
START=$SECONDS
OUT=${OUT:-/tmp/device-out}
mkdir -p "$OUT"
export FASHION_MNIST_DIR="$PWD/.device-data" PYTHONPATH="$PWD" PYTHONUNBUFFERED=1 FMNIST_DEVICE=cuda
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
python3 -m pytest -q -o addopts="" -p no:cacheprovider tests/test_cuda_graphs.py tests/test_triton_convs.py \
    tests/test_unfolded_convs.py 2>&1 | tee "$OUT/cuda_tests.log"
LEFT=$((LIMIT - (SECONDS - START) - 20))
python3 -m benchmarks.gpu_variants --out "$OUT" --limit-s "$LEFT"
python3 - "$LIMIT" > "$OUT/gpu_variants.json" <<'PY'
import json, sys, time, torch
print(json.dumps({"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "commit": "?",
                  "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                  "command": f"bash tools/device_speed.sh {sys.argv[1]}"}))
PY
