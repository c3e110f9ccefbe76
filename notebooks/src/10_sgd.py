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
# - **mini-batch SGD** (`sgd`): the mean gradient over a batch of B images, here B = 64 and a sweep
#   of batch sizes in which each size's learning rate is first scaled by the linear scaling rule
#   lr_B = lr_64 * B / 64 (Goyal et al. 2017) and then tuned around that value;
# - **full-batch gradient descent** (`gd`): the gradient over the whole training set, one step per epoch.
#
# Then the learning-rate schedules of `helpers/engine/schedules.py` on mini-batch SGD: constant, step
# (x0.1 at 50% and 75% of the run), cosine, linear warm-up + cosine, and one-cycle. Every method
# gets the same tuning budget on the validation hold-out (`helpers/study/tuning.py`) before its final
# runs. Cost is counted in sample-gradient evaluations (`grad_evals`), so one epoch costs the same
# for every batch size; what differs is the number of steps and the wall time.
# Defaults are CI-sized; the real figures need `train_fraction=1.0, epochs=10, seeds=[0, 1]`.

# %% tags=["parameters"]
scenario = "standard"  # standard / l2 / sparse60 / ...
members = ["sgd_basic", "sgd", "gd"]
batch_sizes = [16, 64, 256, 1024]  # mini-batch SGD sweep (64 is the members' run, reused)
schedules = ["constant", "step", "cosine", "warmup_cosine", "onecycle"]  # on mini-batch SGD, batch 64
epochs = 1
seeds = [0]
device = None  # None: CUDA when available, else CPU
train_fraction = 0.02  # share of the training images (1.0 for the real figures)
tune_budget = 2  # configurations tried per method on the validation hold-out
tune_epochs = 1
evals_per_epoch = 1
runs_dir = None  # None: outputs/runs (or $FMNIST_RUNS_DIR)

# %%
import dataclasses
import json

import numpy as np
import pandas as pd

from helpers.study.experiment import records_of, run_all
from helpers.notebook import prepare
from helpers.optimizers import get_spec
from helpers.evidence.plots import curve_grid
from helpers.engine.schedules import check_schedule
from helpers.study.protocol import base_config, scenario_hparams, tuned_hparams, tuning_scenario
from helpers.evidence.summary import final_table
from helpers.study.tuning import best_of, final_configs, tuning_configs

prepare(scenario, members, device=device)
for s in schedules:
    check_schedule(s)
REFERENCE_BATCH = 64
tune_scenario = tuning_scenario(scenario)


def final_runs(optimizer: str, hparams: dict, **overrides):
    base = base_config(optimizer, scenario, epochs=epochs, train_fraction=train_fraction,
                       evals_per_epoch=evals_per_epoch, **overrides)
    return final_configs(base, scenario_hparams(hparams, scenario), seeds)


# %% [markdown]
# ## The members as registered

# %%
# NBVAL_CHECK_OUTPUT
registry_table = pd.DataFrame([{"name": m, "defaults": get_spec(m).defaults, "batch": get_spec(m).batch_size or 64,
                                "tuned": get_spec(m).search_space, "rule": get_spec(m).description}
                               for m in members])
print(registry_table.to_string(index=False))

# %% [markdown]
# ## 1 · Basic, mini-batch and full-batch
#
# Each member: `tune_budget` learning rates log-spaced over its range, `tune_epochs` epochs, scored on
# the 10,000-image hold-out (sparse scenarios reuse the standard scenario's choice); the best is
# re-trained with every seed and evaluated on the test set. Schedules as in the study (`helpers/study/protocol.py`):
# cosine decay, except constant for full-batch GD.

# %%
tuning, finals, chosen = [], {}, {}
for member in members:
    table, best = tuned_hparams(member, scenario, tune_budget, tune_epochs, train_fraction, root=runs_dir,
                                progress=False)
    tuning.append(table.assign(part="members", method=member))
    chosen[member] = best
    finals[member] = final_runs(member, best)

# %% [markdown]
# ## 2 · Batch sizes: learning rate scaled, then tuned
#
# For batch size B the candidates are lr_64 * B / 64 times factors log-spaced over [1/4, 4], where
# lr_64 is the rate tuned for mini-batch SGD at batch 64 above (or its default when `sgd` is not a
# member); any other tuned hyperparameter (weight decay under l2) is drawn as in `helpers/study/tuning.py`.

