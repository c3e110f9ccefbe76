"""Tables over run records: final metrics per group (mean and std over seeds), time to target."""
from __future__ import annotations

import numpy as np
import pandas as pd

FINAL_METRICS = ("test_acc", "test_loss", "test_starter_loss")


def last_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The last record of every run."""
    return frame.sort_values(["run_id", "epoch"]).groupby("run_id").tail(1)


def final_table(frame: pd.DataFrame, by=("optimizer", "scenario"),
                metrics=FINAL_METRICS) -> pd.DataFrame:
    """Mean and std over seeds of each run's final metrics, plus seeds, epochs and diverged runs."""
    last = last_rows(frame)
    grouped = last.groupby(list(by))
    table = grouped[list(metrics)].agg(["mean", "std"])
    table.columns = [f"{m}_{s}" for m, s in table.columns]
    table["seeds"] = grouped["seed"].nunique()
    table["epoch"] = grouped["epoch"].max()
    table["grad_evals"] = grouped["grad_evals"].mean()
    table["wall_s"] = grouped["wall_s"].mean()
    table["diverged"] = grouped["diverged"].sum().astype(int)
    return table


def time_to_target(frame: pd.DataFrame, target: float, metric: str = "test_acc") -> pd.DataFrame:
    """Per run: epoch, sample-gradient evaluations, oracle calls and wall time when ``metric``
    first reaches ``target`` (NaN when never)."""
    rows = []
    for run_id, run in frame.sort_values("epoch").groupby("run_id"):
        hit = run[run[metric] >= target]
        first = hit.iloc[0] if len(hit) else None
        rows.append({"run_id": run_id, **{k: run[k].iloc[0] for k in ("optimizer", "scenario", "seed")},
                     "reached": first is not None,
                     **{f"{k}_to_target": (first[k] if first is not None else np.nan)
                        for k in ("epoch", "grad_evals", "oracle_evals", "wall_s")}})
    return pd.DataFrame(rows)
