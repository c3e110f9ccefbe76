"""The study's evidence from outputs/runs: final table, time to target, performance profile,
accuracy against density. Pure functions of the records, shared by 90_summary and the report."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ..study.records import load_records
from .summary import STATUSES, final_table

TARGET = 89.38
MAIN_SCENARIOS = ("standard", "l2", "sparse60")
GROUP = ["method", "scenario", "sparsity_strategy", "config_key"]


NOISE_FACTOR = 2  # a difference within this many pooled seed standard deviations is not evidence


def seed_noise(std_a, std_b) -> float:
    """:data:`NOISE_FACTOR` pooled seed standard deviations of two means, sqrt((s_a^2 + s_b^2) / 2)
    (NaN when either has fewer than 2 seeds): a descriptive yardstick for the notebooks' and the
    report's prose; the report's verdicts come from :mod:`helpers.evidence.statistics`."""
    return NOISE_FACTOR * float(np.sqrt((std_a ** 2 + std_b ** 2) / 2))


def within_seed_noise(ranked: pd.DataFrame) -> pd.DataFrame:
    """The rows after the first of ``ranked`` (best mean test accuracy first) whose mean lies within
    :func:`seed_noise` of the first's: their order against it is not evidence."""
    first, rest = ranked.iloc[0], ranked.iloc[1:]
    noise = np.array([seed_noise(first["test_acc_std"], std) for std in rest["test_acc_std"]])
    return rest[(first["test_acc_mean"] - rest["test_acc_mean"]).to_numpy() <= noise]


def gap_words(gap: float, noise: float) -> str:
    """``"+0.47 points (within the seed noise, 0.61)"``: a difference of means with its yardstick."""
    if not np.isfinite(noise):
        return f"{gap:+.2f} points (one seed: no noise estimate)"
    side = "within" if abs(gap) <= noise else "beyond"
    return f"{gap:+.2f} points ({side} {NOISE_FACTOR} pooled seed standard deviations, {noise:.2f})"


def method_label(row) -> str:
    """The optimizer's name, plus its schedule, batch size or tag where they differ from the
    study's recipe (helpers.study.protocol); a batch size the protocol tunes for the method (one
    of its key hyperparameters: K-FAC, Shampoo, ...) is part of the recipe, like its rate."""
    from ..optimizers import get_spec
    from ..study.definition import KEY_HPARAMS
    from ..study.protocol import schedule_for
    label = row["optimizer"]
    if row.get("schedule", "constant") != schedule_for(row["optimizer"]):
        label += f"+{row['schedule']}"
    default_batch = str(get_spec(row["optimizer"]).batch_size or 64)
    tuned_batch = "batch_size" in KEY_HPARAMS.get(row["optimizer"], {})
    if not tuned_batch and str(row.get("batch_size")) not in (default_batch, "None", "nan"):
        label += f" b{row['batch_size']}"
    if row.get("tag") and row["tag"] not in ("final",):
        label += f" [{row['tag']}]"
    return label


def method_optimizer(label: str) -> str:
    """The registry name a :func:`method_label` starts with."""
    return str(label).split(" ")[0].split("+")[0]


def study_frame(root=None, frame: pd.DataFrame | None = None,
                statuses=("finished", "diverged"), train_fraction: float = 1.0) -> pd.DataFrame:
    """Final runs (the study profile's training set, ``train_fraction`` of the images: all of them
    in the full study) evaluated on the test set whose status is in ``statuses``
    (:func:`final_frame` adds the failed ones, for counting)."""
    frame = load_records(root) if frame is None else frame
    if frame.empty:
        return frame
    keep = (frame["eval_split"] == "test") & (frame["train_fraction"] == train_fraction) & \
        frame["status"].isin(list(statuses))
    if "within_budget" in frame:  # gradual/finetune records before the budget is reached
        keep &= frame["within_budget"].astype(bool) | (frame["status"] == "failed")
    frame = frame[keep].copy()
    frame["method"] = [method_label(row) for _, row in frame.iterrows()]
    frame["config_key"] = frame["hparams"] + "|" + frame["batch_size"].astype(str) + "|" + \
        frame["planned_epochs"].astype(str) + "|" + frame["scaling"]
    return frame


