import json
import os

import pytest
import torch

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
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "predictions.npz", "records.csv"]
    assert len(records.load_predictions(config.run_id)["pred"]) == 10_000
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
    assert set(frame["device"]) == {f"cpu, torch {torch.__version__}"}


def test_a_worker_run_reaches_the_runs_folder_with_its_predictions(tmp_path):
    from helpers.study.executors import compute_run, store_run
    config = RunConfig(optimizer="sgd", hparams={"lr": 0.05}, **QUICK)
    result = compute_run(config)
    store_run(result, tmp_path)
    assert sorted(p.name for p in (tmp_path / config.run_id).iterdir()) == \
        ["meta.json", "predictions.npz", "records.csv"]
    assert len(records.load_predictions(config.run_id, tmp_path)["pred"]) == 10_000


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


def test_meta_and_records_carry_the_versions(runs_root):
    config = RunConfig(optimizer="sgd", hparams={"lr": 0.05}, epochs=1, train_fraction=0.02)
    run_and_record(config)
    stored = read_meta(config.run_id)
    assert stored["versions"] == config.versions
    assert set(config.versions) == {"protocol", "engine", "optimizer"}
    frame = load_records()
    assert set(frame["protocol"]) == {config.versions["protocol"]}
    assert json.loads(frame["versions"].iloc[0]) == config.versions


def _fake_run(root, run_id, versions=None, status="finished"):
    folder = root / run_id
    folder.mkdir(parents=True)
    cfg = RunConfig(optimizer="sgd").to_dict()
    meta = {"run_id": run_id, "config": cfg, "seed": 0, "status": status}
    if versions:
        meta["versions"] = versions
    (folder / "meta.json").write_text(json.dumps(meta))
    (folder / "records.csv").write_text("epoch,test_acc\n1.0,50.0\n")
    return folder


def test_a_corrupt_meta_json_names_the_file_and_the_recovery(runs_root):
    folder = _fake_run(runs_root, "sgd-standard-s0-broken")
    (folder / "meta.json").write_text('{"run_id": "sgd-st')
    with pytest.raises(records.CorruptRecord, match="delete the folder .*sgd-standard-s0-broken.* recomputed") as error:
        load_records()
    assert str(folder / "meta.json") in str(error.value)


def test_old_protocol_runs_move_to_the_archive_with_a_readme(tmp_path):
    root = tmp_path / "runs"
    _fake_run(root, "old-1")
    _fake_run(root, "old-2")
    _fake_run(root, "new-1", versions={"protocol": 2, "engine": 1, "optimizer": 1})
    assert set(load_records(root)["protocol"]) == {1, 2}
    assert set(load_records(root, protocol=2)["run_id"]) == {"new-1"}
    dest = tmp_path / "archive" / "v1" / "runs"
    assert records.archive_runs(1, root, dest, dry_run=True) == ["old-1", "old-2"]
    assert sorted(p.name for p in root.iterdir()) == ["new-1", "old-1", "old-2"]
    assert records.archive_runs(1, root, dest) == ["old-1", "old-2"]
    assert sorted(p.name for p in root.iterdir()) == ["new-1"]
    assert sorted(p.name for p in dest.iterdir()) == ["old-1", "old-2"]
    assert "protocol v1" in (dest.parent / "README.md").read_text()
    assert set(load_records(dest)["protocol"]) == {1}
    with pytest.raises(ValueError, match="current"):
        records.archive_runs(2, root, dest)


def test_predictions_are_written_before_the_meta_and_read_back(tmp_path, monkeypatch):
    import numpy as np
    config = RunConfig(optimizer="sgd", **QUICK)
    predictions = {"pred": np.arange(10) % 10, "loss": np.linspace(0, 1, 10)}
    order = []
    real_text, real_npz = records.atomic_write_text, records.atomic_write_npz
    monkeypatch.setattr(records, "atomic_write_text", lambda p, t: (order.append(p.name), real_text(p, t)))
    monkeypatch.setattr(records, "atomic_write_npz", lambda p, a: (order.append(p.name), real_npz(p, a)))
    records.write_run(config, [{"epoch": 1.0}], {"run_id": config.run_id, "status": "finished"}, tmp_path,
                      predictions=predictions)
    assert order == ["records.csv", "predictions.npz", "meta.json"]
    stored = records.load_predictions(config.run_id, tmp_path)
    assert stored["pred"].dtype == np.uint8 and stored["loss"].dtype == np.float32
    assert stored["pred"].tolist() == list(range(10))
    np.testing.assert_allclose(stored["loss"], predictions["loss"], rtol=1e-6)
    assert records.load_predictions("no-such-run", tmp_path) is None
