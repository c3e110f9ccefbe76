import json
import os

import pytest

from helpers.study import records
from helpers.engine.config import RunConfig
from helpers.study.records import atomic_write_text, load_records, read_meta, run_and_record

QUICK = dict(epochs=1, train_fraction=0.1)


def test_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "records.csv"
    atomic_write_text(target, "old\n")

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, "new\n" * 1000)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records.csv"]


def test_run_is_written_reused_and_loaded(runs_root):
    config = RunConfig(optimizer="sgd", hparams={"lr": 0.05}, seed=3, **QUICK)
    meta = run_and_record(config)
    assert meta["status"] == "finished"
    folder = runs_root / config.run_id
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "records.csv"]
    stored = json.loads((folder / "meta.json").read_text())
    for key in ("config", "seed", "run_id", "environment", "started", "ended", "hparams"):
        assert key in stored
    for key in ("torch", "git_commit", "device", "python"):
        assert key in stored["environment"]
    again = run_and_record(config)
    assert again["started"] == meta["started"]  # reused, not recomputed
    frame = load_records()
    assert set(frame["run_id"]) == {config.run_id}
    assert {"optimizer", "scenario", "seed", "status", "test_acc", "grad_evals"} <= set(frame.columns)


def test_failed_and_diverged_runs_are_recorded(runs_root, monkeypatch):
    diverging = RunConfig(optimizer="sgd", hparams={"lr": 1e6}, **QUICK)
    assert run_and_record(diverging)["status"] == "diverged"

    def broken(*args, **kwargs):
        raise RuntimeError("worker lost")

    monkeypatch.setattr("helpers.engine.train.train", broken)
    failing = RunConfig(optimizer="sgd", hparams={"lr": 0.01}, **QUICK)
    meta = run_and_record(failing)
    assert meta["status"] == "failed" and "worker lost" in meta["error"]
    assert read_meta(failing.run_id)["status"] == "failed"
    assert set(load_records()["status"]) == {"diverged", "failed"}
