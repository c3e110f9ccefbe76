# ---
# jupyter:
#   kernelspec:
#     display_name: Python (fmnist-optim)
#     language: python
#     name: fmnist-optim
# ---

# %% [markdown]
# # 90 · Summary of the study
#
# Everything here is computed from the run records in `outputs/runs` (full training set, test
# split): the final table per optimizer and scenario, time to the assignment's 89.38%, a
# Dolan-Moré performance profile over scenarios × seeds, and accuracy against density.
# With `report_dir` set (as `make report` does) it also writes the report's tables and figures.

# %% tags=["parameters"]
runs_dir = None  # None: the committed study records in outputs/runs
report_dir = None  # a directory: write tables/ and figures/ for the report there
target = 89.38
top = 8  # methods shown in the curve plots

# %%
import matplotlib.pyplot as plt
import pandas as pd

from helpers.evidence import analysis as A
from helpers.evidence.plots import curve_grid, density_plot, profile_plot
from helpers.study.records import RUNS_DIR, load_records

pd.set_option("display.width", 160, "display.max_columns", 20, "display.precision", 3)
records = load_records(runs_dir or RUNS_DIR)
frame = A.study_frame(frame=records)
results = A.final_results(frame) if len(frame) else pd.DataFrame()

# %%
# NBVAL_CHECK_OUTPUT
print(f"{frame['run_id'].nunique() if len(frame) else 0} test runs on the full training set, "
      f"{frame['method'].nunique() if len(frame) else 0} methods, "
      f"scenarios: {sorted(frame['scenario'].unique()) if len(frame) else []}")

# %% [markdown]
# ## Final table: best configuration of each method per scenario (mean ± std over seeds)

# %%
# NBVAL_CHECK_OUTPUT
columns = ["method", "family", "test_acc_mean", "test_acc_std", "test_loss_mean",
           "test_starter_loss_mean", "seeds", "oracle_evals", "diverged"]
for scenario in A.MAIN_SCENARIOS:
    if len(results) and (results["scenario"] == scenario).any():
        print(f"--- {scenario}")
        print(results.loc[results["scenario"] == scenario, columns].to_string(index=False))

# %% [markdown]
# ## Best method per scenario

# %%
# NBVAL_CHECK_OUTPUT
best = A.best_per_scenario(results) if len(results) else pd.DataFrame()
best[["method", "test_acc_mean", "test_acc_std", "test_loss_mean", "seeds"]] if len(best) else "no runs yet"

# %% [markdown]
# ## Best member of each optimizer family (standard scenario)

# %%
# NBVAL_CHECK_OUTPUT
families = A.best_per_family(results) if len(results) else pd.DataFrame()
families[["method", "test_acc_mean", "test_acc_std", "seeds", "oracle_evals"]] if len(families) else "no runs yet"

# %% [markdown]
# ## Best member of each family in each main scenario

# %%
# NBVAL_CHECK_OUTPUT
by_scenario = A.families_by_scenario(results) if len(results) else pd.DataFrame()
by_scenario.pivot(index="family", columns="scenario", values="method").reindex(columns=list(A.MAIN_SCENARIOS)) \
    if len(by_scenario) else "no runs yet"

# %% [markdown]
# ## Curves of the best methods per scenario, against epochs, oracle calls and wall time
# (bands: ±1 standard deviation over seeds)

# %%
for scenario in A.MAIN_SCENARIOS:
    chosen = frame.merge(results[results["scenario"] == scenario].head(top)[A.GROUP], on=A.GROUP) \
        if len(results) else frame
    if len(chosen):
        curve_grid(chosen, y="test_acc", hue="method", xs=("epoch", "oracle_evals", "wall_s"),
                   target=target, suptitle=scenario)
        plt.show()

# %% [markdown]
# ## Cost to first reach the target test accuracy (standard scenario)

# %%
# NBVAL_CHECK_OUTPUT
ttt = A.time_to_target(frame, target) if len(frame) else pd.DataFrame()
ttt.drop(columns="config_key", errors="ignore").head(12) if len(ttt) else "no runs yet"

# %% [markdown]
# ## Performance profile (Dolan-Moré): problems are scenario × seed, cost is oracle calls to the target
# (only the methods run on every problem take part)

# %%
profile = A.performance_profile(frame, target) if len(frame) else pd.DataFrame()
if len(profile):
    profile_plot(profile)
    plt.show()

# %% [markdown]
# ## Accuracy against density (fc1+fc2 weights kept)

# %%
# NBVAL_CHECK_OUTPUT
density = A.accuracy_vs_density(frame) if len(frame) else pd.DataFrame()
(density.pivot_table(index=["method", "sparsity_strategy"], columns="density",
                     values=["test_acc_mean", "test_acc_std", "seeds"])
 .sort_index(axis=1, ascending=False) if len(density) else "no runs yet")

# %%
if len(density) and density["density"].nunique() > 1:
    density_plot(density)
    plt.show()

# %%
if report_dir:
    from helpers.evidence.report_artifacts import write_all
    written = write_all(frame, report_dir, records)
    print("wrote tables and figures to", report_dir)

# %%
# NBVAL_CHECK_OUTPUT
for scenario, row in best.iterrows():
    print(f"{scenario}: best is {row['method']} with {row['test_acc_mean']:.2f}% "
          f"(± {row['test_acc_std']:.2f}, {int(row['seeds'])} seeds)")
if len(ttt) and ttt["reached"].max() > 0:
    fastest = ttt.iloc[0]
    print(f"fastest to {target}%: {fastest['method']} after {fastest['epoch']:.2f} epochs, "
          f"{fastest['grad_evals']:,.0f} sample gradients, {fastest['wall_s']:.1f} s "
          f"({int(fastest['reached'])}/{int(fastest['seeds'])} seeds)")
