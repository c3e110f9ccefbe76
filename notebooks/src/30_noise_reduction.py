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
# - **SVRG** (Johnson & Zhang 2013): v = g_B(w) - g_B(w~) + grad f(w~), a full-gradient snapshot
#   w~ at each epoch start; two mini-batch gradients per step plus one full pass per epoch.
# - **SARAH** (Nguyen et al. 2017): v_t = g_B(w_t) - g_B(w_{t-1}) + v_{t-1}, restarted from the
#   full gradient at each epoch start.
# - **SAGA** (Defazio et al. 2014), mini-batch: v = g_j(w) - table[j] + mean(table) over a fixed
#   partition into batches; one mini-batch gradient per step, a table of per-batch gradients.
# - **growing batches** (Byrd et al. 2012; Friedlander & Schmidt 2012): plain SGD with the batch
#   multiplied by 1.5 each epoch from 32.
# - **iterate averaging** on heavy-ball SGD: Polyak-Ruppert (uniform), EMA, SWA; the model is
#   evaluated at the average. Polyak averages from half the run on, SWA from three quarters
#   (`run_share` in the registry), in tuning runs as in final ones.
#
# All costs are counted in sample-gradient evaluations (`grad_evals`, full passes included), so
# SVRG's and SARAH's snapshots show on the cost axis. The second part measures, at the same
# iterates, the error E||v - grad f||^2 of each estimator against plain SGD's (`helpers/evidence/variance.py`).
# Defaults are CI-sized; the real figures need `train_fraction=1.0, epochs=10, seeds=[0, 1]`.

# %% tags=["parameters"]
scenario = "standard"  # standard / l2 / sparse60 / ...
members = ["svrg", "sarah", "saga", "sgd_growing_batch", "sgd_polyak", "sgd_ema", "sgd_swa"]
reference = "sgd"  # plain mini-batch SGD, trained the same way, for comparison ("" to skip)
epochs = 1
seeds = [0]
device = None  # None: CUDA when available, else CPU
train_fraction = 0.02  # share of the training images (1.0 for the real figures)
tune_budget = 2  # configurations tried per member on the validation hold-out
tune_epochs = 1
evals_per_epoch = 1
variance_samples = 256  # images in the variance measurement's subset
variance_batch = 64
variance_epochs = 2  # length of the measured trajectory (epochs over the subset)
variance_warmup_epochs = 1  # SGD epochs (on the training share) before measuring again
runs_dir = None  # None: outputs/runs (or $FMNIST_RUNS_DIR)

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from helpers.notebook import prepare
from helpers.optimizers import get_spec
from helpers.evidence.plots import curve_grid
from helpers.study.records import data_for
from helpers.study.protocol import base_config, run_family
from helpers.evidence.summary import final_table, last_rows
from helpers.engine.train import train
from helpers.evidence.variance import estimator_variance

methods = prepare(scenario, members, reference, device)
profile = dict(epochs=epochs, seeds=seeds, train_fraction=train_fraction, tune_budget=tune_budget,
               tune_epochs=tune_epochs, evals_per_epoch=evals_per_epoch)


# %% [markdown]
# ## The members as registered

# %%
# NBVAL_CHECK_OUTPUT
registry_table = pd.DataFrame([{"name": m, "family": get_spec(m).family, "defaults": get_spec(m).defaults,
                                "batch": get_spec(m).batch_size or 64, "growth": get_spec(m).batch_growth or 1,
                                "tuned": sorted(get_spec(m).search_space),
                                "share of the run": get_spec(m).run_share or ""} for m in methods])
print(registry_table.to_string(index=False))

# %% [markdown]
# ## Tuning on the validation hold-out, then the final runs
#
# Each member gets `tune_budget` configurations (helpers/study/tuning.py: learning rates log-spaced over
# its range), trained for `tune_epochs` epochs and scored on the 10,000-image hold-out; sparse
# scenarios reuse the standard scenario's choice. The chosen one is re-trained on the training
# share with every seed and evaluated on the test set.

# %%
tuning, finals, frame = run_family(methods, scenario, profile, root=runs_dir, progress=False)
failed = frame[frame["status"] == "failed"]
assert failed.empty, failed[["run_id", "error"]].drop_duplicates().to_string()

# %%
tuning[["member", "hparams", "val_acc", "val_loss", "diverged"]].sort_values(["member", "val_acc"])

# %%
# the final run ids depend on which candidate won the tuning
for config in finals:
    print(config.run_id)

# %% [markdown]
# ## Test accuracy and loss against epochs, sample-gradient evaluations and wall time
#
# Mean over seeds with a ±1 std band. On the middle axis SVRG and SARAH pay for their full-gradient
# snapshots and their two mini-batch gradients per step.

# %%
fig = curve_grid(frame, y="test_acc", suptitle=f"test accuracy ({scenario})")

# %%
fig = curve_grid(frame, y="test_loss", suptitle=f"test loss ({scenario})")

