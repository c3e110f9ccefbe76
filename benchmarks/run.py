"""Benchmarks: the engines against the assignment's starter loop, measured side by side.

(a) Training throughput at batch 64 (evaluation excluded) of the starter's own loop
    (torchvision ``FashionMNIST`` + ``ToTensor()`` + ``DataLoader(batch_size=64, shuffle=True)``,
    ``nn.CrossEntropyLoss``, ``SGD(lr=1e-3)``), of the single-model engine
    (:func:`helpers.engine.train.train`) and of the batched engine (:func:`helpers.engine.batched.train_many`)
    for K = 1, 4, 8, 16, 32 models at once, each for the same number of steps, in rounds
    (every round measures every engine once, in the same process, one after the other);
    reported as model-samples per second (each model's samples, summed over the K models,
    per wall second) and as the ratio to the starter of the same round (median over rounds).
    CPU seconds of this process are recorded beside wall seconds: on a shared machine the
    CPU-time ratio is the steadier one.
(b) Time to the assignment's 89.38% test accuracy for the project's tuned recipe (the
    starter-baseline notebook's: Nesterov, lr 0.05, momentum 0.9, one-cycle, batch 64,
    standardised pixels), evaluated 4 times per epoch: wall seconds and sample-gradient
    evaluations at the first evaluation reaching it, with the single-model engine (seed 0) and
    with the batched engine training several seeds at once (wall: each model's share).
(c) How the cost grows with K (time per step, throughput) and with epochs (cumulative
    wall time and gradient evaluations of the (b) runs), as a table and a plot.
(d) The distance to the physical limit: (a)'s throughput in FLOP/s (LeNet-5's training FLOPs
    per sample counted from its convolution and linear layers) as a fraction of the device's
    peak, measured in the same run by a large float32 matmul at the same thread count
    (:mod:`benchmarks.flops`).
(e) The methods batched since the one-loop engine (SVRG, SARAH, SAGA, averaging, Lookahead,
    growing batch, schedule-free): per-model throughput at K = 8 against K = 1
    (:mod:`benchmarks.methods`).
(f) On a CUDA device: model-epochs per second at K = 1, 8, 32, 128 over the full training set
    (:func:`benchmarks.methods.model_epochs`). On a CPU the table shows the last measurement
    that ``tools/device_study.sh`` brought back from a lent GPU (``model_epochs_gpu.csv`` and
    ``model_epochs_gpu.json``, its device, torch version, date and commit), said to be such.
(g) The whole machine, each as it runs by default: the starter's loop at torch's default thread
    count against the study's setup, one worker process per core with one thread and K = 4
    models each (:mod:`benchmarks.machine`).

Results: outputs/benchmarks/{throughput,time_to_target,epochs,methods,model_epochs,machine}.csv,
benchmarks.json, benchmarks.png and README_table.md. ``python -m benchmarks.run --quick`` is a
short smoke run (about a minute).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from helpers.evidence.analysis import TARGET
from helpers.engine.batched import train_many
from helpers.engine.config import RunConfig
from helpers.problem.data import FILES, N_TRAIN, find_data_dir, load, read_verified
from helpers.problem.model import LeNet5
from helpers.study.records import OUTPUTS
from helpers.runtime import ROOT, default_device, environment
from helpers.engine.train import train

from .flops import peak_flops, training_flops_per_sample
from .gpu_variants import variant_lines
from .machine import machine_lines, machine_throughput, summarize_machine
from .methods import METHODS, method_throughput, model_epochs, summarize_methods

OUT = OUTPUTS / "benchmarks"
BATCH = 64
KS = (1, 4, 8, 16, 32)
VAL = 100  # a tiny hold-out: throughput runs evaluate once, cheaply (evaluation is not timed)
RECIPE = dict(optimizer="nesterov", hparams={"lr": 0.05, "momentum": 0.9}, schedule="onecycle",
              batch_size=BATCH, scaling="standardize", evals_per_epoch=4)
GPU_KS = (1, 8, 32, 128)
MACHINE_K = 4  # the best K of (a) on the 2-core CPU
DEFAULT_THREADS = torch.get_num_threads()  # before main() sets --threads: what the starter's script gets
PROFILES = {
    # (a) at 15% of the images (141 steps per engine and round) and 5 rounds: at 5% and 3 rounds
    # (47 steps) two runs of the same engine differed by 30% in model-samples/s
    "default": dict(fraction=0.15, rounds=5, epochs=5, seeds=3, method_fraction=0.05, method_rounds=2,
                    peak_n=2048),
    "quick": dict(fraction=0.02, rounds=1, epochs=1, seeds=2, method_fraction=0.01, method_rounds=1,
                  peak_n=1024),
}


def starter_dataset(root: Path):
    """torchvision's FashionMNIST over the verified local files (decompressed where it looks)."""
    from torchvision import datasets
    from torchvision.transforms import ToTensor
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    source = find_data_dir()
    for name in FILES:
        (raw / name).write_bytes(read_verified(source, name))
    return datasets.FashionMNIST(root=str(root), train=True, download=False, transform=ToTensor())


