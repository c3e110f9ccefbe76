"""Tables over run records: final metrics per group (mean and std over seeds)."""
from __future__ import annotations

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
    table["oracle_evals"] = grouped["oracle_evals"].mean()
    table["wall_s"] = grouped["wall_s"].mean()
    table["diverged"] = grouped["diverged"].sum().astype(int)
    table["family"] = grouped["family"].first()
    return table
