# ---
# jupyter:
#   kernelspec:
#     display_name: Python (fmnist-optim)
#     language: python
#     name: fmnist-optim
# ---

# %% [markdown]
# # 40 · Second-order methods: L-BFGS, Hessian-free Newton-CG, K-FAC, Shampoo, AdaHessian
#
# Methods that use curvature, each in `helpers/optimizers/` with its update rule in the docstring:
#
# - **L-BFGS** (`lbfgs`: large random batches of 4096; `lbfgs_full`: all training images, one
#   step of up to `max_iter` iterations per epoch): torch.optim.LBFGS with a strong-Wolfe line search
#   (Nocedal & Wright, Alg. 7.4), L2 inside the line-searched objective;
# - **Hessian-free Newton-CG** (`newton_cg`, batch 512; Martens 2010): truncated CG on
#   (B + λI) d = -g with Gauss-Newton products B v = Jᵀ H_L J v (autograd, no matrix formed),
#   Levenberg-Marquardt adaptation of λ and rejection of steps that raise the batch loss;
# - **K-FAC** (`kfac`, batch 128; Martens & Grosse 2015, Grosse & Martens 2016 for convolutions):
#   the Fisher block of each Linear/Conv2d layer approximated by A ⊗ G (activation and output-gradient
#   covariances, targets sampled from the model), factored Tikhonov damping, KL clipping, momentum;
# - **Shampoo** (`shampoo`, batch 128; Gupta et al. 2018): L^{-1/4} G R^{-1/4} per layer, step length
#   grafted from Adam's second moment, momentum;
# - **AdaHessian** (`adahessian`, batch 128; Yao et al. 2021): Adam with a Hutchinson estimate of
#   the Hessian diagonal (one Hessian-vector product per step) in place of the squared gradient.
#
# Cost is counted as oracle calls: sample-gradient evaluations (`grad_evals`, with K-FAC's
# sampled-target pass and the line searches' extra evaluations) plus Hessian/Gauss-Newton-vector
# products in samples (`hvp_evals`); `oracle_evals` is their sum. A first-order `reference` runs
# beside them under the same protocol. Defaults are CI-sized; the real figures need
# `train_fraction=1.0, epochs=10, seeds=[0, 1]`.

# %% tags=["parameters"]
scenario = "standard"  # standard / l2 / sparse60 / ...
members = ["lbfgs", "lbfgs_full", "newton_cg", "kfac", "shampoo", "adahessian"]
reference = "adam"  # a first-order method under the same protocol ("" for none)
epochs = 1
seeds = [0]
device = None  # None: CUDA when available, else CPU
train_fraction = 0.02  # share of the training images (1.0 for the real figures)
tune_budget = 2  # configurations tried per method on the validation hold-out
tune_epochs = 1
evals_per_epoch = 1
runs_dir = None  # None: outputs/runs (or $FMNIST_RUNS_DIR)

# %%
import json

import pandas as pd

from helpers.notebook import prepare
from helpers.optimizers import get_spec
from helpers.evidence.plots import curve_grid
from helpers.study.protocol import run_family
from helpers.evidence.summary import final_table, last_rows
from helpers.study.tuning import search_space

methods = prepare(scenario, members, reference, device)
profile = dict(epochs=epochs, seeds=seeds, train_fraction=train_fraction, tune_budget=tune_budget,
               tune_epochs=tune_epochs, evals_per_epoch=evals_per_epoch)


# %% [markdown]
# ## The members as registered

# %%
# NBVAL_CHECK_OUTPUT
registry_table = pd.DataFrame([{"name": m, "family": get_spec(m).family, "batch": get_spec(m).batch_size or 64,
                                "tuned": sorted(get_spec(m).search_space), "description": get_spec(m).description}
                               for m in methods])
print(registry_table.to_string(index=False, max_colwidth=70))

# %% [markdown]
# ## Tuning on the validation hold-out, then the final runs
#
# Each method gets `tune_budget` configurations (helpers/study/tuning.py: learning rates log-spaced over
# its range, other tuned values on a Latin-hypercube permutation), trained for `tune_epochs` epochs
# and scored on the 10,000-image hold-out; sparse scenarios reuse the standard scenario's choice.
# The chosen configuration is re-trained on the training share with every seed and evaluated on the
# test set.

