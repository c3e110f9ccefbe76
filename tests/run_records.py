"""Checks on runs directories shared by the executor tests (test_dask, test_sweep)."""
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.study.records import load_records

RTOL, ATOL = 1e-6, 1e-9


def assert_same_records(root_a, root_b, run_ids) -> None:
    """Both roots hold exactly ``run_ids`` with equal records (numbers to RTOL/ATOL; wall time aside)."""
    a, b = (load_records(r).sort_values(["run_id", "epoch"]).reset_index(drop=True)
            for r in (root_a, root_b))
    assert set(a["run_id"]) == set(b["run_id"]) == set(run_ids)
    assert list(a["run_id"]) == list(b["run_id"])
    for column in a.columns:
        if column == "wall_s":
            continue
        if pd.api.types.is_numeric_dtype(a[column]) and not pd.api.types.is_bool_dtype(a[column]):
            np.testing.assert_allclose(a[column].to_numpy(float), b[column].to_numpy(float),
                                       rtol=RTOL, atol=ATOL, equal_nan=True, err_msg=column)
        else:
            assert a[column].astype(str).tolist() == b[column].astype(str).tolist(), column


def leftovers(root: Path) -> list[Path]:
    """Anything in a runs directory that is not a run's records.csv / meta.json."""
    return [p for p in Path(root).rglob("*")
            if not (p.is_dir() or p.name in ("records.csv", "meta.json"))]
