"""Per-model throughput of the methods that batch since the one-loop engine (stacked rules), at K
models against one, and model-epochs per second at large K (the GPU measurement).

Each method trains one epoch at batch 64 (evaluation on a 100-image hold-out, once), K = 1 and
K models (different seeds) one after the other in the same round; throughput is the training
samples each model consumed, summed over the models, per CPU second of this process
(``samples_per_cpu_s``; evaluation and set-up included) and per training wall second
(``samples_per_s``; the engine's clock, evaluation excluded). Methods that spend more than one
sample gradient per training sample (SVRG, SARAH: snapshot passes and corrections) are slower
per sample by design; ``oracle_per_sample`` says by how much. The averaging methods start
averaging at step 0 here (``start_epoch`` 0) so that their averaging cost is measured.
"""
from __future__ import annotations

import sys
import time

import pandas as pd

from helpers.engine.batched import train_many
from helpers.engine.config import RunConfig

BATCH = 64
VAL = 100
METHODS = ("svrg", "sarah", "saga", "sgd_polyak", "sgd_ema", "sgd_swa", "lookahead_sgd", "lookahead_adam",
           "sgd_growing_batch", "sgd_schedulefree", "adamw_schedulefree")
HPARAMS = {"sgd_polyak": {"start_epoch": 0.0}, "sgd_swa": {"start_epoch": 0.0}}


def configs_for(method: str, k: int, fraction: float, epochs: int = 1, lr: float | None = None) -> list[RunConfig]:
    hparams = dict(HPARAMS.get(method, {}))
    if lr is not None:
        hparams["lr"] = lr
    return [RunConfig(optimizer=method, hparams=hparams, batch_size=BATCH, epochs=epochs, train_fraction=fraction,
                      eval_split="val", val_size=VAL, seed=s) for s in range(k)]


def timed_run(configs: list[RunConfig], data) -> dict:
    """Train ``configs`` together; samples consumed (all models), oracle calls, CPU and wall seconds."""
    k = len(configs)
    cpu = time.process_time()
    results = train_many(configs, data, progress=False)
    cpu = time.process_time() - cpu
    last = results[0].records[-1]
    samples = round(last["epoch"] * len(data.train))  # training samples one model consumed
    return {"models": k, "steps": last["step"], "samples": samples * k, "oracle": last["oracle_evals"] * k,
            "wall_s": last["wall_s"] * k, "cpu_s": cpu}


def method_throughput(data, fraction: float, rounds: int, ks=(1, 8), methods=METHODS) -> pd.DataFrame:
    rows = []
    for method in methods:
        train_many(configs_for(method, 2, fraction), data, progress=False)  # warm-up
        for round_ in range(rounds):
            for k in ks:
                got = timed_run(configs_for(method, k, fraction), data)
                rows.append({"method": method, "round": round_, **got})
                print(f"  {method:20s} K={k:<3d} {got['samples'] / got['cpu_s']:8.0f} model-samples per CPU s",
                      file=sys.stderr)
    frame = pd.DataFrame(rows)
    frame["samples_per_cpu_s"] = frame["samples"] / frame["cpu_s"]
    frame["samples_per_s"] = frame["samples"] / frame["wall_s"]
    frame["oracle_per_sample"] = frame["oracle"] / frame["samples"]
    return frame


def summarize_methods(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per method: median per-model throughput at each K and the ratio of the largest K to K = 1
    (per round, then the median)."""
    out = []
    for method, rows in frame.groupby("method", sort=False):
        ks = sorted(rows["models"].unique())
        one, many = rows[rows.models == ks[0]].set_index("round"), rows[rows.models == ks[-1]].set_index("round")
        row = {"method": method, "k": int(ks[-1]), "oracle_per_sample": float(rows["oracle_per_sample"].median())}
        for k in ks:
            row[f"cpu_K{k}"] = float(rows[rows.models == k]["samples_per_cpu_s"].median())
        row["ratio_cpu"] = float((many["samples_per_cpu_s"] / one["samples_per_cpu_s"]).median())
        row["ratio_wall"] = float((many["samples_per_s"] / one["samples_per_s"]).median())
        out.append(row)
    return pd.DataFrame(out)


def model_epochs(data, ks=(1, 8, 32, 128), epochs: int = 1) -> pd.DataFrame:
    """Model-epochs per second of plain SGD (batch 64, one training pass over ``data.train`` per
    epoch) with K models at once, for each K: K x epochs / elapsed training seconds (the engine's
    clock: evaluation excluded, the device synchronised before each reading). A short warm-up run
    at each K comes first (kernel selection, allocator)."""
    n = len(data.train)
    fraction = n / 60_000
    rows = []
    for k in ks:
        warm = configs_for("sgd", k, fraction, lr=1e-3)
        train_many(warm, first_images(data, min(n, 4 * BATCH)), progress=False)
        configs = configs_for("sgd", k, fraction, epochs=epochs, lr=1e-3)
        wall = time.perf_counter()
        results = train_many(configs, data, progress=False)
        wall = time.perf_counter() - wall
        last = results[0].records[-1]
        elapsed = last["wall_s"] * k
        rows.append({"models": k, "epochs": last["epoch"], "steps": last["step"], "train_s": elapsed,
                     "run_s": wall, "model_epochs_per_s": k * last["epoch"] / elapsed,
                     "model_samples_per_s": k * last["epoch"] * n / elapsed})
        print(f"  K={k:<4d} {rows[-1]['model_epochs_per_s']:8.2f} model-epochs/s", file=sys.stderr)
    return pd.DataFrame(rows)


def first_images(data, size: int):
    """``data`` with only the first ``size`` training images (a warm-up's)."""
    from dataclasses import replace
    return replace(data, train=type(data.train)(data.train.x[:size], data.train.y[:size]))
