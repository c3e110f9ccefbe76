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
# - **L-BFGS** (`lbfgs`: large random batches; `lbfgs_full`: all training images, one step of up to
#   `max_iter` iterations per epoch): torch.optim.LBFGS with a strong-Wolfe line search
#   (Nocedal & Wright, Alg. 7.4), L2 inside the line-searched objective;
# - **Hessian-free Newton-CG** (`newton_cg`; Martens 2010): truncated CG on (B + λI) d = -g with
#   Gauss-Newton products B v = Jᵀ H_L J v (autograd, no matrix formed), Levenberg-Marquardt
#   adaptation of λ and rejection of steps that raise the batch loss;
# - **K-FAC** (`kfac`; Martens & Grosse 2015, Grosse & Martens 2016 for convolutions): the Fisher
#   block of each Linear/Conv2d layer approximated by A ⊗ G (activation and output-gradient
#   covariances, targets sampled from the model), factored Tikhonov damping, KL clipping, momentum;
# - **Shampoo** (`shampoo`; Gupta et al. 2018): L^{-1/4} G R^{-1/4} per layer, step length grafted
#   from Adam's second moment, momentum;
# - **AdaHessian** (`adahessian`; Yao et al. 2021): Adam with a Hutchinson estimate of the Hessian
#   diagonal (one Hessian-vector product per step) in place of the squared gradient.
#
# Cost is counted in oracle calls: sample gradients (with K-FAC's sampled-target pass and the line
# searches' extra evaluations) plus Hessian/Gauss-Newton-vector products in samples; every run has the
# same oracle budget. Every member is tuned and trained by the study's protocol
# (`helpers/study/definition.py`, sizes printed below): the same runs, with the same run ids, as
# `make study` trains, so after the study this notebook only reads records; opened alone it trains
# what it asks for. `profile="full"` gives the report's numbers; the default `ci` runs in seconds.

# %% tags=["parameters"]
scenario = "standard"  # standard / l2 / sparse60 (the study's main scenarios) or another scenario
profile = "ci"  # the study's size (helpers/study/definition.py PROFILES): ci, quick, full
members: list = None  # None: the family's methods in the profile's study (if none, its first); or names
reference = "adam"  # a first-order method under the same protocol, for comparison ("" for none)
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

FAMILY = "second_order"
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
# Mean over seeds with a ±1 std band, against epochs, then test loss and accuracy against oracle calls
# (everything each method evaluated: line searches, the Levenberg-Marquardt check, curvature products,
# K-FAC's sampled-target pass) and against training wall time.

# %%
if len(frame):
    fig = family_grid(frame, x="epoch")

# %%
if len(frame):
    fig = family_grid(frame, ys=("test_loss", "test_acc"), x="oracle_evals")

# %%
if len(frame):
    fig = family_grid(frame, ys=("test_loss", "test_acc"), x="wall_s")

# %% [markdown]
# ## The members: runs, accuracy and loss, cost
#
# `oracle calls` counts sample gradients and curvature products (Hessian/Gauss-Newton-vector products,
# in samples) together. Means and standard deviations over finished runs; diverged and failed runs are counted, not averaged.

# %%
def family_table(frame: pd.DataFrame) -> pd.DataFrame:
    t = final_table(frame, by=["method"]).sort_values("test_acc_mean", ascending=False)
    return pd.DataFrame({
        "finished": t["finished"], "diverged": t["diverged"], "failed": t["failed"],
        "test acc (%)": [f"{m:.2f} ± {s:.2f}" if s == s else f"{m:.2f}" for m, s in zip(t["test_acc_mean"], t["test_acc_std"])],
        "test loss": [f"{m:.4f} ± {s:.4f}" if s == s else f"{m:.4f}" for m, s in zip(t["test_loss_mean"], t["test_loss_std"])],
        "oracle calls": t["oracle_evals"].map(lambda v: f"{v:,.0f}"), "wall (s)": t["wall_s"].round(1)})


results = final_table(frame, by=["method"]) if len(frame) else pd.DataFrame()
table = family_table(frame) if len(frame) else pd.DataFrame()
if len(table):
    table["curvature products"] = results["hvp_evals"].reindex(table.index).map(lambda v: f"{v:,.0f}")
table if len(table) else "no runs yet"

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
second = [m for m in results.sort_values("test_acc_mean", ascending=False).index
          if get_spec(m.split(" ")[0].split("+")[0]).family == FAMILY and results.loc[m, "finished"] > 0]
if second and reference in results.index:
    gap = results.loc[second[0], "test_acc_mean"] - results.loc[reference, "test_acc_mean"]
    print(f"- best second-order member: {second[0]}, {gap:+.2f} points against the first-order {reference}, "
          f"{results.loc[second[0], 'wall_s'] / results.loc[reference, 'wall_s']:.2f}x its training wall time")