def starter_loop(dataset, steps: int, device: torch.device) -> dict:
    """The starter's train_loop (batch 64, shuffled, SGD lr 1e-3) for ``steps`` batches."""
    from torch import nn
    from torch.utils.data import DataLoader
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True)
    model = LeNet5().to(device)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    model.train()
    samples = done = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for batch, (x, y) in enumerate(loader):
        if batch == steps:
            break
        x, y = x.to(device), y.to(device)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if batch % 100 == 0:
            loss.item()
        samples += len(y)
        done += 1
    _sync(device)
    return {"samples": samples, "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
            "steps": done}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def engine_run(data, fraction: float, k: int | None) -> dict:
    """One epoch at batch 64 of the single engine (``k`` None) or of K batched models."""
    common = dict(optimizer="sgd", hparams={"lr": 1e-3}, batch_size=BATCH, epochs=1,
                  train_fraction=fraction, eval_split="val", val_size=VAL)
    cpu = time.process_time()
    if k is None:
        records = train(RunConfig(**common), data, progress=False).records
        models = 1
    else:
        results = train_many([RunConfig(seed=s, **common) for s in range(k)], data, progress=False)
        records, models = results[0].records, k
    cpu = time.process_time() - cpu
    last = records[-1]
    elapsed = last["wall_s"] * models  # batched records hold each model's share
    return {"samples": last["grad_evals"] * models, "wall_s": elapsed, "cpu_s": cpu, "steps": last["step"]}


def throughput(profile: dict, device: torch.device, quick: bool) -> pd.DataFrame:
    data = load(device=device, train_fraction=profile["fraction"], val_size=VAL)
    steps = math.ceil(len(data.train) / BATCH)
    engines = [("starter", None), ("single", None)] + [(f"batched K={k}", k) for k in KS]
    rows = []
    with tempfile.TemporaryDirectory(prefix="fmnist-starter-") as tmp:
        dataset = starter_dataset(Path(tmp))
        starter_loop(dataset, 3, device)  # warm-up
        engine_run(data, profile["fraction"], 2)
        for round_ in range(profile["rounds"]):
            for name, k in engines:
                got = (starter_loop(dataset, steps, device) if name == "starter"
                       else engine_run(data, profile["fraction"], k))
                rows.append({"round": round_, "engine": name, "models": k or 1, **got})
                print(f"  round {round_} {name:14s} {got['samples'] / got['wall_s']:9.0f} model-samples/s "
                      f"(wall {got['wall_s']:.2f} s, cpu {got['cpu_s']:.2f} s)", file=sys.stderr)
    frame = pd.DataFrame(rows)
    frame["samples_per_s"] = frame["samples"] / frame["wall_s"]
    frame["samples_per_cpu_s"] = frame["samples"] / frame["cpu_s"]
    starter = frame[frame.engine == "starter"].set_index("round")
    frame["ratio_wall"] = frame["samples_per_s"] / frame["round"].map(starter["samples_per_s"])
    frame["ratio_cpu"] = frame["samples_per_cpu_s"] / frame["round"].map(starter["samples_per_cpu_s"])
    frame["ms_per_step"] = 1e3 * frame["wall_s"] / frame["steps"]
    return frame


