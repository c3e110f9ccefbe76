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
# Everything here is computed from the run records of the study's current protocol (the profile's
# runs folder; `full`: `outputs/runs`; runs on the full training set, test split): the final table per
# method and scenario, time to the assignment's 89.38%, a Dolan-Moré performance profile over
# scenarios × seeds, and accuracy against density. It trains nothing; with no records it says so.
# With `report_dir` set (as `make study` does) it also writes the report's tables and figures.

# %% tags=["parameters"]
profile = "full"  # whose records: the study's size (helpers/study/definition.py PROFILES): ci, quick, full
runs_dir = None  # None: $FMNIST_RUNS_DIR, else the profile's folder (full: outputs/runs)
report_dir = None  # a directory: write tables/ and figures/ for the report there
target = 89.38
top = 6  # methods shown in the curve plots (the hold-out's best)

# %%
import warnings

import matplotlib.pyplot as plt
import pandas as pd

from helpers.evidence import analysis as A
from helpers.evidence.plots import density_plot, metric_row, profile_plot
from helpers.evidence.report_artifacts import main_study, study_inputs, time_to_target_frame
from helpers.study.definition import PROTOCOL_VERSION
from helpers.runtime import as_repo_parameter
from helpers.study.readout import definition_table
from helpers.study.sweep import study_runs_dir

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm writes plain bars to stderr

pd.set_option("display.width", 160, "display.max_columns", 20, "display.precision", 3)
root = study_runs_dir(profile, runs_dir)
stored, records, frame, state = study_inputs(root, profile)
main = main_study(frame, profile, state) if len(frame) else frame  # the other studies' runs apart
results = A.final_results(main) if len(main) else pd.DataFrame()

# %% [markdown]
# ## The study, as defined (`helpers/study/definition.py`)

# %%
# NBVAL_CHECK_OUTPUT
print(f"protocol v{PROTOCOL_VERSION}, profile {profile}")

# %%
print(definition_table(profile).to_string(index=False))

# %%
print(f"{as_repo_parameter(root)}: {records['run_id'].nunique() if len(records) else 0} runs of protocol v{PROTOCOL_VERSION}" if len(records)
      else f"no runs yet in {root}")
superseded = stored["run_id"].nunique() - records["run_id"].nunique() if len(stored) else 0
if superseded:
    print(f"{superseded} other runs there are not in the definition's plan (trials a cut no longer asks for, "
          "runs of an older update rule): left out")
print(f"{frame['run_id'].nunique() if len(frame) else 0} test runs on the full training set, "
      f"{frame['method'].nunique() if len(frame) else 0} methods, "
      f"scenarios: {sorted(frame['scenario'].unique()) if len(frame) else []}")

# %% [markdown]
# ## Final table: best configuration of each method per scenario (mean ± std over seeds)

# %%
columns = ["method", "family", "finished", "diverged", "failed", "test_acc_mean", "test_acc_std", "test_loss_mean",
           "test_loss_std", "oracle_evals", "wall_s"]
for scenario in A.MAIN_SCENARIOS:
    if len(results) and (results["scenario"] == scenario).any():
        print(f"--- {scenario}")
        print(results.loc[results["scenario"] == scenario, columns].to_string(index=False))
if results.empty:
    print("no runs yet")

# %% [markdown]
# ## Best method per scenario
# Chosen on the hold-out (the best tuning trial's final validation accuracy, then its loss), as
# the planner chooses; the test columns only measure the choice.

# %%
tuning = main_study(records, profile, state) if len(records) else records
best = A.best_per_scenario(results, tuning) if len(results) else pd.DataFrame()
best[["method", "holdout_acc", "test_acc_mean", "test_acc_std", "test_loss_mean", "seeds"]] if len(best) \
    else "no runs yet"

# %% [markdown]
# ## Best member of each optimizer family (standard scenario, on the hold-out)

# %%
families = A.best_per_family(results, tuning) if len(results) else pd.DataFrame()
families[["method", "holdout_acc", "test_acc_mean", "test_acc_std", "seeds", "oracle_evals"]] if len(families) \
    else "no runs yet"

