# ---
# jupyter:
#   kernelspec:
#     display_name: Python (fmnist-optim)
#     language: python
#     name: fmnist-optim
# ---

# %% [markdown]
# # 50 · Sparsity: strategies and accuracy against density
#
# The sparse scenarios allow at most a share `d` of the fc1+fc2 weights to be nonzero. Three ways to
# train under that budget (`helpers/constraints/sparsity.py`, settings printed below):
#
# - **projection**: projected SGD / iterative hard thresholding: after every optimizer step keep
#   the largest-magnitude weights (the exact Euclidean projection onto the constraint set);
# - **gradual**: gradual magnitude pruning on the cubic schedule of Zhu & Gupta (2017), then
#   training with the mask fixed;
# - **finetune**: dense for part of the run, pruned once by magnitude, fine-tuned with a fixed mask.
#
# Optimizer state at pruned weights (momentum, Adam moments) is set to zero with the weight; under a
# fixed mask the gradient is masked too. The **thin** scenarios meet the same budget by removing whole
# fc1/fc2 neurons, so the network becomes a smaller dense one. The runs are the study's sparse rows
# (`helpers/study/definition.py`): every method at the main sparse budget with each strategy, the best
# of each family at the thinner budgets, each method's standard run as density 1. After `make study`
# this notebook only reads records; opened alone it trains what it asks for. `profile="full"` gives
# the report's numbers; the default `ci` runs in seconds.

# %% tags=["parameters"]
profile = "ci"  # the study's size (helpers/study/definition.py PROFILES): ci, quick, full
optimizers: list = None  # None: the methods the study's sparse rows name; or only these (in every sparse row)
device = None  # None: CUDA when available, else CPU
runs_dir = None  # None: $FMNIST_RUNS_DIR, else the profile's folder (full: outputs/runs)

# %%
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm writes plain bars to stderr
from dataclasses import replace

import matplotlib.pyplot as plt
import pandas as pd
import torch

from helpers.constraints.scenarios import get_scenario, total_steps, within_budget
from helpers.constraints.sparsity import pruning_schedule
from helpers.constraints.structured import (ThinLeNet5, compact_model, forward_flops, neuron_masks,
                                            parameter_count, thin_widths)
from helpers.evidence.analysis import accuracy_vs_density, method_label
from helpers.evidence.plots import density_plot
from helpers.evidence.summary import final_table, last_rows
from helpers.notebook import prepare
from helpers.problem.model import N_CONSTRAINED_WEIGHTS, LeNet5, constrained_weights
from helpers.study.definition import get_profile, strategy_settings
from helpers.study.experiment import records_of
from helpers.study.protocol import execute
from helpers.study.records import data_for
from helpers.study.sweep import study_runs_dir

pd.set_option("display.width", 160, "display.max_columns", 20, "display.precision", 4)
sizes = get_profile(profile)
root = study_runs_dir(profile, runs_dir)
if optimizers is not None:
    prepare("standard", optimizers, "", device)
elif device:
    prepare("standard", [], "", device)
rows = [r for r in sizes.rows_in() if get_scenario(r.scenario).sparse]
if optimizers is not None:
    rows = [replace(r, methods=tuple(optimizers)) for r in rows]
standard = next(r for r in sizes.rows_in() if r.name == "standard")
FINAL_STAGES = ("final", "seeds")

# %% [markdown]
# ## The study's sparse rows, budgets and the size of the thin networks
#
# For each budget: the nonzero fc1+fc2 weights allowed, the fc1/fc2 widths of the thin network, its
# parameter count and forward FLOPs per image, against LeNet-5's. The check prunes a fresh LeNet-5 to
# each thin budget and verifies that `compact_model` gives a smaller network with the same outputs.

# %%
# NBVAL_CHECK_OUTPUT
print(f"profile {profile}: {sizes.epochs} epoch(s) on {sizes.train_fraction:.0%} of the training images")
for r in rows:
    print(f"row {r.name}: scenario {r.scenario}, methods {r.methods}, strategies {', '.join(r.strategies)}")
for name, text in strategy_settings().items():
    print(f"{name}: {text}")
scenarios = sorted({get_scenario(r.scenario) for r in rows}, key=lambda s: (s.structured, -s.density))
dense_flops = forward_flops(LeNet5())
sizes_table = pd.DataFrame([{"scenario": s.name, "density": s.density, "nonzero fc1+fc2 allowed": s.budget,
                             "thin widths": "{}/{}".format(*thin_widths(s.budget)),
                             "thin parameters": parameter_count(ThinLeNet5(*thin_widths(s.budget))),
                             "FLOPs vs LeNet-5": round(forward_flops(ThinLeNet5(*thin_widths(s.budget))) / dense_flops, 3)}
                            for s in scenarios])
print(f"LeNet-5: {parameter_count(LeNet5())} parameters, {dense_flops} forward FLOPs per image")
print(sizes_table.to_string(index=False))
torch.manual_seed(0)
x = torch.randn(8, 1, 28, 28)
for s in [s for s in scenarios if s.structured]:
    model = LeNet5()
    with torch.no_grad():
        for w, m in zip(constrained_weights(model), neuron_masks(constrained_weights(model), s.budget)):
            w.masked_fill_(~m, 0)
    small = compact_model(model)
    assert torch.allclose(small(x), model(x), atol=1e-5)
    print(f"{s.name}: compact network fc1 {small.fc1.out_features}, fc2 {small.fc2.out_features}, "
          f"{parameter_count(small)} parameters, same outputs")

