# ---
# jupyter:
#   kernelspec:
#     display_name: Python (fmnist-optim)
#     language: python
#     name: fmnist-optim
# ---

# %% [markdown]
# # 30 · Noise reduction: variance-reduced gradients, growing batches, iterate averaging
#
# Mini-batch SGD steps along g_B(w), an unbiased but noisy estimate of the full gradient. The
# members of this family reduce that noise in different ways (`helpers/optimizers/`):
#
# - **SVRG** (Johnson & Zhang 2013): v = g_B(w) - g_B(w~) + grad f(w~), with a full-gradient snapshot
#   w~ every `snapshot_every` steps; two mini-batch gradients per step plus one full pass per snapshot.
# - **SARAH** (Nguyen et al. 2017): v_t = g_B(w_t) - g_B(w_{t-1}) + v_{t-1}, restarted from the
#   full gradient at each snapshot.
# - **SAGA** (Defazio et al. 2014), mini-batch: v = g_j(w) - table[j] + mean(table) over a fixed
#   partition into batches; one mini-batch gradient per step, a table of per-batch gradients.
# - **growing batches** (Byrd et al. 2012; Friedlander & Schmidt 2012): plain SGD with the batch
#   multiplied each epoch.
# - **iterate averaging** on heavy-ball SGD: Polyak-Ruppert (uniform), EMA, SWA; the model is
#   evaluated at the average (`run_share` in the registry: where in the run the average starts).
#
# Cost is counted in oracle calls (sample gradients, full passes included), so the snapshots show on
# the cost axis. Every member is tuned and trained by the study's protocol
# (`helpers/study/definition.py`, sizes printed below): the same runs, with the same run ids, as
# `make study` trains, so after the study this notebook only reads records; opened alone it trains
# what it asks for. The last part measures, at the same iterates, the error E||v - grad f||^2 of each
# estimator against plain SGD's (`helpers/evidence/variance.py`). `profile="full"` gives the report's
# numbers; the default `ci` runs in seconds.

# %% tags=["parameters"]
scenario = "standard"  # standard / l2 / sparse60 (the study's main scenarios) or another scenario
profile = "ci"  # the study's size (helpers/study/definition.py PROFILES): ci, quick, full
members: list = None  # None: the family's methods in the profile's study (if none, its first); or names
reference = "sgd"  # plain mini-batch SGD under the same protocol, for comparison ("" for none)
variance_samples = 128  # images in the variance measurement's subset
variance_batch = 64
variance_epochs = 1  # length of the measured trajectory (epochs over the subset)
variance_warmup_epochs = 0  # SGD epochs (on the profile's training images) before measuring again
device = None  # None: CUDA when available, else CPU
runs_dir = None  # None: $FMNIST_RUNS_DIR, else the profile's folder (full: outputs/runs)

# %%
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm writes plain bars to stderr
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from helpers.engine.train import train
from helpers.evidence.variance import estimator_variance
from helpers.evidence.family import family_figures, family_finals, family_setup, members_table, print_conclusion, print_sizes
from helpers.optimizers import get_spec
from helpers.study.protocol import base_config, run_family
from helpers.study.records import data_for

fam = family_setup("noise_reduction", scenario, profile, members, reference, device, runs_dir)
methods, sizes, root = fam.methods, fam.sizes, fam.root

# %%
# NBVAL_CHECK_OUTPUT
print_sizes(fam)
print("share of the run (averaging starts):", {m: get_spec(m).run_share for m in methods if get_spec(m).run_share})

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
# Mean over seeds with a ±1 std band, against epochs and against oracle calls (SVRG and SARAH pay for
# their snapshots and their two mini-batch gradients per step); variance-reduced gradients and
# iterate averaging in separate rows.

# %%
figures = family_figures(frame, "epoch", "oracle_evals")

# %% [markdown]
# ## Estimator error along the tuned trajectories (the study's measurements)
#
# The study's `variance` row (`helpers/study/definition.py` VARIANCE) measures, along each listed
# method's tuned final run, the exact error of its own direction and of plain mini-batch gradients at
# several batch sizes (`helpers/evidence/variance.py` `trajectory_variance`, stored beside the runs in
# `outputs/measurements`). Shown: the report's figure (relative error E||v - grad f||^2 / ||grad f||^2
# against the checkpoint, oracle calls / N, and against the batch size), then each estimator's error
# over the mini-batch gradient's at the same point, with the steps since its snapshot.

# %%
from helpers.evidence import side_studies as SS
from helpers.evidence.report_figures import variance_plot
from helpers.study.records import load_measurements

