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
# - **mini-batch SGD** (`sgd`): the mean gradient over a batch of images;
# - **full-batch gradient descent** (`gd`): the gradient over the whole training set, one step per epoch.
#
# Cost is counted in oracle calls (sample gradients), so one epoch costs the same for every batch size;
# what differs is the number of steps and the wall time. Every member is tuned and trained by the
# study's protocol (`helpers/study/definition.py`, sizes printed below): the same runs, with the same
# run ids, as `make study` trains, so after the study this notebook only reads records; opened alone
# it trains what it asks for. Mini-batch SGD at other batch sizes and with other learning-rate
# schedules (`helpers/engine/schedules.py`) is tuned by the same protocol: the study's rows that set
# a batch size or a schedule, plus any listed in the parameters. `profile="full"` gives the report's
# numbers; the default `ci` runs in seconds.

# %% tags=["parameters"]
scenario = "standard"  # standard / l2 / sparse60 (the study's main scenarios) or another scenario
profile = "ci"  # the study's size (helpers/study/definition.py PROFILES): ci, quick, full
members: list = None  # None: the family's methods in the profile's study; or a list of names
batch_sizes = []  # mini-batch SGD at these batch sizes too, each tuned by the protocol
schedules = []  # mini-batch SGD with these schedules too (constant, step, cosine, warmup_cosine, onecycle)
device = None  # None: CUDA when available, else CPU
runs_dir = None  # None: $FMNIST_RUNS_DIR, else the profile's folder (full: outputs/runs)

# %%
import warnings
from dataclasses import replace

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm writes plain bars to stderr
import pandas as pd

from helpers.engine.schedules import check_schedule
from helpers.evidence.analysis import method_label
from helpers.evidence.plots import family_grid, metric_row
from helpers.evidence.summary import final_table
from helpers.notebook import prepare
from helpers.optimizers import get_spec, names
from helpers.study.definition import get_profile
from helpers.study.experiment import records_of
from helpers.study.readout import methods_table
from helpers.study.protocol import run_family, study_plan
from helpers.study.sweep import study_runs_dir

FAMILY = "sgd"
family = [m for m in names() if get_spec(m).family == FAMILY]
sizes = get_profile(profile)
if members is None:
    members = [m for m in family if sizes.methods is None or m in sizes.methods] or family[:1]
methods = prepare(scenario, members, "", device, parameters={"batch_sizes": batch_sizes, "schedules": schedules})
root = study_runs_dir(profile, runs_dir)
study_rows = [r for r in sizes.rows_in() if r.scenario == scenario and r.tuning != "none"
              and (r.methods == "all" or "sgd" in r.methods)]
batch_sizes = sorted({*batch_sizes, *(r.overrides["batch_size"] for r in study_rows if "batch_size" in r.overrides)})
schedules = [*dict.fromkeys([*schedules, *(r.overrides["schedule"] for r in study_rows if "schedule" in r.overrides)])]
for s in schedules:
    check_schedule(s)

# %%
# NBVAL_CHECK_OUTPUT
print(f"profile {profile}: {sizes.epochs} epoch(s) on {sizes.train_fraction:.0%} of the training images, "
      f"hold-out of {sizes.val_size:,} images, {sizes.evals_per_epoch} evaluation(s) per epoch; "
      f"tuning: {sizes.grid_points} rates (+<= {sizes.grid_extension} at an edge), {sizes.qmc_trials} "
      f"quasi-random trial(s); l2 {sizes.l2_trials} trial(s); sparse {sizes.sparse_rates} rate(s); "
      f"seeds up to {sizes.max_seeds or 'the rows'}")
print(methods_table(replace(sizes, methods=tuple(methods))).to_string(index=False))
print("extra batch sizes of mini-batch SGD:", batch_sizes or "none", "| extra schedules:", schedules or "none")

# %% [markdown]
# ## Tuning on the hold-out, then the final runs
#
# Standard: a grid of rates (extended at an edge); l2: joint trials of rate and weight decay around the
# standard choice; sparse scenarios: a few rates around the standard choice. Every trial is as long as
# a final run and scored on the hold-out.

# %%
runs = {"members": run_family(methods, scenario, profile, root=root, progress=True)}
for b in batch_sizes:
    runs[f"batch {b}"] = run_family(["sgd"], scenario, profile, root=root, progress=True, batch_size=b)
for s in schedules:
    runs[f"schedule {s}"] = run_family(["sgd"], scenario, profile, root=root, progress=True, schedule=s)
study = study_plan(None, profile, root)  # the study's extra seeds of its best methods, where trained
extra = [r.config for r in study.done if r.row == scenario and r.method in methods and r.stage in ("final", "seeds")]
finals = {c.run_id: (part, c) for part, run in runs.items() for c in run.finals}
finals.update({c.run_id: ("members", c) for c in extra if c.run_id not in finals})
frame = records_of([c for _, c in finals.values()], root)
if len(frame):
    frame["method"] = [method_label(row) for _, row in frame.iterrows()]
    frame["part"] = frame["run_id"].map(lambda i: finals[i][0])
chosen = pd.DataFrame([{"part": part, "method": c.optimizer, "batch": c.batch_size, "schedule": c.schedule,
                        **c.effective_hparams} for part, c in finals.values() if c.seed == 0])
chosen if len(chosen) else "no final runs"

# %% [markdown]
# ## Training loss, test loss and test accuracy
#
# Mean over seeds with a ±1 std band: the members, then mini-batch SGD by batch size and by schedule.

# %%
if len(frame):
    fig = family_grid(frame[frame["part"] == "members"], x="epoch")

# %%
for name, part in [("batch size", frame[frame["part"].str.startswith("batch")] if len(frame) else frame),
                   ("schedule", frame[frame["part"].str.startswith("schedule")] if len(frame) else frame)]:
    if len(part):
        members_sgd = frame[(frame["part"] == "members") & (frame["optimizer"] == "sgd")]
        metric_row(pd.concat([members_sgd, part]), suptitle=f"mini-batch SGD by {name} ({scenario})")

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
print("\n".join(f"- {line}" for line in conclusion(results, "sgd")))
if len(results) and "wall_s" in results:
    steps = frame.sort_values("epoch").groupby("method")["step"].last()
    for m in results.index:
        print(f"- {m}: {int(steps[m]):,} steps, {results.loc[m, 'wall_s']:.1f} s of training (mean over seeds)")