# %% [markdown]
# ## The runs: tuned (a few rates around the standard choice) and trained by the planner

# %%
state = execute(profile, None, root, progress=True, rows=rows)
finals = [r for r in state.done if r.row in {row.name for row in rows} and r.stage in FINAL_STAGES]
methods = sorted({r.method for r in finals})
if methods:  # each method's standard finals: density 1
    dense = execute(profile, None, root, progress=True, rows=[replace(standard, methods=tuple(methods))])
    finals += [r for r in dense.done if r.row == "standard" and r.method in methods and r.stage in FINAL_STAGES]
frame = records_of([r.config for r in finals], root)
if len(frame):
    frame["method"] = [method_label(row) for _, row in frame.iterrows()]
    frame["config_key"] = frame["hparams"] + "|" + frame["batch_size"].astype(str) + "|" + \
        frame["planned_epochs"].astype(str) + "|" + frame["scaling"]
    done = last_rows(frame)
    done = done[done["status"] == "finished"]
    assert within_budget(done).all(), "a final record exceeds its budget"
print(f"{len(finals)} final runs of {len(methods)} method(s)" if finals else "no runs yet")

# %% [markdown]
# ## Final test accuracy and loss against density
#
# Mean ± std over seeds of the finished runs; diverged and failed runs are counted.

# %%
if len(frame):
    t = final_table(frame, by=["method", "scenario", "sparsity_strategy"]).reset_index()
    t["density"] = [get_scenario(s).density or 1.0 for s in t["scenario"]]
    t = t.sort_values(["method", "sparsity_strategy", "density"], ascending=[True, True, False])
    table = pd.DataFrame({"method": t["method"], "scenario": t["scenario"], "strategy": t["sparsity_strategy"],
                          "finished": t["finished"], "diverged": t["diverged"], "failed": t["failed"],
                          "test acc (%)": t["test_acc_mean"].round(2), "± std": t["test_acc_std"].round(2),
                          "test loss": t["test_loss_mean"].round(4), "oracle calls": t["oracle_evals"].round(0)})
table if len(frame) else "no runs yet"

# %%
density = accuracy_vs_density(frame) if len(frame) else pd.DataFrame()
if len(density) and density["density"].nunique() > 1:
    density_plot(density)
    plt.show()

# %% [markdown]
# ## Density during training
#
# The lines are the most nonzeros each strategy allows after each step (`pruning_schedule`, which the
# hook enforces): projection holds the budget from the first step, gradual pruning follows the cubic
# schedule, prune-then-fine-tune stays dense until its single pruning event (drawn for the first run's
# length; every run follows it over its own steps). The markers are the densities recorded at the
# evaluations of the main sparse budget's runs, at their share of each run's own steps.

# %%
main = [r for r in finals if r.strategy and not get_scenario(r.config.scenario).structured
        and r.config.scenario != "standard"]
if main:
    probe = main[0].config
    n_train = len(data_for(probe).train)
    steps = total_steps(probe, n_train)
    run_steps = {r.config.run_id: total_steps(r.config, n_train) for r in main}  # each run's own length
    budget = get_scenario(probe.scenario).density
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for i, strategy in enumerate(sorted({r.strategy for r in main})):
        schedule = pruning_schedule(strategy, N_CONSTRAINED_WEIGHTS, budget, steps)
        ax.plot([c / steps for c in range(steps + 1)], [schedule.allowed(c) / N_CONSTRAINED_WEIGHTS for c in range(steps + 1)],
                color=f"C{i}", label=strategy)
        runs = frame[(frame["scenario"] == probe.scenario) & (frame["sparsity_strategy"] == strategy)]
        ax.plot(runs["step"] / runs["run_id"].map(run_steps), runs["density"], "o", color=f"C{i}", markersize=4)
    ax.axhline(budget, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("share of the training steps")
    ax.set_ylabel("density of fc1+fc2 weights")
    ax.set_title(f"{probe.scenario}: budget {budget:.0%}", fontsize="medium")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False, fontsize=8)
    fig.tight_layout()

# %% [markdown]
# ## What the records say

# %%
if len(density):
    for method, rows_m in density.groupby("method"):
        dense_acc = rows_m.loc[rows_m["density"] == 1.0, "test_acc_mean"]
        ref = float(dense_acc.iloc[0]) if len(dense_acc) else float("nan")
        print(f"{method}: dense {ref:.2f}% test accuracy")
        for d, group in rows_m[rows_m["density"] < 1.0].groupby("density", sort=False):
            ranked = group.sort_values("test_acc_mean", ascending=False)
            top = ranked.iloc[0]
            print(f"  density {d:.0%}: best {top['sparsity_strategy']} {top['test_acc_mean']:.2f}% "
                  f"({top['test_acc_mean'] - ref:+.2f} points vs dense)"
                  + "".join(f"; {r.sparsity_strategy} {r.test_acc_mean:.2f}%" for r in ranked.iloc[1:].itertuples()))
    print(f"(profile {profile}: {sizes.epochs} epoch(s) on {sizes.train_fraction:.0%} of the training images)")
else:
    print("no runs yet")