def final_frame(root=None, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`study_frame` with the failed runs too (one row each, no metrics): what the tables count."""
    return study_frame(root, frame, statuses=STATUSES)


def final_results(frame: pd.DataFrame) -> pd.DataFrame:
    """Per method x scenario (x strategy): the configuration with the most finished seeds (then
    the best mean final test accuracy; the v2 study has one final configuration each), with
    mean/std of the final metrics over finished runs, finished/diverged/failed counts and its
    cost (:data:`helpers.evidence.summary.COUNTING_RULE`)."""
    table = final_table(frame, by=GROUP).rename(columns={"epoch": "epochs"}).reset_index()
    table["rank_key"] = table["test_acc_mean"].fillna(-1)
    best = table.sort_values(["seeds", "rank_key"], ascending=False).groupby(GROUP[:3]).head(1)
    return best.drop(columns="rank_key").sort_values(["scenario", "test_acc_mean"],
                                                     ascending=[True, False]).reset_index(drop=True)


def holdout_scores(records: pd.DataFrame, scenario: str | None = None, tuning_tags=("tune",)) -> pd.DataFrame:
    """Per scenario, optimizer and sparsity strategy: the hold-out accuracy and loss at the end of
    its best tuning trial, best first. Best is the planner's rule (:func:`helpers.study.tuning.score`):
    the highest final ``val_acc``, then the lowest final ``val_loss``. Only finished trials on the
    hold-out (``eval_split="val"``) count; the test set is never read. Columns: scenario, optimizer,
    sparsity_strategy, holdout_acc, holdout_loss."""
    columns = ["scenario", "optimizer", "sparsity_strategy", "holdout_acc", "holdout_loss"]
    if records is None or records.empty:
        return pd.DataFrame(columns=columns)
    val = records[(records["eval_split"] == "val") & (records["status"] == "finished")]
    if scenario is not None:
        val = val[val["scenario"] == scenario]
    if tuning_tags is not None and "tag" in val:
        val = val[val["tag"].isin(tuning_tags)]
    last = val.sort_values("epoch").groupby("run_id").tail(1).dropna(subset=["val_acc"])
    if last.empty:
        return pd.DataFrame(columns=columns)
    strategy = last["sparsity_strategy"] if "sparsity_strategy" in last else pd.Series(index=last.index, dtype=object)
    loss = last["val_loss"] if "val_loss" in last else pd.Series(np.nan, index=last.index)
    scored = pd.DataFrame({"scenario": last["scenario"], "optimizer": last["optimizer"],
                           "sparsity_strategy": strategy.fillna("projection"),
                           "holdout_acc": last["val_acc"].astype(float),
                           "holdout_loss": loss.astype(float).fillna(np.inf)})
    scored = scored.sort_values(["holdout_acc", "holdout_loss", "optimizer", "sparsity_strategy"],
                                ascending=[False, True, True, True])
    return scored.groupby(["scenario", "optimizer", "sparsity_strategy"]).head(1).reset_index(drop=True)[columns]


def holdout_strategies(records: pd.DataFrame, scenario: str = "sparse60", tuning_tags=("tune",)) -> dict[str, str]:
    """Per optimizer, the sparsity strategy of its best tuning trial in ``scenario`` on the
    hold-out (:func:`holdout_scores`); optimizers without hold-out runs there are absent."""
    best = holdout_scores(records, scenario, tuning_tags).groupby("optimizer").head(1)
    return dict(zip(best["optimizer"], best["sparsity_strategy"]))


def best_per_scenario(results: pd.DataFrame, records: pd.DataFrame) -> pd.DataFrame:
    """Per scenario, the study's own configuration (not the tagged side experiments: starter,
    hand-tuned recipes, other tuning budgets) that leads the hold-out (:func:`holdout_scores`
    over ``records``, the tuning records of the same study); ``results`` only measures it."""
    return best_by(results, records, "scenario")


def best_per_family(results: pd.DataFrame, records: pd.DataFrame, scenario: str = "standard") -> pd.DataFrame:
    """The best member of each optimizer family in ``scenario``, by the same rule."""
    return best_by(results[results["scenario"] == scenario], records, "family")


def families_by_scenario(results: pd.DataFrame, records: pd.DataFrame, scenarios=MAIN_SCENARIOS) -> pd.DataFrame:
    """:func:`best_per_family` for each of ``scenarios``, stacked: one row per (scenario, family)."""
    parts = [best_per_family(results, records, s).reset_index() for s in scenarios]
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def is_side_experiment(methods: pd.Series) -> pd.Series:
    """Rows labelled with a tag (``method [tag]``): outside the study's equal-budget protocol."""
    return methods.str.contains("[", regex=False)


