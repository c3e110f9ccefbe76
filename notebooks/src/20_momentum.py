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
#   learning rate (no schedule), all others with the study's cosine decay.
# - **Lookahead** (Zhang et al. 2019) around Adam and around Nesterov SGD: k fast steps, then the slow
#   weights move alpha of the way to the fast ones and the fast weights restart there.
#
# Every member gets the same tuning budget on the validation hold-out (`helpers/study/tuning.py`); the
# chosen configuration is re-trained with each seed and evaluated on the test set. Defaults are
# CI-sized; the real figures need `train_fraction=1.0, epochs=10, seeds=[0, 1]`.

# %% tags=["parameters"]
scenario = "standard"  # standard / l2 / sparse60 / ...
members = ["heavy_ball", "nesterov", "adam", "adamw", "nadam", "radam", "sgd_schedulefree",
           "adamw_schedulefree", "lookahead_adam", "lookahead_sgd"]
reference = "sgd"  # plain mini-batch SGD, trained the same way, for comparison ("" to skip)
epochs = 1
seeds = [0]
device = None  # None: CUDA when available, else CPU
train_fraction = 0.02  # share of the training images (1.0 for the real figures)
tune_budget = 2  # configurations tried per member on the validation hold-out
tune_epochs = 1
evals_per_epoch = 1
runs_dir = None  # None: outputs/runs (or $FMNIST_RUNS_DIR)

# %%
import pandas as pd

from helpers.notebook import prepare
from helpers.optimizers import get_spec
from helpers.evidence.plots import curve_grid
from helpers.study.protocol import run_family, schedule_for
from helpers.evidence.summary import final_table

methods = prepare(scenario, members, reference, device)
profile = dict(epochs=epochs, seeds=seeds, train_fraction=train_fraction, tune_budget=tune_budget,
               tune_epochs=tune_epochs, evals_per_epoch=evals_per_epoch)


# %% [markdown]
# ## The members as registered

# %%
# NBVAL_CHECK_OUTPUT
registry_table = pd.DataFrame([{"name": m, "family": get_spec(m).family, "schedule": schedule_for(m),
                                "defaults": get_spec(m).defaults, "tuned": sorted(get_spec(m).search_space)}
                               for m in methods])
print(registry_table.to_string(index=False))

# %% [markdown]
# ## Tuning on the validation hold-out, then the final runs
#
# `tune_budget` configurations per member (learning rates log-spaced over its range, other tuned
# hyperparameters drawn along a Latin-hypercube permutation), `tune_epochs` epochs each, scored on the
# 10,000-image hold-out; sparse scenarios reuse the standard scenario's choice.

# %%
tuning, finals, frame = run_family(methods, scenario, profile, root=runs_dir, progress=False)
failed = frame[frame["status"] == "failed"]
assert failed.empty, failed[["run_id", "error"]].drop_duplicates().to_string()

# %%
tuning[["member", "hparams", "val_acc", "val_loss", "diverged"]].sort_values(["member", "val_acc"])

# %%
# NBVAL_CHECK_OUTPUT
for run_id in sorted(tuning["run_id"]):  # the candidates derive from the configuration alone
    print(run_id)

# %%
for config in finals:  # these depend on which candidate won, i.e. on floating-point outcomes
    print(config.run_id)

# %% [markdown]
# ## Test accuracy and loss against epochs, sample-gradient evaluations and wall time
#
# Mean over seeds with a ±1 std band. Two panels each: the SGD-type members (with the reference)
# and the Adam-type ones.

# %%
SGD_LIKE = {"sgd", "heavy_ball", "nesterov", "sgd_schedulefree", "lookahead_sgd"}
groups = {"SGD-type": frame[frame["optimizer"].isin(SGD_LIKE)],
          "Adam-type": frame[~frame["optimizer"].isin(SGD_LIKE - {reference})]}
for name, part in groups.items():
    if len(part):
        curve_grid(part, y="test_acc", suptitle=f"{name}: test accuracy ({scenario})")

# %%
for name, part in groups.items():
    if len(part):
        curve_grid(part, y="test_loss", suptitle=f"{name}: test loss ({scenario})")

# %% [markdown]
# ## Final numbers (mean and std over seeds)

# %%
chosen = {c.optimizer: c.effective_hparams for c in finals}
results = final_table(frame, by=["optimizer"]).sort_values("test_acc_mean", ascending=False)
results["lr"] = [chosen[m]["lr"] for m in results.index]
results[["lr", "test_acc_mean", "test_acc_std", "test_loss_mean", "test_starter_loss_mean", "grad_evals",
         "wall_s", "seeds", "diverged"]]

# %% [markdown]
# ## Conclusion (computed from the records above)

# %%
def accuracy(value) -> str:
    return "diverged" if pd.isna(value) else f"{value:.2f}%"


best = results.index[0]
print(f"scenario {scenario}, {epochs} epoch(s) on {train_fraction:.0%} of the training images, "
      f"{len(seeds)} seed(s):")
print(f"- best member by final test accuracy: {best} with {accuracy(results.loc[best, 'test_acc_mean'])} "
      f"(lr {results.loc[best, 'lr']:.4g})"
      + (f"; reference {reference}: {accuracy(results.loc[reference, 'test_acc_mean'])}" if reference else ""))
for member in results.index:
    row = results.loc[member]
    spread = f"std {row['test_acc_std']:.2f} over {int(row['seeds'])} seeds" if row["seeds"] > 1 else "1 seed"
    print(f"- {member}: {accuracy(row['test_acc_mean'])} ({spread}), test loss {row['test_loss_mean']:.4f}, "
          f"{row['wall_s']:.1f} s training")
pairs = [("adamw_schedulefree", "adamw"), ("sgd_schedulefree", "heavy_ball"), ("lookahead_adam", "adam"),
         ("lookahead_sgd", "nesterov")]
for a, b in pairs:
    if a in results.index and b in results.index:
        print(f"- {a} vs {b}: {results.loc[a, 'test_acc_mean'] - results.loc[b, 'test_acc_mean']:+.2f} "
              f"percentage points")