# %%
tuning, finals, frame = run_family(methods, scenario, profile, root=runs_dir, progress=False)
failed = frame[frame["status"] == "failed"]
assert failed.empty, failed[["run_id", "error"]].drop_duplicates().to_string()

# %%
tuning["tried"] = [{k: v for k, v in json.loads(h).items() if k in search_space(m, scenario)}
                   for m, h in zip(tuning["member"], tuning["hparams"])]
tuning[["member", "tried", "val_acc", "val_loss", "diverged"]].sort_values(["member", "val_acc"])

# %%
# the final run ids depend on which candidate won the tuning
for config in finals:
    print(config.run_id)

# %% [markdown]
# ## Test accuracy and loss against epochs, oracle calls and wall time
#
# Mean over seeds with a ±1 std band. The middle axis charges each method for everything it
# evaluated: line-search evaluations (L-BFGS), the Levenberg-Marquardt check and the curvature
# products (Newton-CG), the sampled-target pass (K-FAC), the Hessian-vector product (AdaHessian).

# %%
fig = curve_grid(frame, y="test_acc", xs=("epoch", "oracle_evals", "wall_s"),
                 suptitle=f"test accuracy ({scenario})")

# %%
fig = curve_grid(frame, y="test_loss", xs=("epoch", "oracle_evals", "wall_s"),
                 suptitle=f"test loss ({scenario})")

# %% [markdown]
# ## Cost per epoch
#
# Oracle calls per epoch in samples (an epoch of plain mini-batch SGD costs one per training image)
# and training wall time per epoch (evaluation excluded), mean over seeds.

# %%
last = last_rows(frame)
per_epoch = last.assign(**{f"{k}_per_epoch": last[k] / last["epoch"]
                           for k in ("grad_evals", "hvp_evals", "oracle_evals", "wall_s")})
cost = per_epoch.groupby("optimizer")[["grad_evals_per_epoch", "hvp_evals_per_epoch", "oracle_evals_per_epoch",
                                       "wall_s_per_epoch"]].mean()
results = final_table(frame, by=["optimizer"]).join(cost)
summary = results[["test_acc_mean", "test_acc_std", "test_loss_mean", "grad_evals_per_epoch",
                   "hvp_evals_per_epoch", "oracle_evals_per_epoch", "wall_s_per_epoch", "diverged"]]
summary = summary.sort_values("test_acc_mean", ascending=False)
summary

# %% [markdown]
# ## Conclusion (computed from the records above)

# %%
best = summary.index[0]
second_order = [m for m in summary.index if get_spec(m).family == "second_order"]
best_second = second_order[0] if second_order else None
cheapest = summary["oracle_evals_per_epoch"].idxmin()
print(f"scenario {scenario}, {epochs} epoch(s) on {train_fraction:.0%} of the training images, "
      f"{len(seeds)} seed(s), tuning budget {tune_budget}:")
print(f"- best by final test accuracy: {best} with {summary.loc[best, 'test_acc_mean']:.2f}%")
if best_second and reference:
    gap = summary.loc[best_second, "test_acc_mean"] - summary.loc[reference, "test_acc_mean"]
    print(f"- best second-order member: {best_second} ({summary.loc[best_second, 'test_acc_mean']:.2f}%), "
          f"{gap:+.2f} points against the first-order reference {reference}")
for member in summary.index:
    row = summary.loc[member]
    ratio = row["oracle_evals_per_epoch"] / summary.loc[cheapest, "oracle_evals_per_epoch"]
    print(f"- {member}: {row['test_acc_mean']:.2f}% test accuracy; per epoch {row['grad_evals_per_epoch']:,.0f} "
          f"sample gradients + {row['hvp_evals_per_epoch']:,.0f} curvature products = {ratio:.2f}x the "
          f"cheapest ({cheapest}), {row['wall_s_per_epoch']:.2f} s of training")