def by_holdout(results: pd.DataFrame, records: pd.DataFrame) -> pd.DataFrame:
    """The study's own configurations of ``results`` that have a hold-out score, best on the
    hold-out first (:func:`holdout_scores` over ``records``; ``holdout_acc`` and ``holdout_loss``
    columns added). Side experiments and rows without a tuning trial are left out."""
    results = results[~is_side_experiment(results["method"])] if len(results) else results
    if results.empty:
        return results.assign(holdout_acc=[], holdout_loss=[])
    ranked = results.assign(optimizer=[method_optimizer(m) for m in results["method"]]).merge(
        holdout_scores(records), on=["scenario", "optimizer", "sparsity_strategy"], how="inner")
    return ranked.sort_values(["holdout_acc", "holdout_loss", "method"], ascending=[False, True, True]) \
        .drop(columns="optimizer").reset_index(drop=True)


def best_by(results: pd.DataFrame, records: pd.DataFrame, key: str) -> pd.DataFrame:
    """Per value of ``key``: the first row of :func:`by_holdout` (the hold-out's choice)."""
    return by_holdout(results, records).groupby(key).head(1).set_index(key)


def first_reach(frame: pd.DataFrame, target: float = TARGET) -> pd.DataFrame:
    """Per run: first epoch / sample gradients / oracle calls / seconds with test accuracy >= target."""
    rows = []
    for (run_id, key), run in frame.sort_values("epoch").groupby(["run_id", "config_key"]):
        hit = run[run["test_acc"] >= target]
        first = hit.iloc[0] if len(hit) else None
        rows.append({"run_id": run_id, "config_key": key,
                     **{k: run[k].iloc[0] for k in ("method", "scenario", "seed", "sparsity_strategy")},
                     "horizon": run["planned_epochs"].iloc[0] if "planned_epochs" in run else np.nan,
                     "reached": first is not None,
                     **{k: (first[k] if first is not None else np.nan)
                        for k in ("epoch", "grad_evals", "oracle_evals", "wall_s")}})
    return pd.DataFrame(rows)


def time_to_target(frame: pd.DataFrame, target: float = TARGET, scenario: str = "standard") -> pd.DataFrame:
    """Per method (its best configuration in ``scenario``): how many seeds reached ``target``
    and the mean cost to first reach it, sorted cheapest first."""
    reach = first_reach(frame[frame["scenario"] == scenario], target)
    if reach.empty:
        return reach
    agg = reach.groupby(["method", "config_key"]).agg(
        seeds=("seed", "nunique"), reached=("reached", "sum"), horizon=("horizon", "first"), epoch=("epoch", "mean"),
        grad_evals=("grad_evals", "mean"), oracle_evals=("oracle_evals", "mean"),
        wall_s=("wall_s", "mean")).reset_index()
    agg["share"] = agg["reached"] / agg["seeds"]
    agg = agg.sort_values(["share", "oracle_evals"], ascending=[False, True]).drop(columns="share")
    return agg.groupby("method").head(1).reset_index(drop=True)


