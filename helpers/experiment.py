"""Run many configurations (skipping finished ones) and gather their records as one table."""
from __future__ import annotations

import sys
from concurrent.futures import Executor
from typing import Iterable

import pandas as pd
from tqdm.auto import tqdm

from .config import RunConfig
from .records import load_records, run_and_record, runs_dir


def run_all(configs: Iterable[RunConfig], executor: Executor | None = None, root=None,
            progress: bool = True) -> list[dict]:
    """Train every configuration not yet done; return the metadata of each, in order.

    With ``executor`` (anything with the ``concurrent.futures`` interface) runs go out in
    parallel; a failing run is recorded as failed and the others go on.
    """
    configs = list(configs)
    root = str(runs_dir(root))
    bar = tqdm(total=len(configs), desc="runs", file=sys.stderr, disable=not progress)
    metas: list[dict | None] = [None] * len(configs)
    if executor is None:
        for i, config in enumerate(configs):
            metas[i] = run_and_record(config, root, progress=progress)
            bar.update(1)
    else:
        futures = {executor.submit(run_and_record, c, root): i for i, c in enumerate(configs)}
        from concurrent.futures import as_completed
        for future in as_completed(futures):
            metas[futures[future]] = future.result()
            bar.update(1)
    bar.close()
    return metas


def records_of(configs: Iterable[RunConfig], root=None) -> pd.DataFrame:
    """The records of exactly these configurations (in the tidy layout of ``load_records``)."""
    ids = {c.run_id for c in configs}
    frame = load_records(root)
    return frame[frame["run_id"].isin(ids)].reset_index(drop=True) if len(frame) else frame


def run_and_collect(configs: Iterable[RunConfig], executor: Executor | None = None, root=None,
                    progress: bool = True) -> pd.DataFrame:
    configs = list(configs)
    run_all(configs, executor, root, progress)
    return records_of(configs, root)
