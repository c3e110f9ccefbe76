"""Run records on disk: ``outputs/runs/<run_id>/{records.csv, predictions.npz, meta.json}``.

Every file is written atomically (temporary file in the same directory, then rename);
``meta.json`` is written last, so its presence marks a run as done. ``predictions.npz`` holds a
final run's per-sample test predictions and losses. ``meta.json`` holds the ``versions`` its
run id hashes (protocol, engine, update rule); records without them are protocol 1. A finished or diverged
run is reused, never recomputed; a failed one (an exception) is recorded with its error
and retried on the next call.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import tempfile
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from ..engine.config import RunConfig
from ..runtime import ROOT, environment

OUTPUTS = ROOT / "outputs"
RUNS_DIR = OUTPUTS / "runs"
ARCHIVE_DIR = OUTPUTS / "archive"
PREDICTIONS = "predictions.npz"
DONE = ("finished", "diverged")


def runs_dir(root: str | os.PathLike | None = None) -> Path:
    return Path(root) if root is not None else Path(os.environ.get("FMNIST_RUNS_DIR", RUNS_DIR))


def _atomic_write(path: Path, mode: str, write) -> None:
    """Write ``path`` through ``write(handle)`` so that readers see the old file or the whole new one
    (a temporary file in the same folder, flushed to disk, then renamed over it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    _atomic_write(path, "w", lambda handle: handle.write(text))


class CorruptRecord(ValueError):
    """A run's meta.json that cannot be read as JSON."""


def read_meta_file(path: Path) -> dict:
    """``meta.json`` as a dict; a corrupt one raises :class:`CorruptRecord` naming it and the fix."""
    try:
        return json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise CorruptRecord(f"{path} is corrupt ({error}); delete the folder {Path(path).parent} "
                            f"and the run is recomputed on the next sweep") from error


def read_meta(run_id: str, root=None) -> dict | None:
    path = runs_dir(root) / run_id / "meta.json"
    return read_meta_file(path) if path.is_file() else None


def is_done(config: RunConfig, root=None) -> bool:
    meta = read_meta(config.run_id, root)
    return meta is not None and meta.get("status") in DONE


def atomic_write_npz(path: Path, arrays: dict) -> None:
    """``np.savez_compressed`` of ``arrays`` to ``path``, atomically."""
    _atomic_write(path, "wb", lambda handle: np.savez_compressed(
        handle, **{k: np.asarray(v) for k, v in arrays.items()}))


def write_predictions(path: Path, predictions: dict) -> None:
    """Per-sample test predictions {"pred": uint8[n], "loss": float32[n]}, compressed, atomically."""
    atomic_write_npz(path, {"pred": np.asarray(predictions["pred"], dtype=np.uint8),
                            "loss": np.asarray(predictions["loss"], dtype=np.float32)})


def write_run(config: RunConfig, records: list[dict], meta: dict, root=None,
              predictions: dict | None = None) -> Path:
    """Write a run's records, its ``predictions`` ({"pred": uint8[n], "loss": float32[n]}, if
    any) and last its meta.json."""
    folder = runs_dir(root) / config.run_id
    if records:
        atomic_write_text(folder / "records.csv", pd.DataFrame(records).to_csv(index=False))
    if predictions:
        write_predictions(folder / PREDICTIONS, predictions)
    atomic_write_text(folder / "meta.json", json.dumps(meta, indent=1, sort_keys=True, default=str))
    return folder


def load_predictions(run_id: str, root=None) -> dict | None:
    """A final run's per-sample test predictions {"pred", "loss"}, or None if it stored none."""
    path = runs_dir(root) / run_id / PREDICTIONS
    if not path.is_file():
        return None
    with np.load(path) as stored:
        return {k: stored[k] for k in stored.files}


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
    write_run(config, result.records, finished_meta(meta, result), root,
              predictions=getattr(result, "predictions", None))
    return meta


def start_meta(config: RunConfig) -> dict:
    """The metadata a run starts with: what produced it (the engine adds ``environment``)."""
    from ..optimizers import get_spec
    return {"run_id": config.run_id, "config": config.to_dict(), "seed": config.seed,
            "family": get_spec(config.optimizer).family, "hparams": config.effective_hparams,
            "batch_size": config.effective_batch_size, "versions": config.versions, "started": _now()}


def finished_meta(meta: dict, result) -> dict:
    """``meta`` marked finished or diverged, with the final record (``result``: a RunResult) and
    the final weights' Euclidean norm over every parameter (``final["weight_norm"]``, of the
    trained weights, not of an average the method evaluates; NaN when diverged)."""
    final = result.records[-1] if result.records else {}
    meta.update(status="diverged" if result.diverged else "finished", ended=_now(),
                final={k: v for k, v in final.items() if k != "diverged"})
    if final:
        meta["final"]["weight_norm"] = weight_norm(getattr(result, "model", None))
    return meta


def weight_norm(model) -> float:
    """sqrt(sum of every parameter squared) of ``model`` (NaN without one, or when not finite)."""
    import math
    if model is None:
        return math.nan
    total = sum(float(p.detach().double().pow(2).sum()) for p in model.parameters())
    return math.sqrt(total) if math.isfinite(total) else math.nan


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


def load_records(root=None, status: tuple[str, ...] | None = None, protocol: int | None = None) -> pd.DataFrame:
    """Every run's records under ``root`` as one DataFrame, with its configuration as columns
    (only runs of ``status`` / of study ``protocol`` when given)."""
    frames = []
    for meta_path in sorted(runs_dir(root).glob("*/meta.json")):
        meta = read_meta_file(meta_path)
        if status is not None and meta.get("status") not in status:
            continue
        if protocol is not None and versions_of(meta)["protocol"] != protocol:
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
                             versions=json.dumps(versions_of(meta), sort_keys=True),
                             protocol=versions_of(meta)["protocol"],
                             weight_norm=(meta.get("final") or {}).get("weight_norm", np.nan),
                             device=_device_of(meta),
                             error=meta.get("error", ""))
        frames.append(frame)
    if not frames:
        return pd.DataFrame()
    from ..constraints.scenarios import within_budget
    frame = pd.concat(frames, ignore_index=True)
    return frame.assign(within_budget=within_budget(frame))


