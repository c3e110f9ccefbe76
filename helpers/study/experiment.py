"""Run many configurations (skipping finished ones) and gather their records as one table."""
from __future__ import annotations

import sys
from concurrent.futures import Executor
from typing import Iterable

import pandas as pd
from tqdm.auto import tqdm

from ..engine.config import RunConfig
from .records import load_records, run_and_record, runs_dir


def run_all(configs: Iterable[RunConfig], executor: Executor | None = None, root=None,
            progress: bool = True, retries: int = 2, batch: bool = True) -> list[dict]:
    """Train every configuration not yet done; return the metadata of each, in order.

    With ``executor`` (anything with the ``concurrent.futures`` interface; None takes the one
    ``$FMNIST_DASK_SCHEDULER`` / ``$FMNIST_JOBS`` ask for, else runs in this process) runs go
    out in parallel through :func:`helpers.study.executors.run_many`: a failing run is recorded as
    failed, a run whose worker died is resubmitted up to ``retries`` times, the others go on.
    ``batch``: first train compatible configurations together, many models per step
    (:func:`helpers.engine.batched.run_batched`, same records up to rounding); the rest run singly.
    """
    configs = list(configs)
    root = str(runs_dir(root))
    from .executors import remove_temp_files, run_many, shared_executor
    executor = executor if executor is not None else shared_executor()
    if batch:
        from ..engine.batched import run_batched
        run_batched(configs, root, executor, progress=progress)
    if executor is not None:
        return run_many(configs, executor, root, progress=progress, retries=retries)
    remove_temp_files(root, {c.run_id for c in configs})
    bar = tqdm(total=len(configs), desc="runs", file=sys.stderr, disable=not progress)
    metas: list[dict | None] = [None] * len(configs)
    for i, config in enumerate(configs):
        metas[i] = run_and_record(config, root, progress=progress)
        bar.update(1)
    bar.close()
    return metas


def records_of(configs: Iterable[RunConfig], root=None) -> pd.DataFrame:
    """The records of exactly these configurations (in the tidy layout of ``load_records``)."""
    ids = {c.run_id for c in configs}
    frame = load_records(root)
    return frame[frame["run_id"].isin(ids)].reset_index(drop=True) if len(frame) else frame


def run_and_collect(configs: Iterable[RunConfig], executor: Executor | None = None, root=None,
                    progress: bool = True, batch: bool = True) -> pd.DataFrame:
    configs = list(configs)
    run_all(configs, executor, root, progress, batch=batch)
    return records_of(configs, root)