# %%
lr_64 = chosen.get("sgd", get_spec("sgd").defaults)["lr"]
factors = np.geomspace(0.25, 4.0, tune_budget) if tune_budget > 1 else np.array([1.0])
batch_finals = {}
for b in batch_sizes:
    if b == REFERENCE_BATCH and "sgd" in chosen:
        batch_finals[b] = finals["sgd"]
        continue
    base = base_config("sgd", tune_scenario, epochs=tune_epochs, train_fraction=train_fraction, batch_size=b)
    candidates = [dataclasses.replace(c, hparams={**c.hparams, "lr": float(f"{lr_64 * b / REFERENCE_BATCH * f:.4g}")})
                  for c, f in zip(tuning_configs(base, tune_budget), factors)]
    run_all(candidates, root=runs_dir, progress=False)
    table = records_of(candidates, root=runs_dir)
    best = best_of(table)
    tuning.append(table.sort_values("epoch").groupby("run_id").tail(1).assign(part="batch size", method=f"B={b}"))
    batch_finals[b] = final_runs("sgd", json.loads(best["hparams"]), batch_size=b)

# %% [markdown]
# ## 3 · Learning-rate schedules (mini-batch SGD, batch 64), each tuned on its own

# %%
schedule_finals = {}
for s in schedules:
    table, best = tuned_hparams("sgd", scenario, tune_budget, tune_epochs, train_fraction, root=runs_dir,
                                progress=False, schedule=s)
    tuning.append(table.assign(part="schedule", method=s))
    schedule_finals[s] = final_runs("sgd", best, schedule=s)

# %%
everything = [c for group in (finals, batch_finals, schedule_finals) for cs in group.values() for c in cs]
run_all(everything, root=runs_dir, progress=False)
frame = records_of(everything, root=runs_dir)
failed = frame[frame["status"] == "failed"]
assert failed.empty, failed[["run_id", "error"]].drop_duplicates().to_string()
tuning = pd.concat(tuning, ignore_index=True)
tuning[["part", "method", "hparams", "val_acc", "val_loss", "diverged"]].sort_values(["part", "method", "val_acc"])

# %%
# NBVAL_CHECK_OUTPUT
for run_id in sorted(tuning.loc[tuning["part"] != "batch size", "run_id"]):  # derive from the configuration alone
    print(run_id)

# %%
for config in everything:  # these depend on which candidate won, i.e. on floating-point outcomes
    print(config.run_id)


# %%
def part(configs_by_key: dict, label) -> pd.DataFrame:
    ids = {c.run_id: label(key) for key, cs in configs_by_key.items() for c in cs}
    chosen_lr = {c.run_id: c.effective_hparams["lr"] for cs in configs_by_key.values() for c in cs}
    rows = frame[frame["run_id"].isin(ids)]
    return rows.assign(method=rows["run_id"].map(ids), chosen_lr=rows["run_id"].map(chosen_lr))


members_frame = part(finals, str)
batch_frame = part(batch_finals, lambda b: f"B={b}")
schedule_frame = part(schedule_finals, str)

# %% [markdown]
# ## Test accuracy and loss against epochs, sample-gradient evaluations and wall time
#
# Mean over seeds with a ±1 std band.

# %%
fig = curve_grid(members_frame, y="test_acc", hue="method", suptitle=f"basic / mini-batch / full-batch ({scenario})")

# %%
fig = curve_grid(members_frame, y="test_loss", hue="method", suptitle=f"test loss ({scenario})")

# %%
fig = curve_grid(batch_frame, y="test_acc", hue="method", suptitle=f"mini-batch SGD by batch size ({scenario})")

# %%
fig = curve_grid(schedule_frame, y="test_acc", hue="method", suptitle=f"learning-rate schedules ({scenario})")

# %%
fig = curve_grid(schedule_frame, y="test_loss", hue="method", suptitle=f"schedules: test loss ({scenario})")

# %% [markdown]
# ## Final numbers (mean and std over seeds)

# %%
results = pd.concat([final_table(f, by=["method"]).assign(part=name, lr=f.groupby("method")["chosen_lr"].first())
                     for name, f in [("members", members_frame), ("batch size", batch_frame),
                                     ("schedule", schedule_frame)]])
results[["part", "lr", "test_acc_mean", "test_acc_std", "test_loss_mean", "test_starter_loss_mean",
         "grad_evals", "wall_s", "seeds", "diverged"]]

# %% [markdown]
# ## Conclusion (computed from the records above)

# %%
def accuracy(value) -> str:
    return "diverged" if pd.isna(value) else f"{value:.2f}%"


print(f"scenario {scenario}, {epochs} epoch(s) on {train_fraction:.0%} of the training images, {len(seeds)} seed(s):")
for name in ("members", "batch size", "schedule"):
    table = results[results["part"] == name].sort_values("test_acc_mean", ascending=False)
    top = table.index[0]
    others = ", ".join(f"{m} {accuracy(table.loc[m, 'test_acc_mean'])}" for m in table.index[1:])
    print(f"- {name}: best {top} with {accuracy(table.loc[top, 'test_acc_mean'])} test accuracy "
          f"(lr {table.loc[top, 'lr']:.4g}, {table.loc[top, 'wall_s']:.1f} s training)"
          + (f"; then {others}" if others else ""))
