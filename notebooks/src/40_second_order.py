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

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm writes plain bars to stderr
from helpers.evidence.family import family_figures, family_finals, family_setup, members_table, print_conclusion, print_sizes
from helpers.optimizers import get_spec
from helpers.study.protocol import run_family

fam = family_setup("second_order", scenario, profile, members, reference, device, runs_dir)
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
# Mean over seeds with a ±1 std band, against epochs, then test loss and accuracy against oracle calls
# (everything each method evaluated: line searches, the Levenberg-Marquardt check, curvature products,
# K-FAC's sampled-target pass) and against training wall time.

# %%
figures = family_figures(frame, "epoch", "oracle_evals", "wall_s")

# %% [markdown]
# ## The members: runs, accuracy and loss, cost
#
# `oracle calls` counts sample gradients and curvature products (Hessian/Gauss-Newton-vector products,
# in samples) together. Means and standard deviations over finished runs; diverged and failed runs are counted, not averaged.

# %%
results, table = members_table(frame)
if len(table):
    table["curvature products"] = results["hvp_evals"].reindex(table.index).map(lambda v: f"{v:,.0f}")
table if len(table) else "no runs yet"

# %% [markdown]
# ## Conclusion (printed from the records)

# %%
print_conclusion(results, fam, scenario, reference, run.tuning)
second = [m for m in results.sort_values("test_acc_mean", ascending=False).index
          if get_spec(m.split(" ")[0].split("+")[0]).family == fam.name and results.loc[m, "finished"] > 0]
if second and reference in results.index:
    gap = results.loc[second[0], "test_acc_mean"] - results.loc[reference, "test_acc_mean"]
    print(f"- best second-order member: {second[0]}, {gap:+.2f} points against the first-order {reference}, "
          f"{results.loc[second[0], 'wall_s'] / results.loc[reference, 'wall_s']:.2f}x its training wall time")
