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
# The sparse scenarios allow at most a share `d` of the 40,800 fc1+fc2 weights to be nonzero
# (`sparse60`: 24,480). Three ways to train under that budget (`helpers/constraints/sparsity.py`):
#
# - **projection**: projected SGD / iterative hard thresholding: after every optimizer step keep
#   the k largest-magnitude weights (the exact Euclidean projection onto the constraint set);
# - **gradual**: gradual magnitude pruning on the cubic schedule of Zhu & Gupta (2017), dense at
#   10% of the steps, exactly at the budget at 70%, then trained with the mask fixed;
# - **finetune**: dense for half the steps, pruned once by magnitude, fine-tuned with a fixed mask.
#
# Optimizer state at pruned weights (momentum, Adam moments) is set to zero with the weight;
# under a fixed mask the gradient is masked too. The **thin** scenarios meet the same budget by
# removing whole fc1/fc2 neurons, so the network becomes a genuinely smaller dense one.
# Defaults are CI-sized; the real figures need `train_fraction=1.0, epochs=10, seeds=[0, 1]`.

# %% tags=["parameters"]
optimizers = ["adam"]  # the study: the best methods of the family notebooks, e.g. ["adam", "nesterov"]
hparams = {}  # optimizer -> hyperparameters; missing ones take the registry defaults
densities = [1.0, 0.6, 0.3, 0.1, 0.05, 0.01]  # 1.0 is the standard (dense) scenario
strategies = ["projection", "gradual", "finetune"]
thin_densities = [0.3, 0.1]  # structured (neuron-pruned) scenarios; [] to skip
thin_strategy = "gradual"
epochs = 1
seeds = [0]
train_fraction = 0.05  # share of the 60,000 training images (1.0 for the real figures)
evals_per_epoch = 1
device = None  # None: CUDA when available, else CPU
torch_threads = 1  # CPU threads per process (None: torch's default); small models gain little from more
runs_dir = None  # None: outputs/runs (or $FMNIST_RUNS_DIR)

# %%
import os

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch

from helpers.study.experiment import run_and_collect
from helpers.problem.model import N_CONSTRAINED_WEIGHTS, LeNet5, constrained_weights
from helpers.study.records import data_for
from helpers.constraints.scenarios import get_scenario, total_steps, within_budget
from helpers.constraints.sparsity import check_strategy, pruning_schedule
from helpers.constraints.structured import ThinLeNet5, compact_model, forward_flops, neuron_masks, parameter_count, thin_widths
from helpers.study.protocol import base_config
from helpers.evidence.summary import last_rows

if device:
    os.environ["FMNIST_DEVICE"] = device
if torch_threads:
    torch.set_num_threads(torch_threads)
pd.set_option("display.width", 160, "display.precision", 3)
for strategy in [*strategies, thin_strategy]:
    check_strategy(strategy)


def scenario_name(density: float, thin: bool = False) -> str:
    if density == 1.0:
        return "standard"
    return get_scenario("thin" if thin else "sparse", density=density).name


def config(optimizer, density, strategy, seed, thin=False):
    return base_config(optimizer, scenario_name(density, thin), epochs=epochs, train_fraction=train_fraction,
                       evals_per_epoch=evals_per_epoch, sparsity_strategy=strategy,
                       hparams=hparams.get(optimizer, {}), seed=seed)


thin_label = f"thin ({thin_strategy})"
palette = {label: f"C{i}" for i, label in enumerate([*strategies, thin_label])}
configs, labels = [], {}
for optimizer in optimizers:
    for seed in seeds:
        for density in densities:
            for strategy in (["projection"] if density == 1.0 else strategies):
                label = "dense" if density == 1.0 else strategy
                configs.append(config(optimizer, density, strategy, seed))
                labels[configs[-1].run_id] = (label, density)
        for density in thin_densities:
            configs.append(config(optimizer, density, thin_strategy, seed, thin=True))
            labels[configs[-1].run_id] = (thin_label, density)

# %% [markdown]
# ## Budgets and the size of the thin networks
#
# For each density: the nonzero fc1+fc2 weights allowed, the fc1/fc2 widths of the thin network,
# its parameter count and forward FLOPs per image (2 × multiply-accumulates of the conv and linear
# layers), against LeNet-5's. The check below prunes a fresh LeNet-5 to each thin budget and
# verifies that `compact_model` gives a smaller network with the same outputs.

# %%
# NBVAL_CHECK_OUTPUT
dense_flops = forward_flops(LeNet5())
rows = []
for density in sorted(set(densities) | set(thin_densities), reverse=True):
    scenario = get_scenario("sparse", density=density)
    h1, h2 = thin_widths(scenario.budget)
    thin = ThinLeNet5(h1, h2)
    rows.append({"density": density, "nonzero fc1+fc2 allowed": scenario.budget, "thin widths": f"{h1}/{h2}",
                 "thin parameters": parameter_count(thin), "thin FLOPs": forward_flops(thin),
                 "FLOPs vs LeNet-5": forward_flops(thin) / dense_flops})
sizes = pd.DataFrame(rows)
print(f"LeNet-5: {parameter_count(LeNet5())} parameters, {dense_flops} forward FLOPs per image")
print(sizes.to_string(index=False))
torch.manual_seed(0)
x = torch.randn(8, 1, 28, 28)
for density in thin_densities:
    model = LeNet5()
    with torch.no_grad():
        for w, m in zip(constrained_weights(model), neuron_masks(constrained_weights(model),
                                                                get_scenario("thin", density=density).budget)):
            w.masked_fill_(~m, 0)
    small = compact_model(model)
    assert torch.allclose(small(x), model(x), atol=1e-5)
    print(f"thin{density * 100:g}: compact network fc1 {small.fc1.out_features}, fc2 {small.fc2.out_features}, "
          f"{parameter_count(small)} parameters, same outputs")