# %% [markdown]
# ## Estimator error at the same iterates
#
# One SGD trajectory on a subset of `variance_samples` training images, split into fixed batches of
# `variance_batch`; at every iterate all batch gradients are computed, so E||v - grad f||^2 over the
# batch drawn is exact. Measured twice: from a fresh LeNet-5, and after `variance_warmup_epochs` SGD
# epochs on the training share. `relative` = E||v - grad f||^2 / ||grad f||^2. Growing batches are
# scored at the batch size of their last epoch; the averaging methods step along the heavy-ball
# direction (`momentum`), what they average is the iterates.

# %%
data = data_for(base_config(reference or "sgd", scenario, epochs=1, train_fraction=train_fraction))
grow_config = base_config("sgd_growing_batch", scenario, epochs=epochs, train_fraction=train_fraction)
last_batch = grow_config.epoch_batch_sizes(len(data.train))[-1]
starts = {"fresh": None}
if variance_warmup_epochs:
    warm = base_config("sgd", scenario, epochs=variance_warmup_epochs, train_fraction=train_fraction)
    starts[f"after {variance_warmup_epochs} SGD epoch(s)"] = train(warm, data, progress=False).model
variance = pd.concat([estimator_variance(data.train, "sgd", {"lr": get_spec("sgd").defaults["lr"]},
                                         n_samples=variance_samples, batch_size=variance_batch,
                                         epochs=variance_epochs, larger_batches=(last_batch,), model=model)
                      .assign(start=start) for start, model in starts.items()], ignore_index=True)
ESTIMATOR = {"sgd": "sgd", "svrg": "svrg", "sarah": "sarah", "saga": "saga",
             "sgd_growing_batch": f"sgd_b{last_batch}", "sgd_polyak": "momentum", "sgd_ema": "momentum",
             "sgd_swa": "momentum"}

# %%
fig, axes = plt.subplots(1, len(starts), figsize=(6 * len(starts), 4), sharey=True, squeeze=False)
for ax, (start, part) in zip(axes[0], variance.groupby("start", sort=False)):
    sns.lineplot(data=part.dropna(subset=["relative"]), x="epoch", y="relative", hue="estimator", marker="o",
                 markersize=3, ax=ax)
    ax.set_yscale("log")
    ax.set_xlabel("epochs over the subset (snapshots at whole epochs)")
    ax.set_ylabel("E||v - grad f||² / ||grad f||²")
    ax.set_title(f"start: {start}")
fig.tight_layout()

# %% [markdown]
# ## Estimator error beside accuracy
#
# Median relative error over the measured iterates (after warm-up when measured), next to each
# member's final test accuracy and cost (mean over seeds).

# %%
measured = variance[variance["start"] == list(starts)[-1]].dropna(subset=["relative"])
median_error = measured.groupby("estimator")["relative"].median()
results = final_table(frame, by=["optimizer"])
results["estimator"] = [ESTIMATOR.get(m, "") for m in results.index]
results["relative_error"] = results["estimator"].map(median_error)
results["grad_evals_per_epoch"] = results["grad_evals"] / results["epoch"]
summary = results[["estimator", "relative_error", "test_acc_mean", "test_acc_std", "test_loss_mean",
                   "grad_evals_per_epoch", "wall_s", "diverged"]].sort_values("test_acc_mean", ascending=False)
summary

# %%
fig, ax = plt.subplots(figsize=(6, 4))
sns.scatterplot(data=summary.reset_index(), x="relative_error", y="test_acc_mean", hue="optimizer", s=60, ax=ax)
ax.set_xscale("log")
ax.set_xlabel("median E||v - grad f||² / ||grad f||² of its estimator")
ax.set_ylabel("final test accuracy (%)")
fig.tight_layout()

# %% [markdown]
# ## Conclusion (computed from the records above)

# %%
last = last_rows(frame)
best = summary.index[0]
print(f"scenario {scenario}, {epochs} epoch(s) on {train_fraction:.0%} of the training images, "
      f"{len(seeds)} seed(s):")
print(f"- best member by final test accuracy: {best} with {summary.loc[best, 'test_acc_mean']:.2f}%"
      + (f" (reference {reference}: {summary.loc[reference, 'test_acc_mean']:.2f}%)" if reference else ""))
for member in summary.index:
    row = summary.loc[member]
    print(f"- {member}: {row['test_acc_mean']:.2f}% test accuracy, {row['grad_evals_per_epoch']:,.0f} sample "
          f"gradients per epoch, estimator '{row['estimator']}' at {row['relative_error']:.3g} relative error")
if "sgd" in median_error and "svrg" in median_error:
    print(f"- at the same iterates, SVRG's estimator error is {median_error['svrg'] / median_error['sgd']:.3g}x "
          f"SGD's, SARAH's {median_error['sarah'] / median_error['sgd']:.3g}x, SAGA's "
          f"{median_error['saga'] / median_error['sgd']:.3g}x (median over the measured iterates)")
