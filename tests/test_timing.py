"""The timing pass (helpers.study.timing): its table is what the planner reads, one row per
registered method with positive figures; the planner's estimate follows the table; the
busy-machine rule refuses on a faked load; the run-cost arithmetic by hand."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest

from helpers.optimizers import names
from helpers.study import readout, timing
from helpers.study.planner import study_plan

TINY = timing.Settings(target_s=0.001, warmup_s=0.0, long_s=0.0, k=2, check=False, train_fraction=0.005)


@pytest.fixture(scope="module")
def table_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("timing") / "seconds_per_epoch.csv"
    timing.timing_pass(path=path, settings=TINY, progress=False)
    return path


def test_one_row_per_registered_method_with_the_columns_the_planner_reads(table_path):
    table = pd.read_csv(table_path)
    assert sorted(table["method"]) == sorted(names())
    assert {"method", "seconds_per_epoch", "batched_seconds_per_epoch"} <= set(table.columns)
    assert (table["seconds_per_epoch"] > 0).all()
    assert (table["seconds_per_step"] > 0).all() and (table["oracle_per_step"] > 0).all()
    assert (table["threads"] == 1).all()
    assert not table["idle"].any()  # the rule was switched off: not an idle measurement
    batched = table.set_index("method")["batched_seconds_per_epoch"]
    assert batched["sgd"] > 0 and batched["adam"] > 0  # stacked rules batch
    assert math.isnan(batched["kfac"]) and math.isnan(batched["gd"])  # module path / full batch
    header = timing.read_header(table_path)
    assert header["torch_threads"] == 1 and header["environment"]["git_commit"]
    assert header["idle"] is False
    costs, source = readout.cost_table(table_path)
    assert set(costs) == set(names()) and "timing pass" in source
    assert costs["sgd"] == batched["sgd"]  # the batched figure first


def test_the_planners_estimate_follows_the_table(table_path, tmp_path):
    plan = study_plan(None, "ci", tmp_path / "runs")
    first = readout.estimate(plan, readout.cost_table(table_path)[0])["seconds"].sum()
    table = pd.read_csv(table_path)
    slower = table.assign(batched_seconds_per_epoch=table["batched_seconds_per_epoch"] * 3,
                          seconds_per_epoch=table["seconds_per_epoch"] * 3)
    path = tmp_path / "seconds_per_epoch.csv"
    slower.to_csv(path, index=False)
    second = readout.estimate(plan, readout.cost_table(path)[0])["seconds"].sum()
    assert first > 0 and second == pytest.approx(3 * first)


def test_seconds_per_run_from_the_table(table_path):
    runs = timing.seconds_per_run(table_path).set_index("method")
    assert set(runs.index) == set(names())
    assert runs.loc["sgd", "engine_k"] == 2 and runs.loc["kfac", "engine_k"] == 1
    assert runs.loc["sgd_basic", "oracle_calls"] == 60_000  # basic SGD: one epoch
    for m in ("sgd", "kfac", "sgd_basic"):
        row = runs.loc[m]
        assert row["seconds_per_run"] == pytest.approx(row["seconds_per_epoch"] * row["oracle_calls"] / 60_000)
    single = timing.seconds_per_run(table_path, batched=False).set_index("method")
    assert single.loc["sgd", "seconds_per_epoch"] == pd.read_csv(table_path).set_index("method").loc[
        "sgd", "seconds_per_epoch"]


def test_batch_size_table_and_the_wall_time_of_oracle_calls(tmp_path):
    path = tmp_path / "by_batch.csv"
    timing.timing_pass(["sgd"], path, TINY, progress=False, batch_sizes=[8, "full"])
    timing.timing_pass(["sgd"], path, TINY, progress=False, batch_sizes=[64])
    table = timing.read_table(path)
    assert list(table["batch_size"]) == ["8", "64", "full"]
    assert (table["seconds_per_epoch"] > 0).all()
    assert table["batched_seconds_per_epoch"].notna().tolist() == [True, True, False]  # full batch: K = 1
    per_call = timing.seconds_per_oracle_call("sgd", 8, path=path)
    assert per_call == pytest.approx(table["seconds_per_epoch"][0] / 60_000)
    assert timing.wall_seconds("sgd", 30_000, 8, path=path) == pytest.approx(30_000 * per_call)
    with pytest.raises(KeyError, match="not in the timing table"):
        timing.seconds_per_oracle_call("sgd", "full", batched=True, path=path)
    assert timing.parse_batch_sizes("1,8,full") == [1, 8, "full"]
    for bad in ("0", "60001", "-3", "x"):
        with pytest.raises(ValueError, match="from 1 to 60,000"):
            timing.parse_batch_sizes(bad)


def test_a_pass_over_some_methods_keeps_the_other_rows(table_path, tmp_path):
    path = tmp_path / "t.csv"
    pd.read_csv(table_path).to_csv(path, index=False)
    before = pd.read_csv(path).set_index("method")
    timing.timing_pass(["sgd"], path, TINY, progress=False)
    after = pd.read_csv(path).set_index("method")
    assert sorted(after.index) == sorted(names())
    assert after.loc["adam", "seconds_per_epoch"] == before.loc["adam", "seconds_per_epoch"]
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temp files


@pytest.fixture
def quiet_machine(monkeypatch):
    """A machine with nothing else running, whatever this one does now."""
    monkeypatch.setattr(timing.os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    monkeypatch.setattr(timing, "_busy_cpu", lambda: 100.0)
    monkeypatch.setattr(timing, "_own_cpu", lambda: 5.0)
    monkeypatch.setattr(timing, "project_processes", lambda: [])


def test_an_idle_machine_passes_the_rule(quiet_machine):
    assert timing.busy_reasons(timing.Settings(), sample_s=0.01) == []


def test_a_high_load_average_refuses_the_pass(quiet_machine, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(timing.os, "getloadavg", lambda: (3.0, 2.0, 1.0))
    with pytest.raises(timing.MachineBusy, match="load average 3.00"):
        timing.check_idle(timing.Settings(), sample_s=0.01)
    path = tmp_path / "t.csv"
    with pytest.raises(timing.MachineBusy):
        timing.timing_pass(["sgd"], path, timing.Settings(train_fraction=0.005, sample_s=0.01))
    assert not path.exists()
    assert timing.main(["--methods", "sgd", "--out", str(path)]) == 3
    assert "machine busy" in capsys.readouterr().err and not path.exists()
    reasons = timing.check_idle(timing.Settings(force=True), sample_s=0.01)
    assert reasons and "WARNING" in capsys.readouterr().err


def test_other_processes_cpu_or_training_refuse(quiet_machine, monkeypatch):
    clock = iter(range(0, 1000, 5))
    monkeypatch.setattr(timing, "_busy_cpu", lambda: float(next(clock)))  # others: 5 CPU s per call
    assert any("other processes use" in r for r in timing.busy_reasons(timing.Settings(), sample_s=0.01))
    monkeypatch.setattr(timing, "_busy_cpu", lambda: 100.0)
    monkeypatch.setattr(timing, "project_processes", lambda: ["123: python -m helpers sweep"])
    assert any("helpers sweep" in r for r in timing.busy_reasons(timing.Settings(), sample_s=0.01))


def test_a_disturbed_measurement_is_taken_again_then_stops_the_pass(monkeypatch):
    clean = timing.Timing("sgd", 1, 10.0, 0.01, 64, 10, "64", 0.0, 1.0, others_cpu=0.0)
    busy = timing.Timing("sgd", 1, 10.0, 0.01, 64, 10, "64", 0.0, 1.0, others_cpu=1.0)
    results = iter([busy, clean])
    monkeypatch.setattr(timing, "measure", lambda *a, **k: next(results))
    assert timing.measure_idle("sgd", None, 1, timing.Settings(pause_s=0.0), []) is clean
    calls = []
    monkeypatch.setattr(timing, "measure", lambda *a, **k: calls.append(1) or busy)
    with pytest.raises(timing.MachineBusy, match="1.00 cores"):
        timing.measure_idle("sgd", None, 1, timing.Settings(pause_s=0.0), [])
    assert len(calls) == 2
    noted: list[str] = []
    assert timing.measure_idle("sgd", None, 1, timing.Settings(pause_s=0.0, force=True), noted) is busy
    assert noted and len(calls) == 3  # forced: warned and noted, not repeated


def test_run_cost_by_hand():
    config = SimpleNamespace(epochs=3, grad_budget=2_000, epoch_batch_sizes=lambda n: [100, 200, 400])
    step = {100: (0.1, 100.0), 400: (0.2, 400.0)}
    # interpolated at 200: seconds per call 1e-3 at 100, 5e-4 at 400 -> 7.5e-4 at 200 (log midpoint)
    assert timing.step_at(step, 200) == pytest.approx((0.15, 200.0))
    # epoch 1: start 1 s + 10 steps x 0.1 s, 200 + 1,000 calls; epoch 2: 1,200 calls of which 800
    # fit the budget (2/3): (1 + 5 x 0.15) x 2/3 s
    seconds, calls = timing.run_cost(config, 1_000, step, (1.0, 200.0))
    assert calls == pytest.approx(2_000)
    assert seconds == pytest.approx(2.0 + (1.0 + 0.75) * 2 / 3)
    assert timing.timed_sizes([32, 48, 72, 108, 162]) == [32, 72, 162]