def summarize_throughput(frame: pd.DataFrame, flops_per_sample: float | None = None,
                         peak: float | None = None) -> pd.DataFrame:
    """Medians over rounds; with ``flops_per_sample`` and ``peak`` (FLOP/s) also the FLOP rate per
    CPU second (``gflops_cpu``) and its fraction of the peak (``peak_fraction``)."""
    order = list(dict.fromkeys(frame["engine"]))
    out = frame.groupby("engine", sort=False).agg(
        models=("models", "first"), samples_per_s=("samples_per_s", "median"),
        samples_per_cpu_s=("samples_per_cpu_s", "median"),
        model_epochs_per_s=("samples_per_s", lambda s: statistics.median(s) / N_TRAIN),
        ms_per_step=("ms_per_step", "median"), ratio_wall=("ratio_wall", "median"),
        ratio_cpu=("ratio_cpu", "median"), rounds=("round", "count"))
    out = out.loc[order].reset_index()
    if flops_per_sample is not None and peak:
        out["gflops_cpu"] = out["samples_per_cpu_s"] * flops_per_sample / 1e9
        out["peak_fraction"] = out["gflops_cpu"] * 1e9 / peak
    return out


def first_reach(records: list[dict], target: float = TARGET) -> dict | None:
    for r in records:
        if r["test_acc"] >= target:
            return r
    return None


