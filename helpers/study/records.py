"""Run records on disk: ``outputs/runs/<run_id>/{records.csv, meta.json}``.

Both files are written atomically (temporary file in the same directory, then rename);
``meta.json`` is written last, so its presence marks a run as done. A finished or diverged
run is reused, never recomputed; a failed one (an exception) is recorded with its error
and retried on the next call.
"""
from __future__ import annotations

import functools
import json
import os
import tempfile
import traceback
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ..engine.config import RunConfig
from ..runtime import ROOT, environment

OUTPUTS = ROOT / "outputs"
RUNS_DIR = OUTPUTS / "runs"
DONE = ("finished", "diverged")


def runs_dir(root: str | os.PathLike | None = None) -> Path:
    return Path(root) if root is not None else Path(os.environ.get("FMNIST_RUNS_DIR", RUNS_DIR))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_meta(run_id: str, root=None) -> dict | None:
    path = runs_dir(root) / run_id / "meta.json"
    return json.loads(path.read_text()) if path.is_file() else None


def is_done(config: RunConfig, root=None) -> bool:
    meta = read_meta(config.run_id, root)
    return meta is not None and meta.get("status") in DONE


def write_run(config: RunConfig, records: list[dict], meta: dict, root=None) -> Path:
    folder = runs_dir(root) / config.run_id
    if records:
        atomic_write_text(folder / "records.csv", pd.DataFrame(records).to_csv(index=False))
    atomic_write_text(folder / "meta.json", json.dumps(meta, indent=1, sort_keys=True, default=str))
    return folder


@functools.lru_cache(maxsize=4)
def _data(scaling: str, val_size: int, train_fraction: float, device: str | None):
    from ..problem.data import load
    return load(scaling=scaling, val_size=val_size, train_fraction=train_fraction, device=device)


def data_for(config: RunConfig, device: str | None = None):
    """The (process-cached) data a configuration trains and evaluates on."""
    val_size = config.val_size if config.eval_split == "val" else 0
    return _data(config.scaling, val_size, config.train_fraction, device)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def run_and_record(config: RunConfig, root=None, progress: bool = False, device: str | None = None,
                   raise_errors: bool = False) -> dict:
    """Train ``config`` unless a finished record exists; write it; return its metadata."""
    from ..engine.train import train
    existing = read_meta(config.run_id, root)
    if existing is not None and existing.get("status") in DONE:
        return existing
    meta = start_meta(config)
    try:
        data = data_for(config, device)
        meta["environment"] = environment(data.device)
        result = train(config, data, progress=progress)
        _check_density(config, result.records, result.model, len(data.train))
    except Exception as exc:  # recorded, so the sweep goes on
        write_run(config, [], failed_meta(meta, exc), root)
        if raise_errors:
            raise
        return meta
    write_run(config, result.records, finished_meta(meta, result), root)
    return meta


def start_meta(config: RunConfig) -> dict:
    """The metadata a run starts with: what produced it (the engine adds ``environment``)."""
    from ..optimizers import get_spec
    return {"run_id": config.run_id, "config": config.to_dict(), "seed": config.seed,
            "family": get_spec(config.optimizer).family, "hparams": config.effective_hparams,
            "batch_size": config.effective_batch_size, "started": _now()}


def finished_meta(meta: dict, result) -> dict:
    """``meta`` marked finished or diverged, with the final record (``result``: a RunResult)."""
    final = result.records[-1] if result.records else {}
    meta.update(status="diverged" if result.diverged else "finished", ended=_now(),
                final={k: v for k, v in final.items() if k != "diverged"})
    return meta


def failed_meta(meta: dict, exc: BaseException) -> dict:
    """``meta`` marked failed with ``exc`` (call inside its ``except`` block for the traceback)."""
    meta.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                traceback=traceback.format_exc(), ended=_now())
    return meta


def _check_density(config: RunConfig, records: list[dict], model=None, n_train: int | None = None) -> None:
    """Records and the returned model must respect the scenario's budget (see helpers.constraints.scenarios)."""
    from ..constraints.scenarios import check_model, check_records
    check_records(config, records, n_train)
    if model is not None and records and not records[-1].get("diverged"):
        check_model(model, config.scenario, what=f"the model of run {config.run_id}")


def load_records(root=None, status: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Every run's records under ``root`` as one DataFrame, with its configuration as columns."""
    frames = []
    for meta_path in sorted(runs_dir(root).glob("*/meta.json")):
        meta = json.loads(meta_path.read_text())
        if status is not None and meta.get("status") not in status:
            continue
        csv = meta_path.parent / "records.csv"
        frame = pd.read_csv(csv) if csv.is_file() else pd.DataFrame([{}])
        cfg = meta["config"]
        frame = frame.assign(run_id=meta["run_id"], optimizer=cfg["optimizer"],
                             family=meta.get("family"), scenario=cfg["scenario"],
                             seed=cfg["seed"], tag=cfg.get("tag", ""), status=meta["status"],
                             schedule=cfg["schedule"], batch_size=str(meta.get("batch_size")),
                             eval_split=cfg["eval_split"], train_fraction=cfg["train_fraction"],
                             scaling=cfg["scaling"], planned_epochs=cfg["epochs"],
                             sparsity_strategy=cfg.get("sparsity_strategy", "projection"),
                             hparams=json.dumps(meta.get("hparams", {}), sort_keys=True),
                             error=meta.get("error", ""))
        frames.append(frame)
    if not frames:
        return pd.DataFrame()
    from ..constraints.scenarios import within_budget
    frame = pd.concat(frames, ignore_index=True)
    return frame.assign(within_budget=within_budget(frame))
