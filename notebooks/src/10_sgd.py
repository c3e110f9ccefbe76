# ---
# jupyter:
#   kernelspec:
#     display_name: Python (fmnist-optim)
#     language: python
#     name: fmnist-optim
# ---

# %% [markdown]
# # 10 · SGD: basic, mini-batch and full-batch gradient descent; batch sizes; learning-rate schedules
#
# One update rule, x <- x - lr (g + wd x), with three ways of forming the gradient g:
#
# - **basic SGD** (`sgd_basic`): one training image per step (Robbins & Monro 1951);
# - **mini-batch SGD** (`sgd`): the mean gradient over a batch of images;
# - **full-batch gradient descent** (`gd`): the gradient over the whole training set, one step per epoch.
#
# Cost is counted in oracle calls (sample gradients), so one epoch costs the same for every batch size;
# what differs is the number of steps and the wall time. Every member is tuned and trained by the
# study's protocol (`helpers/study/definition.py`, sizes printed below): the same runs, with the same
# run ids, as `make study` trains, so after the study this notebook only reads records; opened alone
# it trains what it asks for. In the standard scenario the study's batch-size rows (`study="batch_size"`:
# mini-batch SGD and heavy ball from batch 1 to the full training set, each size tuned by the same
# protocol, at a one-epoch budget and at the full budget) are shown too; `batch_sizes` and `schedules`
# add mini-batch SGD at other batch sizes or with other learning-rate schedules
# (`helpers/engine/schedules.py`), tuned the same way. `profile="full"` gives the report's numbers;
# the default `ci` runs in seconds.

# %% tags=["parameters"]
scenario = "standard"  # standard / l2 / sparse60 (the study's main scenarios) or another scenario
profile = "ci"  # the study's size (helpers/study/definition.py PROFILES): ci, quick, full
members: list = None  # None: the family's methods in the profile's study (if none, its first); or names
batch_sizes = []  # mini-batch SGD at these batch sizes too, each tuned by the protocol
schedules = []  # mini-batch SGD with these schedules too (constant, step, cosine, warmup_cosine, onecycle)
device = None  # None: CUDA when available, else CPU
runs_dir = None  # None: $FMNIST_RUNS_DIR, else the profile's folder (full: outputs/runs)

# %%
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm writes plain bars to stderr
import matplotlib.pyplot as plt
import pandas as pd

from helpers.engine.schedules import check_schedule
from helpers.evidence.family import (family_figures, family_finals, family_setup, members_table, print_conclusion,
                                     print_sizes, study_rows)
from helpers.evidence import side_studies as SS
from helpers.evidence.plots import metric_row
from helpers.study.protocol import run_family

fam = family_setup("sgd", scenario, profile, members, "", device, runs_dir,
                   parameters={"batch_sizes": batch_sizes, "schedules": schedules})
methods, sizes, root = fam.methods, fam.sizes, fam.root
batch_rows = [r for r in sizes.rows_in() if r.study == "batch_size" and r.scenario == scenario]
for s in schedules:
    check_schedule(s)

# %%
# NBVAL_CHECK_OUTPUT
print_sizes(fam)
print("the study's batch-size rows here:", ", ".join(r.name for r in batch_rows) or "none")
print("extra batch sizes of mini-batch SGD:", batch_sizes or "none", "| extra schedules:", schedules or "none")

# %% [markdown]
# ## Tuning on the hold-out, then the final runs
#
# Standard: a grid of rates (extended at an edge); l2: joint trials of rate and weight decay around the
# standard choice; sparse scenarios: a few rates around the standard choice. Every trial is as long as
# a final run and scored on the hold-out.

# %%
runs = {"members": run_family(methods, scenario, profile, root=root, progress=True)}
for b in batch_sizes:
    runs[f"batch {b}"] = run_family(["sgd"], scenario, profile, root=root, progress=True, batch_size=b)
for s in schedules:
    runs[f"schedule {s}"] = run_family(["sgd"], scenario, profile, root=root, progress=True, schedule=s)
frame, chosen, study = family_finals(runs, fam, scenario)
chosen if len(chosen) else "no final runs"

# %% [markdown]
# ## Training loss, test loss and test accuracy
#
# Mean over seeds with a ±1 std band: the members, then mini-batch SGD by batch size and by schedule.

# %%
figures = family_figures(frame[frame["part"] == "members"] if len(frame) else frame, "epoch")

# %%
for name, part in [("batch size", frame[frame["part"].str.startswith("batch")] if len(frame) else frame),
                   ("schedule", frame[frame["part"].str.startswith("schedule")] if len(frame) else frame)]:
    if len(part):
        members_sgd = frame[(frame["part"] == "members") & (frame["optimizer"] == "sgd")]
        metric_row(pd.concat([members_sgd, part]), suptitle=f"mini-batch SGD by {name} ({scenario})")

# %% [markdown]
# ## The study's batch sizes: final test accuracy and loss against the batch size
#
# Each batch size tuned by the protocol on its own (rate grid on the hold-out), then trained with the
# study's seeds; at a one-epoch budget and at the full budget (batch 64 at the full budget is the
# main row's run). Mean ± std over finished seeds.

# %%
batch = study_rows("batch_size", scenario, fam, main=study)
table = SS.batch_size_figures(batch)  # the report's figures, from this notebook's runs
print(table.to_string(index=False) if len(table) else
      "no batch-size rows in this profile's study for this scenario" if not batch_rows else "no runs yet")

# %% [markdown]
# ## The members: runs, accuracy and loss, cost
#
# Means and standard deviations over finished runs; diverged and failed runs are counted, not averaged.

# %%
results, table = members_table(frame)
table if len(table) else "no runs yet"

# %% [markdown]
# ## Conclusion (printed from the records)

# %%
print_conclusion(results, fam, scenario, "sgd", runs["members"].tuning)
if len(results) and "wall_s" in results:
    steps = frame.sort_values("epoch").groupby("method")["step"].last()
    for m in results.index:
        print(f"- {m}: {int(steps[m]):,} steps, {results.loc[m, 'wall_s']:.1f} s of training (mean over seeds)")
