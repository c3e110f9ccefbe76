"""Model-epochs per second of the batched engine on a GPU, for each way of running its step.

    python -m benchmarks.gpu_variants --out DIR [--ks 1 8 32 128 256] [--limit-s 300]

Variants (side by side in one process, each K in turn): the conv blocks as cuDNN grouped
convolutions (``torch.backends.cudnn.benchmark`` off, the default, and on), as batched matmuls
over unfolded patches (``FMNIST_GPU_CONV=unfold``), conv1 as a Triton kernel and conv2 unfolded
(``triton_conv1``), or both as Triton kernels (``triton``); eager, and replayed from CUDA graphs
(``FMNIST_CUDA_GRAPHS=1``). Plain SGD at batch 64, one epoch per measurement, after a
short warm-up run (:func:`benchmarks.methods.model_epochs`). Writes ``gpu_variants.csv``
(rewritten after every row, so a run cut short keeps what it measured) and
``gpu_profile.txt``: the kernels taking the most GPU time in 20 eager steps at the largest K,
for each conv path. Starts no new row once ``--limit-s`` seconds have passed since its start.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from helpers.engine import graphed_step, unfolded_convs
from helpers.engine.config import RunConfig
from helpers.engine.train import run
from helpers.problem.data import load
from helpers.study.records import atomic_write_text

from .methods import first_images, model_epochs

VARIANTS = [  # name, conv path, cudnn.benchmark, CUDA graphs
    ("grouped", "grouped", False, False),
    ("grouped+cudnn_benchmark", "grouped", True, False),
    ("unfold", "unfold", False, False),
    ("triton_conv1", "triton_conv1", False, False),
    ("triton", "triton", False, False),
    ("grouped+graphs", "grouped", False, True),
    ("unfold+graphs", "unfold", False, True),
    ("triton_conv1+graphs", "triton_conv1", False, True),
    ("triton+graphs", "triton", False, True),
]


def use(conv: str, benchmark: bool, graphs: bool) -> None:
    os.environ[unfolded_convs.SWITCH] = conv
    os.environ[graphed_step.SWITCH] = "1" if graphs else "0"
    torch.backends.cudnn.benchmark = benchmark


def measure(data, ks, out: Path, limit_s: float) -> pd.DataFrame:
    start, rows = time.perf_counter(), []
    for k in ks:
        for name, conv, benchmark, graphs in VARIANTS:
            if time.perf_counter() - start > limit_s:
                print(f"time limit: {name} K={k} and later rows not measured", file=sys.stderr)
                return pd.DataFrame(rows)
            use(conv, benchmark, graphs)
            try:
                row = {**model_epochs(data, (k,)).iloc[0].to_dict(), "error": ""}
            except Exception as error:  # a failing variant is a result; the others go on
                row = {"models": k, "model_epochs_per_s": float("nan"), "error": f"{type(error).__name__}: {error}"}
            rows.append({"variant": name, "conv": conv, "cudnn_benchmark": benchmark, "graphs": graphs, **row})
            print(f"{name:32s} K={k:<4d} {row['model_epochs_per_s']:8.2f} model-epochs/s {row['error']}",
                  file=sys.stderr, flush=True)
            atomic_write_text(out / "gpu_variants.csv", pd.DataFrame(rows).to_csv(index=False))
    return pd.DataFrame(rows)


def profile(data, k: int, conv: str, steps: int = 20) -> str:
    """The top kernels by GPU time over ``steps`` eager steps of K models (after 10 unprofiled)."""
    use(conv, False, False)
    n = (10 + steps) * 64
    configs = [RunConfig(optimizer="sgd", hparams={"lr": 1e-3}, seed=i, epochs=1, eval_split="val", val_size=100,
                         train_fraction=n / 60_000) for i in range(k)]
    data = first_images(data, n)
    cuda = data.device.type == "cuda"
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
    profiler = torch.profiler.profile(activities=activities)

    def synchronize():
        if cuda:
            torch.cuda.synchronize()

    def observer(step, stepper):
        if step == 10:
            synchronize()
            profiler.__enter__()

    run(configs, data, progress=False, observer=observer)
    synchronize()
    profiler.__exit__(None, None, None)
    table = profiler.key_averages().table(sort_by="cuda_time_total" if cuda else "cpu_time_total", row_limit=25)
    return f"## conv={conv}, K={k}, {steps} steps (plain SGD, batch 64)\n{table}\n"


def variant_lines(folder: Path) -> list[str]:
    """(h) for the README: model-epochs per second per variant (rows) and K (columns), from the
    last device run's ``gpu_variants.csv`` and ``gpu_variants.json``, or a line saying there is none."""
    table, about = folder / "gpu_variants.csv", folder / "gpu_variants.json"
    if not (table.exists() and about.exists()):
        return ["**(h) The GPU step's variants** (CUDA graphs, unfolded and Triton conv blocks): not measured; "
                "no device run since they were built (`tools/device_speed.sh` measures them)."]
    frame, env = pd.read_csv(table), json.loads(about.read_text())
    failed = frame.error.fillna("").astype(str) != ""
    ks = sorted(frame.models.unique())
    lines = [f"**(h) The GPU step's variants on {env['device']}**, model-epochs per second, not this run: "
             f"`{env['command']}` (torch {env['torch']}, {env['date']}, git {env['commit'][:10]}; plain SGD, "
             "batch 64, one epoch each, evaluation excluded; \"failed\": the variant raised, see the csv):", "",
             "| variant | " + " | ".join(f"K = {k}" for k in ks) + " |", "|---|" + "---:|" * len(ks)]
    for name in dict.fromkeys(frame.variant):
        rows = frame[frame.variant == name].assign(failed=failed).set_index("models")
        cells = ["failed" if k in rows.index and rows.at[k, "failed"] else
                 f"{rows.at[k, 'model_epochs_per_s']:.2f}" if k in rows.index else "" for k in ks]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 8, 32, 128, 256])
    parser.add_argument("--limit-s", type=float, default=300.0)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks.gpu_variants needs a CUDA device")
    args.out.mkdir(parents=True, exist_ok=True)
    data = load(device="cuda", val_size=10_000)
    text = ""
    for conv in unfolded_convs.CHOICES:
        try:
            text += profile(data, max(args.ks), conv)
        except Exception as error:
            text += f"## conv={conv}: {type(error).__name__}: {error}\n"
        atomic_write_text(args.out / "gpu_profile.txt", text)
    measure(data, args.ks, args.out, args.limit_s - (time.perf_counter() - began))


if __name__ == "__main__":
    main()