def _device_of(meta: dict) -> str:
    """Where a run trained, with its torch: "cpu, torch 2.14.1+cu130", "NVIDIA H200, torch 2.11.0+cu130"."""
    env = meta.get("environment") or {}
    name = env.get("device_name") or env.get("device") or "unknown"
    return f"{name}, torch {env['torch']}" if env.get("torch") else name


def versions_of(meta: dict) -> dict:
    """The versions a run was computed under (records written before versions: protocol 1)."""
    return meta.get("versions") or {"protocol": 1}


ARCHIVE_README = """# Run records of study protocol v{protocol}

These runs were computed under protocol v{protocol} and are superseded by the protocol of
`helpers/study/definition.py` (PROTOCOL_VERSION {current}). They are kept for reference and never
mixed into the study's tables. Read them with
`helpers.study.records.load_records("outputs/archive/v{protocol}/runs")`.

Protocol v1 (sessions 1-3): 4 configurations x 2 epochs of tuning per method, cosine decay planned
over 10 epochs (budgeted methods stopped before it annealed), weight decay paired with the rate by
a fixed permutation, 3 seeds, l2/sparse60/thinner budgets only for the methods ranked best.
"""


def archive_runs(protocol: int = 1, root=None, dest=None, dry_run: bool = False) -> list[str]:
    """Move every run of ``protocol`` out of ``root`` into ``dest`` (default
    ``outputs/archive/v<protocol>/runs``), with a README beside it; return the run ids moved
    (or that would be, with ``dry_run``). Unreadable runs stay where they are."""
    from .definition import PROTOCOL_VERSION
    if protocol == PROTOCOL_VERSION:
        raise ValueError(f"protocol {protocol} is the current one; only older runs are archived")
    source = runs_dir(root)
    dest = Path(dest) if dest is not None else ARCHIVE_DIR / f"v{protocol}" / "runs"
    moved = []
    for meta_path in sorted(source.glob("*/meta.json")):
        try:
            meta = read_meta_file(meta_path)
        except CorruptRecord as error:
            print(f"left in place: {error}", file=sys.stderr)
            continue
        if versions_of(meta)["protocol"] != protocol:
            continue
        moved.append(meta_path.parent.name)
        if not dry_run:
            dest.mkdir(parents=True, exist_ok=True)
            os.replace(meta_path.parent, dest / meta_path.parent.name)
    if moved and not dry_run:
        atomic_write_text(dest.parent / "README.md",
                          ARCHIVE_README.format(protocol=protocol, current=PROTOCOL_VERSION))
    return moved


