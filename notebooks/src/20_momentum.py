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
from dataclasses import replace

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm writes plain bars to stderr
import pandas as pd

from helpers.evidence.analysis import method_label
from helpers.evidence.plots import family_grid
from helpers.evidence.summary import final_table
from helpers.notebook import prepare
from helpers.optimizers import get_spec, names
from helpers.study.definition import get_profile
from helpers.study.experiment import records_of
from helpers.study.readout import methods_table
from helpers.study.protocol import run_family, study_plan
from helpers.study.sweep import study_runs_dir

FAMILY = "momentum"
family = [m for m in names() if get_spec(m).family == FAMILY]
sizes = get_profile(profile)
if members is None:
    members = [m for m in family if sizes.methods is None or m in sizes.methods] or family[:1]
methods = prepare(scenario, members, reference, device)
root = study_runs_dir(profile, runs_dir)

# %%
# NBVAL_CHECK_OUTPUT
print(f"profile {profile}: {sizes.epochs} epoch(s) on {sizes.train_fraction:.0%} of the training images, "
      f"hold-out of {sizes.val_size:,} images, {sizes.evals_per_epoch} evaluation(s) per epoch; "
      f"tuning: {sizes.grid_points} rates (+<= {sizes.grid_extension} at an edge), {sizes.qmc_trials} "
      f"quasi-random trial(s); l2 {sizes.l2_trials} trial(s); sparse {sizes.sparse_rates} rate(s); "
      f"seeds up to {sizes.max_seeds or 'the rows'}")
print(methods_table(replace(sizes, methods=tuple(methods))).to_string(index=False))

# %% [markdown]
# ## Tuning on the hold-out, then the final runs
#
# Standard: a grid of rates, then quasi-random trials of each member's key hyperparameters at the best
# rate; l2: joint trials of rate and weight decay around the standard choice; sparse scenarios: a few
# rates around the standard choice. Every trial is as long as a final run and scored on the hold-out.

# %%
run = run_family(methods, scenario, profile, root=root, progress=True)
study = study_plan(None, profile, root)  # the study's extra seeds of its best methods, where trained
extra = [r.config for r in study.done if r.row == scenario and r.method in methods and r.stage in ("final", "seeds")]
finals = list({c.run_id: c for c in [*run.finals, *extra]}.values())
frame = records_of(finals, root)
frame["method"] = [method_label(row) for _, row in frame.iterrows()] if len(frame) else []
chosen = pd.DataFrame([{"method": c.optimizer, **c.effective_hparams} for c in run.finals]).drop_duplicates("method")
chosen.set_index("method") if len(chosen) else "no final runs"

# %% [markdown]
# ## Training loss, test loss and test accuracy
#
# Mean over seeds with a ±1 std band; SGD-type and Adam-type members in separate rows.

# %%
if len(frame):
    fig = family_grid(frame, x="epoch")

# %% [markdown]
# ## The members: runs, accuracy and loss, cost
#
# Means and standard deviations over finished runs; diverged and failed runs are counted, not averaged.

# %%
def family_table(frame: pd.DataFrame) -> pd.DataFrame:
    t = final_table(frame, by=["method"]).sort_values("test_acc_mean", ascending=False)
    return pd.DataFrame({
        "finished": t["finished"], "diverged": t["diverged"], "failed": t["failed"],
        "test acc (%)": [f"{m:.2f} ± {s:.2f}" if s == s else f"{m:.2f}" for m, s in zip(t["test_acc_mean"], t["test_acc_std"])],
        "test loss": [f"{m:.4f} ± {s:.4f}" if s == s else f"{m:.4f}" for m, s in zip(t["test_loss_mean"], t["test_loss_std"])],
        "oracle calls": t["oracle_evals"].map(lambda v: f"{v:,.0f}"), "wall (s)": t["wall_s"].round(1)})


results = final_table(frame, by=["method"]) if len(frame) else pd.DataFrame()
family_table(frame) if len(frame) else "no runs yet"

# %% [markdown]
# ## Conclusion (printed from the records)

# %%
def conclusion(results: pd.DataFrame, reference: str = "") -> list[str]:
    if results.empty or results["test_acc_mean"].isna().all():
        return ["no finished runs yet"]
    ranked = results.sort_values("test_acc_mean", ascending=False)
    best, by_loss = ranked.index[0], results["test_loss_mean"].idxmin()
    lines = [f"best by final test accuracy: {best} ({ranked.loc[best, 'test_acc_mean']:.2f}%, "
             f"{int(ranked.loc[best, 'seeds'])} seed(s)); lowest test loss: {by_loss} "
             f"({results.loc[by_loss, 'test_loss_mean']:.4f})"]
    if reference in results.index and best != reference:
        gap = ranked.loc[best, "test_acc_mean"] - results.loc[reference, "test_acc_mean"]
        lines.append(f"{best} vs the reference {reference}: {gap:+.2f} points")
    lost = results[(results["diverged"] > 0) | (results["failed"] > 0)]
    lines += [f"{m}: {int(r['diverged'])} diverged, {int(r['failed'])} failed run(s)" for m, r in lost.iterrows()]
    return lines


print(f"{scenario}, profile {profile} ({sizes.epochs} epoch(s), {sizes.train_fraction:.0%} of the images):")
print("\n".join(f"- {line}" for line in conclusion(results, reference)))
pairs = [("adamw_schedulefree", "adamw"), ("sgd_schedulefree", "heavy_ball"), ("lookahead_adam", "adam"),
         ("lookahead_sgd", "nesterov")]
for a, b in pairs:
    if a in results.index and b in results.index:
        print(f"- {a} vs {b}: {results.loc[a, 'test_acc_mean'] - results.loc[b, 'test_acc_mean']:+.2f} points")
