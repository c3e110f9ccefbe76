# ---
# jupyter:
#   kernelspec:
#     display_name: Python (fmnist-optim)
#     language: python
#     name: fmnist-optim
# ---

# %% [markdown]
# # 00 · The starter baseline and the study's best tuned method
#
# The assignment's starter script trains LeNet-5 with plain mini-batch SGD (lr 1e-3, batch 64, pixels
# in [0, 1], constant rate) and quotes its test accuracy; it calls 89.38% "easily achievable in 10
# epochs". This notebook trains the starter as the study defines it (the `starter` row of
# `helpers/study/definition.py`, at the profile's size) and sets beside it the study's best method in
# the standard scenario, chosen on the hold-out (never on the test set) from the records, when the
# study's standard runs exist. `profile="full"` gives the report's numbers; the default `ci` runs in
# seconds.

# %% tags=["parameters"]
profile = "ci"  # the study's size (helpers/study/definition.py PROFILES): ci, quick, full
target_acc = 89.38  # the assignment's "easily achievable in 10 epochs"
device = None  # None: CUDA when available, else CPU
runs_dir = None  # None: $FMNIST_RUNS_DIR, else the profile's folder (full: outputs/runs)

# %%
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm writes plain bars to stderr
import os

import matplotlib.pyplot as plt
import pandas as pd

from helpers.evidence import side_studies as SS
from helpers.evidence.plots import metric_row
from helpers.evidence.summary import final_table
from helpers.problem.model import LeNet5, constrained_weights, count_parameters
from helpers.study.definition import get_profile
from helpers.study.experiment import records_of
from helpers.study.protocol import execute, study_plan
from helpers.study.sweep import study_runs_dir

if device:
    os.environ["FMNIST_DEVICE"] = device
pd.set_option("display.width", 160, "display.max_columns", 20, "display.precision", 4)
sizes = get_profile(profile)
root = study_runs_dir(profile, runs_dir)
starter_row = next(r for r in sizes.rows_in() if r.name == "starter")
FINAL_STAGES = ("fixed", "final", "seeds")

# %%
# NBVAL_CHECK_OUTPUT
model = LeNet5()
print("LeNet-5 parameters:", count_parameters(model))
print("fc1 + fc2 weights:", " + ".join(str(w.numel()) for w in constrained_weights(model)))
print(f"starter row: {starter_row.overrides}, {min(starter_row.seeds, sizes.max_seeds or starter_row.seeds)} "
      f"seed(s), {sizes.epochs} epoch(s) on {sizes.train_fraction:.0%} of the training images (profile {profile})")

# %%
state = execute(profile, None, root, progress=True, rows=[starter_row])
starter = [r.config for r in state.done if r.row == "starter" and r.stage in FINAL_STAGES]
print("starter runs:", ", ".join(c.run_id for c in starter))

# %% [markdown]
# ## The study's best method in the standard scenario
#
# The method whose tuned choice scores best on the hold-out (accuracy, then loss), with its final runs,
# read from the records; none until the study's standard runs exist.

# %%
study = study_plan(None, profile, root)
scores = {method: choice.score for (row, method, _), choice in study.choices.items()
          if row == "standard" and choice is not None and choice.score is not None}
best = max(scores, key=scores.get) if scores else None
tuned = [r.config for r in study.done if r.row == "standard" and r.method == best and r.stage in ("final", "seeds")]
frame = records_of(starter + tuned, root)
if len(frame):
    frame["recipe"] = ["starter" if tag == "starter" else f"{opt} (tuned)" for tag, opt in zip(frame["tag"], frame["optimizer"])]
print(f"best on the hold-out: {best}" if tuned else "no tuned runs yet: the study's standard row has no final runs here")

# %%
if len(frame):
    fig = metric_row(frame, hue="recipe", target=target_acc)

# %% [markdown]
# Every seed of the starter's recipe (its spread is the point: the report quotes each seed's accuracy
# and points here for the curves).

# %%
seeds = SS.starter_runs(frame) if len(frame) else frame
if len(seeds):
    SS.starter_plot(seeds)
    plt.show()

# %% [markdown]
# Final test figures per recipe (mean ± std over seeds). `test_loss` is the mean cross-entropy per
# image; `test_starter_loss` is the starter script's printed "Average loss" (the sum of batch-64 mean
# losses / 10,000).

# %%
table = final_table(frame, by=["recipe"]) if len(frame) else pd.DataFrame()
table[["finished", "diverged", "failed", "test_acc_mean", "test_acc_std", "test_loss_mean", "test_starter_loss_mean",
       "oracle_evals", "wall_s"]] if len(table) else "no runs yet"

# %%
for recipe, row in table.iterrows():
    spread = f" ± {row['test_acc_std']:.2f}" if row["seeds"] > 1 else ""
    print(f"{recipe}: {row['test_acc_mean']:.2f}%{spread} test accuracy over {int(row['seeds'])} seed(s) "
          f"(loss {row['test_loss_mean']:.4f}, the starter's figure {row['test_starter_loss_mean']:.5f}), "
          f"{row['epoch']:.0f} epoch(s) on {sizes.train_fraction:.0%} of the training images")
    print(f"  against the assignment's {target_acc}%: {row['test_acc_mean'] - target_acc:+.2f} points")
if table.empty:
    print("no runs yet")