# ---------------------------------------------------------------- measurements
# Measurements along a run's trajectory (the gradient-variance study): one folder per
# measurement, ``outputs/measurements/<measurement_id>/{measurements.csv, meta.json}``, beside
# ``outputs/runs``, written as runs are (atomically, meta.json last); a folder with its
# meta.json is done and never measured again.
MEASUREMENT_VERSION = 1  # bump when a change of helpers.evidence.variance moves its numbers


def measurements_dir(root=None) -> Path:
    """``outputs/measurements`` (the sibling of the runs folder ``root``)."""
    return runs_dir(root).parent / "measurements"


def measurement_id(kind: str, config: RunConfig, epochs, batch_sizes) -> str:
    import hashlib
    key = json.dumps({"kind": kind, "run": config.run_id, "epochs": list(epochs), "batch_sizes": list(batch_sizes),
                      "version": MEASUREMENT_VERSION}, sort_keys=True, default=str)
    return f"{kind}-{config.run_id}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def measurement_done(mid: str, root=None, retry_failed: bool = False) -> bool:
    """Whether measurement ``mid`` is on disk: finished, or failed (a result, as a failed run is,
    unless ``retry_failed``)."""
    path = measurements_dir(root) / mid / "meta.json"
    if not path.is_file():
        return False
    status = read_meta_file(path).get("status")
    return status == "finished" or (status == "failed" and not retry_failed)


def measure_and_record(measurement, root=None, progress: bool = False, device: str | None = None) -> str:
    """Take ``measurement`` (a :class:`helpers.study.planner.Measurement`) unless done; write its
    table and meta.json (a failure is recorded with its error and retried next time); return its id."""
    mid = measurement.measurement_id
    if measurement_done(mid, root, retry_failed=True):
        return mid
    folder = measurements_dir(root) / mid
    meta = {"measurement_id": mid, "kind": measurement.kind, "run_id": measurement.config.run_id,
            "config": measurement.config.to_dict(), "epochs": list(measurement.epochs),
            "batch_sizes": list(measurement.batch_sizes), "row": measurement.row, "method": measurement.method,
            "study": measurement.study, "version": MEASUREMENT_VERSION, "started": _now()}
    try:
        from ..evidence.variance import trajectory_variance
        data = data_for(measurement.config, device)
        meta["environment"] = environment(data.device)
        table = trajectory_variance(measurement.config, data, measurement.epochs, measurement.batch_sizes,
                                    progress=progress)
    except Exception as exc:
        meta.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(),
                    ended=_now())
        atomic_write_text(folder / "meta.json", json.dumps(meta, indent=1, sort_keys=True, default=str))
        return mid
    atomic_write_text(folder / "measurements.csv", table.assign(measurement_id=mid).to_csv(index=False))
    meta.update(status="finished", ended=_now(), rows=len(table))
    atomic_write_text(folder / "meta.json", json.dumps(meta, indent=1, sort_keys=True, default=str))
    return mid


def load_measurements(root=None, kind: str | None = None) -> pd.DataFrame:
    """Every finished measurement's table under ``measurements_dir(root)`` as one DataFrame."""
    frames = []
    for meta_path in sorted(measurements_dir(root).glob("*/meta.json")):
        meta = read_meta_file(meta_path)
        if meta.get("status") != "finished" or (kind is not None and meta.get("kind") != kind):
            continue
        frames.append(pd.read_csv(meta_path.parent / "measurements.csv").assign(
            row=meta.get("row", ""), study=meta.get("study", ""), run_id=meta["run_id"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