# %%
# NBVAL_CHECK_OUTPUT
print(len(configs), "runs")
for c in configs[:6]:
    print(c.run_id)

# %%
frame = run_and_collect(configs, root=runs_dir)
frame["strategy"] = frame["run_id"].map(lambda r: labels[r][0])
frame["budget"] = frame["run_id"].map(lambda r: labels[r][1])
failed = frame[frame["status"] == "failed"]
assert failed.empty, failed[["run_id", "error"]].drop_duplicates().to_string()
assert within_budget(last_rows(frame)).all()

# %% [markdown]
# ## Final test accuracy against density
#
# The last record of every run (mean ± std over seeds). Every final record respects its budget
# (checked when the run was recorded, and again above).

# %%
final = last_rows(frame)
table = (final.groupby(["optimizer", "strategy", "budget"])
         .agg(test_acc_mean=("test_acc", "mean"), test_acc_std=("test_acc", "std"),
              test_loss_mean=("test_loss", "mean"), density=("density", "max"), seeds=("seed", "nunique"))
         .reset_index().sort_values(["optimizer", "strategy", "budget"], ascending=[True, True, False]))
table.pivot_table(index=["optimizer", "strategy"], columns="budget", values="test_acc_mean").round(2)

# %%
fig, axes = plt.subplots(1, len(optimizers), figsize=(5.5 * len(optimizers), 4), sharey=True, squeeze=False)
for ax, optimizer in zip(axes[0], optimizers):
    sub = final[(final["optimizer"] == optimizer) & (final["strategy"] != "dense")]
    sns.lineplot(data=sub, x="budget", y="test_acc", hue="strategy", palette=palette, marker="o",
                 errorbar="sd", ax=ax)
    dense = final[(final["optimizer"] == optimizer) & (final["strategy"] == "dense")]["test_acc"]
    if len(dense):
        ax.axhline(dense.mean(), color="grey", linestyle="--", linewidth=1, label="dense")
    ax.set_xscale("log")
    ax.set_xticks(sorted(final["budget"].unique()), [f"{d:.0%}" for d in sorted(final["budget"].unique())])
    ax.set_xlabel("allowed density of fc1+fc2 weights")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(optimizer)
    ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## Density during training
#
# The lines are the most nonzeros each strategy allows after each step (`pruning_schedule`, which
# the hook enforces): projection holds the budget from the first step, gradual pruning follows the
# cubic schedule, prune-then-fine-tune stays dense until its single pruning event. The markers are
# the densities recorded at the evaluations. Records above the budget occur only before a schedule
# ends; they are learning-curve points, not results of the sparse scenario (`within_budget` marks them).

# %%
sparse_densities = [d for d in densities if d < 1.0]
if sparse_densities:
    middle = min(sparse_densities, key=lambda d: abs(d - 0.1))
    probe = config(optimizers[0], middle, strategies[0], seeds[0])
    steps = total_steps(probe, len(data_for(probe).train))
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for strategy in strategies:
        schedule = pruning_schedule(strategy, N_CONSTRAINED_WEIGHTS, middle, steps)
        ax.plot([c / steps for c in range(steps + 1)],
                [schedule.allowed(c) / N_CONSTRAINED_WEIGHTS for c in range(steps + 1)],
                color=palette[strategy], label=strategy)
        runs = frame[(frame["budget"] == middle) & (frame["strategy"] == strategy)]
        ax.plot(runs["step"] / steps, runs["density"], "o", color=palette[strategy])
    ax.axhline(middle, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("share of the training steps")
    ax.set_ylabel("density of fc1+fc2 weights")
    ax.set_title(f"budget {middle:.0%}")
    ax.legend()
    fig.tight_layout()

# %% [markdown]
# ## What the records say

# %%
sparse = table[table["strategy"] != "dense"]
wins = {}
for optimizer in optimizers:
    rows = table[table["optimizer"] == optimizer]
    dense = rows[rows["strategy"] == "dense"]["test_acc_mean"]
    dense_acc = float(dense.iloc[0]) if len(dense) else float("nan")
    print(f"{optimizer}: dense {dense_acc:.2f}% test accuracy")
    for budget, group in sparse[sparse["optimizer"] == optimizer].groupby("budget", sort=False):
        ranked = group.sort_values("test_acc_mean", ascending=False)
        best = ranked.iloc[0]
        winner = "(tie)" if len(ranked) > 1 and ranked["test_acc_mean"].iloc[1] == best["test_acc_mean"] \
            else best["strategy"]
        print(f"  density {budget:.0%}: best {winner} {best['test_acc_mean']:.2f}% "
              f"({best['test_acc_mean'] - dense_acc:+.2f} points vs dense); "
              f"{'; '.join(f'{r.strategy} {r.test_acc_mean:.2f}%' for r in group.itertuples())}")
        wins[winner] = wins.get(winner, 0) + 1
print("best strategy over optimizer x density (ties counted apart):", wins)
print(f"({len(seeds)} seed(s), {epochs} epoch(s), {train_fraction:.0%} of the training images)")