def performance_profile(frame: pd.DataFrame, target: float = TARGET, cost: str = "oracle_evals",
                        scenarios=MAIN_SCENARIOS, taus=None) -> pd.DataFrame:
    """Dolan-More profile: problems are (scenario, seed); a solver is a (method, sparsity strategy)
    pair; its cost on a problem is ``cost`` to first reach ``target`` (its best configuration per
    scenario); rho(tau) is the share of problems solved within tau times the best solver's cost.
    Only solvers run on every problem take part (a run that never reaches the target counts as
    unsolved; a missing run would too, which would penalise methods the staged study ran less)."""
    frame = frame[frame["scenario"].isin(scenarios)]
    reach = first_reach(frame, target)
    if reach.empty:
        return pd.DataFrame(columns=["method", "sparsity_strategy", "tau", "rho"])
    solver = ["method", "sparsity_strategy"]
    best_key = (reach.groupby([*solver, "scenario", "config_key"])["reached"].mean().reset_index()
                .sort_values("reached", ascending=False).groupby([*solver, "scenario"]).head(1))
    reach = reach.merge(best_key[[*solver, "scenario", "config_key"]])
    ran = reach.groupby(["scenario", "seed", *solver]).size().unstack(solver)
    complete = ran.columns[ran.notna().all().to_numpy()]
    costs = reach.pivot_table(index=["scenario", "seed"], columns=solver, values=cost, aggfunc="min",
                              dropna=False).reindex(index=ran.index, columns=complete)
    ratios = costs.div(costs.min(axis=1), axis=0)
    taus = np.geomspace(1, 64, 200) if taus is None else taus
    solved = {key: ratios.iloc[:, i].to_numpy() for i, key in enumerate(ratios.columns)}
    rows = [{"method": m, "sparsity_strategy": st, "tau": t, "rho": float((solved[(m, st)] <= t).sum()) / len(ratios)}
            for m, st in solved for t in taus]
    return pd.DataFrame(rows, columns=["method", "sparsity_strategy", "tau", "rho"])


def accuracy_vs_density(frame: pd.DataFrame) -> pd.DataFrame:
    """Final test accuracy (mean, std over seeds) per method, strategy and density budget, for
    the methods run under a thinner budget than sparse60 (the study runs the best of each family
    there), else under any sparse or thin scenario; their standard run counts as density 1; thin
    scenarios are labelled by their strategy column; side experiments are left out."""
    from ..constraints.scenarios import get_scenario
    from ..study.definition import THINNER
    thinner = frame["scenario"].str.startswith(("sparse", "thin"))
    methods = set(frame.loc[frame["scenario"].isin(THINNER), "optimizer"]) or set(frame.loc[thinner, "optimizer"])
    keep = frame["optimizer"].isin(methods) & (thinner | (frame["scenario"] == "standard")) & \
        ~is_side_experiment(frame["method"])
    results = final_results(frame[keep])
    results["density"] = [get_scenario(n).density or 1.0 for n in results["scenario"]]
    thin = results["scenario"].str.startswith("thin")
    results.loc[thin, "sparsity_strategy"] = "thin (neurons)"
    return results.sort_values(["method", "sparsity_strategy", "density"], ascending=[True, True, False])


def study_cost(records: pd.DataFrame) -> dict:
    """What the study ran: finished/diverged runs (tuning and final), their training wall time, and
    how many ran on each device (``devices``: runs per "device, torch version", most first)."""
    done = records[records["status"].isin(["finished", "diverged"])]  # failed runs trained nothing
    last = done.sort_values("epoch").groupby("run_id").tail(1)
    tuning = last["eval_split"] == "val"
    devices = last["device"].value_counts() if "device" in last else pd.Series(dtype=int)
    return {"runs": len(last), "tuning_runs": int(tuning.sum()), "final_runs": int((~tuning).sum()),
            "train_hours": float(last["wall_s"].sum() / 3600),
            "devices": {str(k): int(v) for k, v in devices.items()}}


def devices_sentence(cost: dict) -> str:
    """Where the study's runs trained, when not all on one device; empty otherwise."""
    devices = cost.get("devices") or {}
    if len(devices) < 2:
        return ""
    parts = [f"{n:,} on {device}" for device, n in devices.items()]
    return (f"The runs trained on {len(devices)} machines ({'; '.join(parts)}). A seed fixes the initial "
            "weights and the batch order on either (both are drawn on the CPU), so a run's oracle calls are "
            "the same and its results differ only through floating-point rounding, which compounds over a "
            "run; the seconds in the report come "
            "from the timing pass, not from the runs' clocks.")


def hparams_of(results_row) -> dict:
    return json.loads(results_row["config_key"].split("|")[0])
