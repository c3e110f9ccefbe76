# ---
# jupyter:
#   kernelspec:
#     display_name: Python (fmnist-optim)
#     language: python
#     name: fmnist-optim
# ---

# %% [markdown]
# # 20 · Momentum: heavy ball, Nesterov, Adam and its variants, schedule-free, Lookahead
#
# All members step along some average of past gradients (`helpers/optimizers/`):
#
# - **heavy ball** (Polyak 1964): v <- mu v + g; x <- x - lr v.
# - **Nesterov** (Nesterov 1983; Sutskever et al. 2013): v <- mu v + g; x <- x - lr (g + mu v).
# - **Adam** (Kingma & Ba 2015) with L2 in the gradient; **AdamW** (Loshchilov & Hutter 2019) with
#   decoupled weight decay; **NAdam** (Dozat 2016): Adam with a Nesterov look-ahead in the first
#   moment; **RAdam** (Liu et al. 2020): Adam whose adaptive step is switched on as the variance of
#   the second-moment estimate allows.
# - **schedule-free SGD and AdamW** (Defazio et al. 2024): gradients at y = (1-beta) z + beta x, the
#   base step on z, x a weighted running average of z; the model evaluated is x. They run at a constant
#   learning rate, all others with the study's decay.
# - **Lookahead** (Zhang et al. 2019) around Adam and around Nesterov SGD: k fast steps, then the slow
#   weights move alpha of the way to the fast ones and the fast weights restart there.
#
# Every member is tuned and trained by the study's protocol (`helpers/study/definition.py`, sizes
# printed below): the same runs, with the same run ids, as `make study` trains, so after the study
# this notebook only reads records; opened alone it trains what it asks for. `profile="full"` gives
# the report's numbers; the default `ci` runs in seconds.

# %% tags=["parameters"]
scenario = "standard"  # standard / l2 / sparse60 (the study's main scenarios) or another scenario
profile = "ci"  # the study's size (helpers/study/definition.py PROFILES): ci, quick, full
members: list = None  # None: the family's methods in the profile's study (if none, its first); or names
reference = "sgd"  # plain mini-batch SGD under the same protocol, for comparison ("" for none)
device = None  # None: CUDA when available, else CPU
runs_dir = None  # None: $FMNIST_RUNS_DIR, else the profile's folder (full: outputs/runs)

# %%
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm writes plain bars to stderr
import matplotlib.pyplot as plt

from helpers.evidence import side_studies as SS
from helpers.evidence.family import (compare, family_figures, family_finals, family_setup, members_table,
                                     print_conclusion, print_sizes, study_rows)
from helpers.study.protocol import run_family

fam = family_setup("momentum", scenario, profile, members, reference, device, runs_dir)
methods, sizes, root = fam.methods, fam.sizes, fam.root

# %%
# NBVAL_CHECK_OUTPUT
print_sizes(fam)

# %% [markdown]
# ## Tuning on the hold-out, then the final runs
#
# Standard: a grid of rates, then quasi-random trials of each member's key hyperparameters at the best
# rate; l2: joint trials of rate and weight decay around the standard choice; sparse scenarios: a few
# rates around the standard choice. Every trial is as long as a final run and scored on the hold-out.

# %%
run = run_family(methods, scenario, profile, root=root, progress=True)
frame, chosen, study = family_finals(run, fam, scenario)
chosen if len(chosen) else "no final runs"

# %% [markdown]
# ## Training loss, test loss and test accuracy
#
# Mean over seeds with a ±1 std band; SGD-type and Adam-type members in separate rows.

# %%
figures = family_figures(frame, "epoch")

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
print_conclusion(results, fam, scenario, reference, run.tuning)
pairs = [("adamw_schedulefree", "adamw"), ("sgd_schedulefree", "heavy_ball"), ("lookahead_adam", "adam"),
         ("lookahead_sgd", "nesterov")]
for a, b in pairs:
    if a in results.index and b in results.index:
        print(f"- {a} vs {b}: {compare(results, a, b)}")

# %% [markdown]
# ## The weight-decay study (l2): coupled L2 against decoupled decay
#
# At the standard row's tuned rates, Adam and heavy ball with coupled L2 (added to the gradient) and
# AdamW with decoupled decay, each over the range where its kind acts: the report's figure, from the
# study's rows (`helpers/study/definition.py`, study "weight_decay"; only in the l2 scenario). The
# bottom row puts both kinds on one axis: the peak rate x decay, the fraction one step takes off the
# weights.

# %%
decay = SS.weight_decay_results(study_rows("weight_decay", scenario, fam))
if len(decay) and decay["weight_decay"].nunique() > 1:
    SS.weight_decay_plot(decay)
    plt.show()
decay if len(decay) else "no weight-decay rows in this profile's study for this scenario"
