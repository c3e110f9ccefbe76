"""Tables over run records: final metrics per group over finished runs, failures counted apart."""
from __future__ import annotations

import numpy as np
import pandas as pd

FINAL_METRICS = ("test_acc", "test_loss", "test_starter_loss")
COSTS = ("grad_evals", "hvp_evals", "oracle_evals", "wall_s", "step")
STATUSES = ("finished", "diverged", "failed")
COUNTING_RULE = ("Means and standard deviations are over finished runs only. A diverged run (stopped by a "
                 "non-finite loss) has no final metric and is counted in the diverged column; a failed run "
                 "(an exception) in the failed column; neither enters a mean. Costs (sample gradients, "
                 "Hessian-vector products, oracle calls, wall time) are averaged over finished runs.")


def last_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The last record of every run."""
    return frame.sort_values(["run_id", "epoch"]).groupby("run_id").tail(1)


def run_status(last: pd.DataFrame) -> pd.Series:
    """Each run's status: the ``status`` column (from meta.json) where present, else from ``diverged``."""
    if "status" in last:
        return last["status"].astype(str)
    diverged = last["diverged"].fillna(False).astype(bool) if "diverged" in last else False
    return pd.Series(np.where(diverged, "diverged", "finished"), index=last.index)


def status_counts(frame: pd.DataFrame, by=("optimizer", "scenario")) -> pd.DataFrame:
    """Per group: the number of finished, diverged and failed runs (columns in that order)."""
    last = last_rows(frame)
    status = run_status(last)
    counts = pd.crosstab([last[k] for k in by], status)
    return counts.reindex(columns=list(STATUSES), fill_value=0).rename_axis(columns=None).astype(int)


def final_table(frame: pd.DataFrame, by=("optimizer", "scenario"),
                metrics=FINAL_METRICS) -> pd.DataFrame:
    """Per group, by :data:`COUNTING_RULE`: mean and std of the final metrics over finished runs,
    ``seeds`` (finished seeds), ``finished``/``diverged``/``failed`` run counts, costs averaged over
    finished runs. A group with no finished run keeps its row, with NaN metrics."""
    by = list(by)
    last = last_rows(frame)
    done = last[run_status(last) == "finished"]
    grouped = done.groupby(by)
    table = grouped[list(metrics)].agg(["mean", "std"])
    table.columns = [f"{m}_{s}" for m, s in table.columns]
    table["seeds"] = grouped["seed"].nunique()
    table["epoch"] = grouped["epoch"].max()
    for cost in COSTS:
        if cost in done:
            table[cost] = grouped[cost].mean()
    table = table.join(status_counts(frame, by), how="outer")
    table["seeds"] = table["seeds"].fillna(0).astype(int)
    if "family" in last:
        table["family"] = last.groupby(by)["family"].first()
    return table