trajectories = load_measurements(root, kind="variance")
ratios = SS.variance_ratios(trajectories)
if len(trajectories):
    print("measured along the tuned runs of:", ", ".join(sorted(trajectories["run_id"].unique())))
    variance_plot(trajectories[trajectories["relative"].notna()])
    plt.show()
    print(ratios.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
else:
    print("no measurements of the study's variance row here: the quick measurement below stands in")

# %% [markdown]
# ## A quick measurement at the same iterates (where the study has none)
#
# Without the study's measurements (small profiles), one SGD trajectory on a subset of
# `variance_samples` training images, split into fixed batches of `variance_batch`; at every iterate
# all batch gradients are computed, so E||v - grad f||^2 over the batch drawn is exact. Measured from a
# fresh LeNet-5 and after `variance_warmup_epochs` SGD epochs on the profile's training images.
# Growing batches are scored at the batch size of their last epoch; the averaging methods step along
# the heavy-ball direction (`momentum`): what they average is the iterates.

# %%
ESTIMATOR = {"svrg": "svrg", "sarah": "sarah", "saga": "saga", "sgd_polyak": "momentum", "sgd_ema": "momentum",
             "sgd_swa": "momentum"}
if len(ratios):
    error_ratio = ratios.groupby("estimator")["ratio"].median()
    error_source = "the study's measurements, median over checkpoints"
else:
    data = data_for(base_config("sgd", scenario, epochs=1, train_fraction=sizes.train_fraction))
    grow = base_config("sgd_growing_batch", scenario, epochs=sizes.epochs, train_fraction=sizes.train_fraction)
    last_batch = grow.epoch_batch_sizes(len(data.train))[-1]
    ESTIMATOR["sgd_growing_batch"] = f"sgd_b{last_batch}"
    starts = {"fresh": None}
    if variance_warmup_epochs:
        warm = base_config("sgd", scenario, epochs=variance_warmup_epochs, train_fraction=sizes.train_fraction)
        starts[f"after {variance_warmup_epochs} SGD epoch(s)"] = train(warm, data, progress=False).model
    variance = pd.concat([estimator_variance(data.train, "sgd", {"lr": get_spec("sgd").defaults["lr"]},
                                             n_samples=variance_samples, batch_size=variance_batch,
                                             epochs=variance_epochs, larger_batches=(last_batch,), model=model)
                          .assign(start=start) for start, model in starts.items()], ignore_index=True)
    fig, axes = plt.subplots(1, len(starts), figsize=(5 * len(starts) + 1.5, 3.4), sharey=True, squeeze=False)
    for i, (ax, (start, part)) in enumerate(zip(axes[0], variance.groupby("start", sort=False))):
        sns.lineplot(data=part.dropna(subset=["relative"]), x="epoch", y="relative", hue="estimator", marker="o",
                     markersize=3, ax=ax, legend=i == len(starts) - 1)
        ax.set_yscale("log")
        ax.set_xlabel("epochs over the subset")
        ax.set_ylabel("E||v - grad f||² / ||grad f||²")
        ax.set_title(f"start: {start}", fontsize="medium")
    if ax.get_legend():
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), fontsize=7, frameon=False)
    fig.tight_layout()
    measured = variance[variance["start"] == list(starts)[-1]].dropna(subset=["relative"])
    median_error = measured.groupby("estimator")["relative"].median()
    error_ratio = (median_error / median_error["sgd"]).drop("sgd") if "sgd" in median_error else pd.Series(dtype=float)
    error_source = f"the quick measurement on {variance_samples} images, median over its iterates"
print(f"estimator error / the mini-batch gradient's ({error_source}):",
      ", ".join(f"{e} {v:.3g}x" for e, v in error_ratio.items()) or "none")

# %% [markdown]
# ## The members: runs, accuracy and loss, cost
#
# `estimator error`: the member's estimator's error over the mini-batch gradient's at the same iterates
# (above). Means and standard deviations over finished runs; diverged and failed runs are counted, not averaged.

# %%
results, table = members_table(frame)
if len(table):
    table["estimator error"] = [error_ratio.get(ESTIMATOR.get(m.split(" ")[0].split("+")[0], ""), float("nan"))
                                for m in table.index]
table if len(table) else "no runs yet"

# %% [markdown]
# ## Conclusion (printed from the records)

# %%
print_conclusion(results, fam, scenario, reference, run.tuning)
if len(error_ratio):
    print(f"- estimator error at the same iterates against the mini-batch gradient's ({error_source}): "
          + ", ".join(f"{e} {v:.3g}x" for e, v in error_ratio.items()))