# %% [markdown]
# ## Best member of each family in each main scenario (on the hold-out)

# %%
by_scenario = A.families_by_scenario(results, tuning) if len(results) else pd.DataFrame()
by_scenario.pivot(index="family", columns="scenario", values="method").reindex(columns=list(A.MAIN_SCENARIOS)) \
    if len(by_scenario) else "no runs yet"

# %% [markdown]
# ## Training loss, test loss and test accuracy of the hold-out's best methods per scenario
# (bands: ±1 standard deviation over seeds)

# %%
ranked = A.by_holdout(results, tuning) if len(results) else results
for scenario in A.MAIN_SCENARIOS:
    chosen = frame.merge(ranked[ranked["scenario"] == scenario].head(top)[A.GROUP], on=A.GROUP) \
        if len(ranked) else frame
    if len(chosen):
        metric_row(chosen, hue="method", target=target, suptitle=scenario)
        plt.show()

# %% [markdown]
# ## Cost to first reach the target test accuracy (standard scenario)

# %%
ttt = A.time_to_target(time_to_target_frame(frame, profile, state), target) if len(frame) else pd.DataFrame()
ttt.drop(columns="config_key", errors="ignore").head(12) if len(ttt) else "no runs yet"

# %% [markdown]
# ## Performance profile (Dolan-Moré): problems are scenario × seed, cost is oracle calls to the target
# (only the methods run on every problem take part)

# %%
performance = A.performance_profile(main, target) if len(main) else pd.DataFrame()
if len(performance):
    profile_plot(performance)
    plt.show()

# %% [markdown]
# ## Accuracy against density (fc1+fc2 weights kept)

# %%
density = A.accuracy_vs_density(main) if len(main) else pd.DataFrame()
(density.pivot_table(index=["method", "sparsity_strategy"], columns="density",
                     values=["test_acc_mean", "test_acc_std", "seeds"])
 .sort_index(axis=1, ascending=False) if len(density) else "no runs yet")

# %%
if len(density) and density["density"].nunique() > 1:
    density_plot(density)
    plt.show()

# %% [markdown]
# ## The studies beside the main comparison (`helpers/evidence/side_studies.py`, the report draws the same)
# Batch size: final test accuracy and loss against the batch size at both budgets, then the small budget's
# training loss against oracle calls and against the timing pass's seconds.

# %%
from helpers.evidence import side_studies as SS

batch = SS.batch_size_figures(frame)
batch if len(batch) else "no batch-size study runs yet"

# %% [markdown]
# Weight decay, coupled (L2 in the gradient) against decoupled (AdamW), scenario l2.

# %%
decay = SS.weight_decay_results(frame)
if len(decay) and decay["weight_decay"].nunique() > 1:
    SS.weight_decay_plot(decay)
    plt.show()
decay if len(decay) else "no weight-decay study runs yet"

# %% [markdown]
# Preprocessing: the same methods on standardised and on [0, 1] pixels, and the assignment's starter (every seed).

# %%
pixels = SS.preprocessing_results(A.final_frame(frame=records) if len(records) else records)
starter = SS.starter_runs(frame)
if len(starter):
    SS.starter_plot(starter)
    plt.show()
pixels if len(pixels) else "no preprocessing-ablation runs yet"

# %%
if report_dir:
    from helpers.evidence.report_artifacts import write_all
    written = write_all(frame, report_dir, records, root=root, profile=profile, state=state)
    print("wrote tables and figures to", report_dir)

# %%
for scenario, row in best.iterrows():
    print(f"{scenario}: best is {row['method']} with {row['test_acc_mean']:.2f}% "
          f"(± {row['test_acc_std']:.2f}, {int(row['seeds'])} seeds)")
if best.empty:
    print("no runs yet")
if len(ttt) and ttt["reached"].max() > 0:
    fastest = ttt.iloc[0]
    print(f"fastest to {target}%: {fastest['method']} after {fastest['epoch']:.2f} epochs, "
          f"{fastest['grad_evals']:,.0f} sample gradients, {fastest['wall_s']:.1f} s "
          f"({int(fastest['reached'])}/{int(fastest['seeds'])} seeds)")