def time_to_target(profile: dict, device: torch.device, quick: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    fraction = 0.1 if quick else 1.0
    data = load(device=device, scaling="standardize", train_fraction=fraction)
    configs = [RunConfig(**RECIPE, epochs=profile["epochs"], seed=s, train_fraction=fraction)
               for s in range(profile["seeds"])]
    rows, curves = [], []
    print(f"  recipe, single engine, seed 0, {profile['epochs']} epochs", file=sys.stderr)
    runs = [("single", train(configs[0], data, progress=True))]
    print(f"  recipe, batched engine, {len(configs)} seeds", file=sys.stderr)
    runs += [(f"batched K={len(configs)}", r) for r in train_many(configs, data, progress=True)]
    for engine, result in runs:
        hit = first_reach(result.records)
        best = max(r["test_acc"] for r in result.records)
        rows.append({"engine": engine, "seed": result.config.seed, "reached": hit is not None,
                     "epoch": hit["epoch"] if hit else math.nan,
                     "wall_s": hit["wall_s"] if hit else math.nan,
                     "grad_evals": hit["grad_evals"] if hit else math.nan,
                     "best_acc": best, "final_acc": result.records[-1]["test_acc"],
                     "total_wall_s": result.records[-1]["wall_s"], "train_fraction": fraction})
        curves += [{"engine": engine, "seed": result.config.seed, **r} for r in result.records]
    return pd.DataFrame(rows), pd.DataFrame(curves)


def compile_check(device: torch.device, fraction: float, k: int = 8) -> dict:
    """Batched step with and without torch.compile (compile time excluded by a warm-up run)."""
    data = load(device=device, train_fraction=fraction, val_size=VAL)
    common = dict(optimizer="sgd", hparams={"lr": 1e-3}, batch_size=BATCH, epochs=1,
                  train_fraction=fraction, eval_split="val", val_size=VAL)
    configs = [RunConfig(seed=s, **common) for s in range(k)]
    t = time.perf_counter()
    train_many(configs, data, progress=False, compile=True)
    first = time.perf_counter() - t
    out = {"models": k, "first_compiled_run_s": first}
    for flag in (False, True, False, True):
        rec = train_many(configs, data, progress=False, compile=flag)[0].records[-1]
        out.setdefault("compiled" if flag else "eager", []).append(rec["grad_evals"] * k / (rec["wall_s"] * k))
    return out


def plot(summary: pd.DataFrame, curves: pd.DataFrame, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    batched = summary[summary.engine.str.startswith("batched")]
    left.plot(batched["models"], batched["samples_per_s"], marker="o", label="batched engine")
    for name, style in (("starter", "--"), ("single", ":")):
        value = summary.loc[summary.engine == name, "samples_per_s"]
        if len(value):
            left.axhline(float(value.iloc[0]), linestyle=style, color="grey" if name == "starter" else "black",
                         label=f"{name} loop" if name == "starter" else "single-model engine")
    left.set_xscale("log", base=2)
    left.set_xlabel("models trained at once (K)")
    left.set_ylabel("model-samples per second")
    left.set_title("training throughput, batch 64")
    left.legend()
    for (engine, seed), run in curves.groupby(["engine", "seed"]):
        right.plot(run["wall_s"], run["test_acc"], marker=".", alpha=0.8,
                   label=f"{engine}, seed {seed}")
    right.axhline(TARGET, color="grey", linestyle="--", linewidth=1)
    right.set_xlabel("training wall time per model (s)")
    right.set_ylabel("test accuracy (%)")
    right.set_title("tuned recipe: accuracy against time")
    if len(curves):
        right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def epochs_table(curves: pd.DataFrame) -> pd.DataFrame:
    whole = curves[(curves["epoch"] % 1 == 0)]
    return (whole.groupby(["engine", "epoch"])
            .agg(wall_s=("wall_s", "mean"), grad_evals=("grad_evals", "first"), test_acc=("test_acc", "mean"))
            .reset_index())


def gpu_lines_from_device_run(folder: Path) -> list[str]:
    """(f) as ``tools/device_study.sh`` last measured it on a lent GPU, or a line saying it was not."""
    table, about = folder / "model_epochs_gpu.csv", folder / "model_epochs_gpu.json"
    if not (table.exists() and about.exists()):
        return [f"GPU (model-epochs per second at K = {', '.join(map(str, GPU_KS))}): not measured "
                "(no GPU on this machine, and no device run brought one back)."]
    gpu, env = pd.read_csv(table), json.loads(about.read_text())
    return [f"**(f) Model-epochs per second on {env['device']}**, not this run: measured by "
            f"`{env['command']}` on a lent GPU machine (torch {env['torch']}, {env['date']}, git "
            f"{env['commit'][:10]}; plain SGD, batch 64, {int(gpu.steps[0])} steps per epoch, evaluation "
            "excluded; one run, while nothing else ran on it):", "",
            "| models (K) | model-epochs/s | model-samples/s | training s | x K = 1 |", "|---:|---:|---:|---:|---:|"
            ] + [f"| {r.models} | {r.model_epochs_per_s:.2f} | {r.model_samples_per_s:,.0f} | {r.train_s:.1f} | "
                 f"{r.model_epochs_per_s / gpu.model_epochs_per_s.iloc[0]:.1f} |" for r in gpu.itertuples()]


def markdown(summary: pd.DataFrame, ttt: pd.DataFrame, epochs: pd.DataFrame, meta: dict,
             methods: pd.DataFrame | None = None, gpu: pd.DataFrame | None = None,
             machine: pd.DataFrame | None = None) -> str:
    env = meta["environment"]
    lines = [f"Measured by `{meta['command']}` on {env['device']} ({env['cpu_count']} cores, "
             f"torch {env['torch']}, {meta['threads']} torch thread(s) for every engine), "
             f"{meta['date']}, git {env['git_commit']}.", "",
             "**(a) Training throughput at batch 64** (evaluation excluded; median over "
             f"{int(summary['rounds'].max())} round(s); ratios to the starter loop of the same round):", "",
             "| engine | models | model-samples/s | model-epochs/s | ms per step | x starter (wall) | "
             "x starter (CPU time) | GFLOP/s (CPU time) | % of peak |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in summary.itertuples():
        flops = (f"{r.gflops_cpu:.1f} | {100 * r.peak_fraction:.1f}" if hasattr(r, "gflops_cpu") else "– | –")
        lines.append(f"| {r.engine} | {r.models} | {r.samples_per_s:,.0f} | {r.model_epochs_per_s:.3f} | "
                     f"{r.ms_per_step:.1f} | {r.ratio_wall:.2f} | {r.ratio_cpu:.2f} | {flops} |")
    if meta.get("flops"):
        lines += _flops_lines(meta["flops"], meta["peak"])
    if len(ttt):
        lines += _target_lines(ttt, epochs)
    if methods is not None and len(methods):
        lines += _method_lines(methods, meta)
    if machine is not None and len(machine):
        load = meta.get("load_average_before_g")
        lines += [""] + machine_lines(machine)
        if load:
            lines += [f"1-minute load average before (g): {load[0]:.2f}.", ""]
    if gpu is not None and len(gpu):
        lines += ["", f"**(f) Model-epochs per second on {env['device']}** (plain SGD, batch 64, full training "
                  "set, evaluation excluded):", "",
                  "| models (K) | model-epochs/s | model-samples/s | training s |", "|---:|---:|---:|---:|"]
        lines += [f"| {r.models} | {r.model_epochs_per_s:.2f} | {r.model_samples_per_s:,.0f} | {r.train_s:.1f} |"
                  for r in gpu.itertuples()]
    if meta.get("compile"):
        c = meta["compile"]
        lines += ["", f"torch.compile on the batched step (K={c['models']}): eager "
                  f"{', '.join(f'{v:,.0f}' for v in c['eager'])} vs compiled "
                  f"{', '.join(f'{v:,.0f}' for v in c['compiled'])} model-samples/s "
                  f"(first compiled run {c['first_compiled_run_s']:.0f} s)."]
    if env["device"] == "cpu":
        lines += [""] + gpu_lines_from_device_run(OUT) + [""] + variant_lines(OUT)
    lines += ["", "Absolute figures depend on the load other processes put on the machine; the ratios "
              "compare engines measured one after the other in the same rounds."]
    return "\n".join(lines) + "\n"


def _target_lines(ttt: pd.DataFrame, epochs: pd.DataFrame) -> list[str]:
    lines = ["", f"**(b) Time to {TARGET}% test accuracy**, tuned recipe (Nesterov lr 0.05, momentum 0.9, "
             f"one-cycle, batch 64, standardised; 4 evaluations per epoch; "
              f"train fraction {ttt['train_fraction'].iloc[0]}):", "",
              "| engine | seed | reached | epoch | wall s (per model) | sample-gradient evals | best acc % |",
              "|---|---:|---|---:|---:|---:|---:|"]
    for r in ttt.itertuples():
        lines.append(f"| {r.engine} | {r.seed} | {'yes' if r.reached else 'no'} | {_fmt(r.epoch, '.2f')} | "
                     f"{_fmt(r.wall_s, '.1f')} | {_fmt(r.grad_evals, ',.0f')} | {r.best_acc:.2f} |")
    lines += ["", "**(c) Cost against epochs** (the (b) runs; batched: mean over seeds of each model's share):", "",
              "| engine | epoch | wall s | sample-gradient evals | test acc % |", "|---|---:|---:|---:|---:|"]
    for r in epochs.itertuples():
        lines.append(f"| {r.engine} | {r.epoch:g} | {r.wall_s:.1f} | {r.grad_evals:,.0f} | {r.test_acc:.2f} |")
    return lines


def _flops_lines(flops: dict, peak: dict) -> list[str]:
    macs = ", ".join(f"{name} {m:,}" for name, m in flops["layer_macs"].items())
    return ["", f"**(d) Distance to the physical limit.** LeNet-5 training costs {flops['training']:,} FLOPs per sample (forward "
            f"{flops['forward']:,} = 2 x the multiply-adds of its layers ({macs}); backward: every layer's "
            "weight gradient and every layer's input gradient but conv1's; biases, ReLU, pooling and the "
            "update not counted). Peak: the best of "
            f"{peak['repeats']} float32 {peak['n']} x {peak['n']} matmuls at {peak['threads']} thread(s), "
            f"timed by {peak['clock']} in this run: {peak['flops_per_s'] / 1e9:.1f} GFLOP/s. "
            "GFLOP/s of an engine = model-samples per CPU second x FLOPs per sample: the dense layers' count, so "
            "where the compiled CPU kernels (helpers/engine/native) skip the zeros that max-pooling leaves in "
            "the backward, it is an effective rate, above the FLOPs executed."]


def _method_lines(methods: pd.DataFrame, meta: dict) -> list[str]:
    k = int(methods["k"].iloc[0])
    lines = ["", f"**(e) Methods batched by the one-loop engine: per-model throughput at K = {k} against "
             f"K = 1** (batch 64, one epoch of train fraction {meta['profile']['method_fraction']}, "
             f"{meta['profile']['method_rounds']} round(s); model-samples per CPU second, evaluation on 100 "
             "images included; averaging from step 0):", "",
             f"| method | sample gradients per sample | K = 1 | K = {k} | x K = 1 (CPU time) | x K = 1 (wall) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in methods.itertuples():
        row = r._asdict()
        lines.append(f"| {r.method} | {r.oracle_per_sample:.2f} | {row['cpu_K1']:,.0f} | {row[f'cpu_K{k}']:,.0f} | "
                     f"{r.ratio_cpu:.2f} | {r.ratio_wall:.2f} |")
    return lines


def _fmt(value, spec: str) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def render(out: Path) -> int:
    """README_table.md and the README's table from the results a run wrote to ``out``."""
    meta = json.loads((out / "benchmarks.json").read_text())

    def read(name: str, measured: bool = True) -> pd.DataFrame | None:
        return pd.read_csv(out / name) if measured and (out / name).is_file() else None

    table = markdown(read("throughput.csv"), read("time_to_target.csv"), read("epochs.csv"), meta,
                     read("methods.csv", bool(meta.get("methods"))),
                     read("model_epochs.csv", bool(meta.get("model_epochs"))),
                     read("machine.csv", bool(meta.get("machine"))))
    _publish(out, table)
    return 0


def _publish(out: Path, table: str) -> None:
    (out / "README_table.md").write_text(table)
    if out.resolve() == OUT.resolve():
        from helpers.evidence.report_artifacts import update_readme
        update_readme(ROOT / "README.md", table, "bench")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (about a minute)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for every engine (default 1: steady on a shared machine)")
    parser.add_argument("--epochs", type=int, help="planned epochs of the (b) recipe runs")
    parser.add_argument("--seeds", type=int, help="seeds trained at once in (b)")
    parser.add_argument("--rounds", type=int, help="rounds of (a)")
    parser.add_argument("--skip-target", action="store_true", help="skip (b) and (c)")
    parser.add_argument("--skip-methods", action="store_true", help="skip (e)")
    parser.add_argument("--skip-machine", action="store_true", help="skip (g)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), help="the methods of (e)")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile on the batched step")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--render", action="store_true",
                        help="measure nothing: rewrite README_table.md (and the README's table) from the results in --out")
    args = parser.parse_args(argv)
    if args.render:
        return render(args.out)
    profile = dict(PROFILES["quick" if args.quick else "default"])
    for key in ("epochs", "seeds", "rounds"):
        if getattr(args, key):
            profile[key] = getattr(args, key)
    torch.set_num_threads(args.threads)
    device = default_device()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    meta = {"command": "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:]),
            "profile": profile, "threads": args.threads, "environment": environment(device),
            "date": time.strftime("%Y-%m-%d %H:%M %Z"), "target": TARGET}
    meta["flops"] = training_flops_per_sample()
    print("(d) peak FLOP rate", file=sys.stderr)
    peaks = [peak_flops(device, profile["peak_n"])]
    print("(a) throughput", file=sys.stderr)
    frame = throughput(profile, device, args.quick)
    frame.to_csv(args.out / "throughput_rounds.csv", index=False)
    peaks.append(peak_flops(device, profile["peak_n"]))
    meta["peak"] = max(peaks, key=lambda p: p["flops_per_s"])
    summary = summarize_throughput(frame, meta["flops"]["training"], meta["peak"]["flops_per_s"])
    summary.to_csv(args.out / "throughput.csv", index=False)
    methods = gpu = machine = None
    if not args.skip_machine and device.type == "cpu":
        print("(g) the whole machine", file=sys.stderr)
        meta["load_average_before_g"] = os.getloadavg()
        with tempfile.TemporaryDirectory(prefix="fmnist-starter-") as tmp:
            rounds = machine_throughput(starter_dataset(Path(tmp)), profile["fraction"], profile["rounds"],
                                        k=MACHINE_K, starter_threads=DEFAULT_THREADS)
        rounds.to_csv(args.out / "machine_rounds.csv", index=False)
        machine = summarize_machine(rounds)
        machine.to_csv(args.out / "machine.csv", index=False)
    if not args.skip_methods:
        print("(e) methods at K = 8 against K = 1", file=sys.stderr)
        data = load(device=device, train_fraction=profile["method_fraction"], val_size=VAL)
        method_rows = method_throughput(data, profile["method_fraction"], profile["method_rounds"],
                                        methods=args.methods)
        method_rows.to_csv(args.out / "methods_rounds.csv", index=False)
        methods = summarize_methods(method_rows)
        methods.to_csv(args.out / "methods.csv", index=False)
    if device.type == "cuda":
        print("(f) model-epochs per second", file=sys.stderr)
        gpu = model_epochs(load(device=device, val_size=VAL), GPU_KS)
        gpu.to_csv(args.out / "model_epochs.csv", index=False)
    if args.compile:
        print("torch.compile check", file=sys.stderr)
        meta["compile"] = compile_check(device, profile["fraction"])
    ttt = pd.DataFrame(columns=["engine", "seed", "reached", "epoch", "wall_s", "grad_evals", "best_acc",
                                "train_fraction"])
    curves = pd.DataFrame(columns=["engine", "seed", "epoch", "wall_s", "grad_evals", "test_acc"])
    if not args.skip_target:
        print("(b) time to target", file=sys.stderr)
        ttt, curves = time_to_target(profile, device, args.quick)
        ttt.to_csv(args.out / "time_to_target.csv", index=False)
        curves.to_csv(args.out / "recipe_records.csv", index=False)
    epochs = epochs_table(curves) if len(curves) else pd.DataFrame(
        columns=["engine", "epoch", "wall_s", "grad_evals", "test_acc"])
    epochs.to_csv(args.out / "epochs.csv", index=False)
    plot(summary, curves, args.out / "benchmarks.png")
    meta["seconds"] = time.perf_counter() - started
    meta["throughput"] = summary.to_dict(orient="records")
    meta["time_to_target"] = ttt.to_dict(orient="records")
    meta["methods"] = methods.to_dict(orient="records") if methods is not None else None
    meta["model_epochs"] = gpu.to_dict(orient="records") if gpu is not None else None
    meta["machine"] = machine.to_dict(orient="records") if machine is not None else None
    (args.out / "benchmarks.json").write_text(json.dumps(meta, indent=1, default=str))
    table = markdown(summary, ttt, epochs, meta, methods, gpu, machine)
    if args.quick:
        (args.out / "README_table.md").write_text(table)
    else:
        _publish(args.out, table)
    print(table)
    print(f"done in {meta['seconds']:.0f} s; results in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
