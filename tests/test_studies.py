"""The studies beyond the main comparison (issue 15) as rows of the one definition: what they plan
(on fake records), how time to target is scored, bad inputs, their cost apart from the main study."""
import math
from dataclasses import replace

import pandas as pd
import pytest

from helpers.engine.config import RunConfig
from helpers.study import definition as D
from helpers.study import planner as PL
from helpers.study import readout as R
from helpers.study import tuning as T

FULL = D.get_profile("full")


def fake_rows(config):
    """Two records per run: half way and at the end. Accuracy peaks at the grid's centre; a
    horizon row's trials peak at 4 epochs; the half-way record is 1 point lower."""
    grid = T.grid_exponents(config.optimizer, 7)
    j = 2 * math.log10(config.hparams["lr"])
    acc = 90.5 - 0.5 * (j - grid[3]) ** 2 + {"adam": 0.3, "sgd_schedulefree": -0.2}.get(config.optimizer, 0.0)
    if config.evals_per_epoch == D.HORIZON_EVALS:
        acc -= 0.4 * abs(config.epochs - 4)
    budget = config.grad_budget
    return [dict(run_id=config.run_id, status="finished", epoch=config.epochs / 2, oracle_evals=budget / 2,
                 val_acc=acc - 1, val_loss=(101 - acc) / 50),
            dict(run_id=config.run_id, status="finished", epoch=float(config.epochs), oracle_evals=budget,
                 val_acc=acc, val_loss=(100 - acc) / 50)]


def simulate(profile, max_rounds=40):
    frame = pd.DataFrame(columns=["run_id", "status", "epoch", "oracle_evals", "val_acc", "val_loss"])
    seen = {}
    for _ in range(max_rounds):
        state = PL.study_plan(frame, profile)
        new = [row for r in state.runnable for row in fake_rows(r.config)]
        seen.update({r.config.run_id: r for r in state.runnable})
        if not new:
            return state, seen, frame
        frame = pd.concat([frame, pd.DataFrame(new)], ignore_index=True)
    raise AssertionError("the plan never finished")


def test_batch_rows_plan_every_batch_size_at_both_budgets():
    state = PL.study_plan(pd.DataFrame(), FULL)
    grid = {}
    for r in state.runnable:
        if r.row.startswith("batch"):
            grid.setdefault(r.row, []).append(r.config)
    small = {b: grid[f"batch{'full' if b == 'full' else b}-1ep"] for b in D.BATCH_SIZES}
    for b, configs in small.items():
        assert len(configs) == 7 * len(D.BATCH_METHODS)
        assert {c.optimizer for c in configs} == set(D.BATCH_METHODS)
        assert {c.effective_batch_size for c in configs} == {b}
        assert {c.grad_budget for c in configs} == {50_000} and {c.epochs for c in configs} == {1}
    large = {r: cs for r, cs in grid.items() if not r.endswith("ep")}
    assert sorted(large) == sorted(f"batch{b}" for b in (8, 32, 256, 1024, "full"))  # 1: too slow; 64: main row
    for configs in large.values():
        assert len(configs) == 14 and {c.grad_budget for c in configs} == {500_000}
    assert {r.study for r in state.runnable if r.row.startswith("batch")} == {"batch_size"}


def test_weight_decays_span_each_kind_s_range():
    rows = [r for r in D.ROWS if r.study == "weight_decay"]
    for kind, methods in D.WD_METHODS.items():
        decays = sorted(r.overrides["hparams"]["weight_decay"] for r in rows if r.methods == methods)
        low, high = D.WEIGHT_DECAY[kind]
        assert len(decays) >= 5 and decays[0] == low and decays[-1] == high
        assert all(D.weight_decay_kind(m) == kind for m in methods)
    assert {r.scenario for r in rows} == {"l2"} and {r.tuning for r in rows} == {"base"}
    assert {r.seeds for r in rows} == {3}


def test_weight_decay_finals_take_the_standard_choice_with_each_decay():
    profile = replace(FULL, methods=("adam", "adamw", "heavy_ball"),
                      rows=("standard", *(r.name for r in D.ROWS if r.study == "weight_decay")), qmc_trials=1)
    state, seen, _ = simulate(profile)
    finals = [r.config for r in seen.values() if r.row.startswith("wd-")]
    assert len(finals) == 3 * (2 * 5 + 5)
    for c in finals:
        lr = state.choices[("standard", c.optimizer, "projection")].hparams["lr"]
        assert c.hparams["lr"] == lr and c.scenario == "l2"
        low, high = D.WEIGHT_DECAY[D.weight_decay_kind(c.optimizer)]
        assert low <= c.hparams["weight_decay"] <= high


def test_time_to_target_scoring_picks_the_fewest_oracle_calls():
    frame = pd.DataFrame(dict(run_id=["a"] * 3 + ["b"] * 3 + ["c"] * 2,
                              oracle_evals=[1e5, 2e5, 3e5, 1e5, 1.5e5, 2e5, 1e5, 2e5],
                              val_acc=[85, 89.4, 91, 88, 89.38, 89.0, 80, 89.0]))
    hits = T.first_hits(frame)
    assert hits == {"a": 2e5, "b": 1.5e5}  # b reaches 89.38 exactly, then falls back: the first hit counts
    scores = {k: T.target_score(hits.get(k, math.inf), 90.0, 0.3) for k in "abc"}
    assert max(scores, key=scores.get) == "b" and min(scores, key=scores.get) == "c"
    assert T.target_score(1e5, 85.0, 1.0) > T.target_score(2e5, 95.0, 0.1)  # speed first, then accuracy


def test_horizon_row_tunes_the_fastest_methods_horizon_on_the_hold_out():
    methods = ("sgd", "adam", "heavy_ball", "sgd_schedulefree")
    profile = replace(FULL, methods=methods, rows=("standard", "horizon"), qmc_trials=1, top_k=2)
    state, seen, frame = simulate(profile)
    horizon = [r for r in seen.values() if r.row == "horizon"]
    tuned = {r.method for r in horizon if r.stage == "horizon"}
    hits = T.first_hits(frame)
    chosen = {m: state.choices[("standard", m, "projection")].run_id for m in methods}
    fastest = sorted(methods, key=lambda m: (hits.get(chosen[m], math.inf), m))[:2]
    assert tuned == set(fastest)
    for m in tuned:
        trials = [r.config for r in horizon if r.method == m and r.stage == "horizon"]
        expected = D.HORIZONS if PL.get_spec(m).decays else (max(D.HORIZONS),)
        assert sorted(c.epochs for c in trials) == sorted(expected)
        assert all(c.grad_budget == c.epochs * 50_000 and c.evals_per_epoch == 8 for c in trials)
        best = min(trials, key=lambda c: (hits.get(c.run_id, math.inf), -c.epochs))
        choice = state.choices[("horizon", m, "projection")]
        assert choice.run_id == best.run_id and choice.settings["epochs"] == best.epochs
        finals = [r.config for r in horizon if r.method == m and r.stage == "final"]
        assert len(finals) == 5 and {c.epochs for c in finals} == {best.epochs}
        assert {c.grad_budget for c in finals} == {best.epochs * 60_000} and {c.eval_split for c in finals} == {"test"}


def test_preprocessing_row_retunes_the_best_method_and_sgd_on_unit_pixels():
    methods = ("sgd", "adam", "heavy_ball")
    profile = replace(FULL, methods=methods, rows=("standard", "unit-pixels"), qmc_trials=1)
    first = PL.study_plan(pd.DataFrame(), profile)  # sgd, named, starts before the standard ranking
    assert {r.method for r in first.runnable if r.row == "unit-pixels"} == {"sgd"}
    assert [b.runs for b in first.blocked if b.row == "unit-pixels" and b.stage == "members"] == [7 + 1 + 3]
    state, seen, _ = simulate(profile)
    unit = [r.config for r in seen.values() if r.row == "unit-pixels"]
    assert {c.optimizer for c in unit} == {"adam", "sgd"}  # adam: the fake hold-out's best
    assert {c.scaling for c in unit} == {"unit"}
    assert sum(1 for c in unit if c.eval_split == "test") == 2 * 3
    assert sum(1 for c in unit if c.eval_split == "val" and c.optimizer == "sgd") >= 7


def test_variance_row_measures_along_the_standard_choices():
    profile = replace(FULL, methods=D.VARIANCE["methods"], rows=("standard", "variance"), qmc_trials=1)
    state, seen, _ = simulate(profile)
    assert not [r for r in seen.values() if r.row == "variance"]  # no runs of its own
    measured = {m.method: m for m in state.measurements}
    assert set(measured) == set(D.VARIANCE["methods"])
    finals = {r.config.run_id for r in seen.values() if r.row == "standard" and r.stage == "final"}
    for m in measured.values():
        assert m.config.run_id in finals  # the standard row's final run of seed 0, trained again
        assert m.config.eval_split == "test" and m.config.seed == 0 and m.epochs == D.VARIANCE["epochs"]
        assert m.measurement_id.startswith(f"variance-{m.config.run_id}-")


@pytest.mark.parametrize("overrides, message", [
    ({"batch_size": 0}, r"batch_size must be an integer in \[1, 60,000\] or 'full', got 0"),
    ({"batch_size": 60_001}, r"batch_size must be an integer in \[1, 60,000\] or 'full', got 60001"),
    ({"hparams": {"weight_decay": -1e-3}}, r"weight_decay must be a number in \[0, inf\), got -0.001"),
    ({"epochs": 0}, r"epochs \(the schedule's horizon\) must be a whole number >= 1, got 0"),
])
def test_bad_row_settings_name_the_value_and_the_allowed_range(overrides, message):
    with pytest.raises(ValueError, match=r"row 'bad': " + message):
        D.Row("bad", "l2", ("sgd",), overrides=overrides)


def test_bad_horizons_and_run_settings_are_refused():
    horizon = r"a horizon must be a whole number of epochs >= 1 \(allowed: 1, 2, ...\), got 0"
    with pytest.raises(ValueError, match=horizon):
        replace(FULL, horizons=(0, 2))
    with pytest.raises(ValueError, match="unknown tuning"):
        D.Row("bad", "standard", tuning="horizons")
    with pytest.raises(ValueError, match=r"batch_size must be an integer in \[1, 60,000\]"):
        RunConfig(batch_size=100_000)
    with pytest.raises(ValueError, match=r"epochs \(the schedule's horizon\)"):
        RunConfig(epochs=0)


def test_the_estimate_shows_each_study_apart_from_the_main_one(capsys, tmp_path):
    state = PL.study_plan(pd.DataFrame(), FULL)
    costs = {m: 10.0 for m in PL.names()}
    table = R.by_study(state, costs, jobs=2)
    assert set(table.index) == {"main", "batch_size", "preprocessing", "time_to_target", "weight_decay", "variance"}
    assert table.loc["weight_decay", "runs"] == 3 * 5 * 3
    assert table.loc["variance", "runs"] == 0 and table.loc["variance", "measurements"] == 5
    assert table.loc["time_to_target", "runs"] == min(FULL.top_k, len(PL.names())) * (len(D.HORIZONS) + 5)
    assert all(table["hours"] > 0)
    cut = R.by_study(PL.study_plan(pd.DataFrame(), D.get_profile("full", study_cuts=len(D.STUDY_CUTS))), costs)
    assert cut.loc["batch_size", "runs"] < table.loc["batch_size", "runs"]
    assert cut.loc["weight_decay", "runs"] == 3 * 5 * 2
    costs_file = tmp_path / "costs.csv"
    costs_file.write_text("method,seconds_per_epoch\n" + "".join(f"{m},10\n" for m in PL.names()))
    assert R.main(["plan", "--dry-run", "--per-method", "--runs-dir", str(tmp_path / "runs"),
                   "--costs", str(costs_file)]) == 0
    out = capsys.readouterr().out
    assert "per study" in out and "batch_size" in out and "their budget of 5 h" in out


def test_batch_size_costs_scale_with_the_step_overhead():
    costs = {"sgd": 25.0, "sgd_basic": 100.0}
    s0 = R.step_overhead(costs)
    assert (1 + s0) / (1 + s0 / 64) == pytest.approx(4.0)
    one = RunConfig(optimizer="sgd", batch_size=1)
    assert R._seconds(costs, "sgd", one) == pytest.approx(100.0)
    assert R._seconds(costs, "sgd", RunConfig(optimizer="sgd")) == pytest.approx(25.0)


def test_the_timing_pass_s_batch_size_figures_are_used_where_measured(tmp_path):
    (tmp_path / "seconds_per_epoch.csv").write_text("method,seconds_per_epoch\nsgd,20\nheavy_ball,30\n")
    (tmp_path / R.BY_BATCH).write_text("method,batch_size,seconds_per_epoch\nsgd,8,50\nsgd,full,5\n")
    costs, source = R.cost_table(tmp_path / "seconds_per_epoch.csv")
    assert "timing pass" in source and costs[("sgd", "8")] == 50.0
    assert R._seconds(costs, "sgd", RunConfig(optimizer="sgd", batch_size=8)) == 50.0
    assert R._seconds(costs, "sgd", RunConfig(optimizer="sgd", batch_size="full")) == 5.0
    assert R._seconds(costs, "sgd", RunConfig(optimizer="sgd", batch_size=32)) == 20.0  # not timed: no overhead known
    assert R._seconds(costs, "heavy_ball", RunConfig(optimizer="heavy_ball", batch_size=8)) == 30.0


def test_first_hits_are_read_from_the_run_folders_when_needed(tmp_path):
    folder = tmp_path / "adam-standard-s0-x"
    folder.mkdir()
    pd.DataFrame(dict(epoch=[0.5, 1.0, 1.5], oracle_evals=[25_000, 50_000, 75_000],
                      val_acc=[88.0, 89.5, 90.1])).to_csv(folder / "records.csv", index=False)
    found = {"adam-standard-s0-x": PL.Outcome("finished", 90.1, 0.3), "never": PL.Outcome("finished", 80.0, 0.6)}
    planner = PL._Planner(FULL, found, [], None, False, None, tmp_path)
    assert planner.first_hit("adam-standard-s0-x") == 50_000
    assert planner.found["adam-standard-s0-x"].first_hit == 50_000  # read once
    assert planner.first_hit("never") == math.inf and planner.first_hit("missing") == math.inf


def test_study_rows_train_end_to_end_on_a_tiny_profile(runs_root):
    """Real tiny runs through the planner: a horizon row (4 evaluations per epoch here: each
    evaluates all 10,000 test images), a weight-decay row."""
    from helpers.study import records
    profile = replace(D.get_profile("ci"), rows=(), methods=("sgd",), horizons=(1, 2), max_seeds=1, grid_points=1)
    standard = D.Row("standard", "standard", ("sgd",), tuning="grid", seeds=1, top_seeds=1)
    rows = [D.Row("h", "standard", ("sgd",), tuning="horizon", seeds=1, top_seeds=1,
                  overrides={"evals_per_epoch": 4}, study="time_to_target"),
            D.Row("wd", "l2", ("sgd",), tuning="base", seeds=1, top_seeds=1,
                  overrides={"hparams": {"weight_decay": 1e-3}}, study="weight_decay")]
    state = PL.execute(profile, root=runs_root, progress=False, rows=[standard, *rows], bases=[standard])
    assert not state.runnable and not state.blocked
    frame = records.load_records(runs_root)
    by_row = {r.config.run_id: r for r in state.done}
    frame["row"] = frame["run_id"].map(lambda i: by_row[i].row)
    horizon = frame[(frame["row"] == "h") & (frame["eval_split"] == "val")]
    assert sorted(horizon.groupby("run_id")["planned_epochs"].first()) == [1, 2]
    assert sorted(horizon.groupby("run_id").size()) == [4, 8]  # every 1/4 epoch
    wd = frame[frame["row"] == "wd"]
    assert set(wd["scenario"]) == {"l2"} and wd["weight_norm"].notna().all() and (wd["weight_norm"] > 0).all()
    chosen = state.choices[("h", "sgd", "projection")]
    assert chosen.settings["epochs"] in (1, 2) and chosen.run_id in set(horizon["run_id"])


def test_runs_a_finished_run_unblocks_go_before_less_valuable_runnable_ones(runs_root, monkeypatch):
    """The standard row's finals (priority 1) wait for its grid; a priority-9 row is runnable from
    the start. Units must still start in priority order: grid, finals, then the priority-9 row."""
    from helpers.study import scheduler
    profile = replace(D.get_profile("ci"), rows=(), methods=("sgd",), max_seeds=2, grid_points=2)
    standard = D.Row("standard", "standard", ("sgd",), tuning="grid", seeds=1, top_seeds=1)
    later = D.Row("later", "standard", ("sgd",), tuning="none", seeds=2, top_seeds=2, priority=9,
                  overrides={"hparams": {"lr": 0.01}})
    started = []

    class Recording(scheduler.InlineExecutor):
        def submit(self, fn, /, *args, **kwargs):
            started.append([c.run_id for c in (args[0] if isinstance(args[0], list) else [args[0]])])
            return super().submit(fn, *args, **kwargs)

    state = PL.execute(profile, Recording(), root=runs_root, progress=False, rows=[standard, later], bases=[standard])
    assert not state.runnable and not state.blocked
    planned = {p.config.run_id: p for p in state.done}
    order = [min((planned[i].priority, planned[i].row, planned[i].stage) for i in ids) for ids in started]
    assert [o[1:] for o in order] == [("standard", "grid"), ("standard", "final"), ("later", "fixed")]
    assert [len(ids) for ids in started] == [2, 1, 2]  # the grid and the later row's seeds batched


def test_study_cuts_apply_in_order_and_keep_the_main_study():
    full = D.get_profile("full")
    cut = D.get_profile("full", study_cuts=len(D.STUDY_CUTS))
    assert {r.name for r in full.rows_in()} - {r.name for r in cut.rows_in()} == {"batch32", "batch1024"}
    main = lambda p: [r for r in p.rows_in() if r.study == "main"]  # noqa: E731
    assert main(full) == main(cut)
    edited = {r.name: r for r in cut.rows_in()}
    assert edited["batch8"].overrides == {"batch_size": 8, "hparams": {"momentum": 0.9}} and edited["batch8"].seeds == 2
    assert edited["batch8-1ep"].seeds == 3 and edited["wd-coupled-1e-06"].seeds == 2
    with pytest.raises(ValueError, match=r"study_cuts must be in \[0, 4\], got 5"):
        D.get_profile("full", study_cuts=5)


def test_the_scheduler_keeps_one_unit_per_worker():
    from types import SimpleNamespace

    from helpers.study import scheduler
    from helpers.study.executors import LocalPool
    dask_like = SimpleNamespace(_client=SimpleNamespace(nthreads=lambda: {"tcp://a": 2, "tcp://b": 1}))
    assert scheduler.executor_slots(dask_like) == 3
    assert scheduler.executor_slots(scheduler.InlineExecutor()) == 1
    pool = LocalPool(workers=2, threads=1)
    try:
        assert scheduler.executor_slots(pool) == 2
    finally:
        pool.shutdown()


def test_measurements_wait_in_the_queue_at_their_priority(monkeypatch, tmp_path):
    """A measurement is taken when its priority comes up among the runs (not only once every run
    is done), and once per call even if the plan keeps naming it."""
    from helpers.engine.config import RunConfig
    from helpers.study import executors, records, scheduler
    done, order = set(), []
    first, last = RunConfig(optimizer="kfac"), RunConfig(optimizer="lbfgs")
    measurement = PL.Measurement("variance", first, (0.5,), (64,), "variance", "kfac", "variance", (2, 0, 0, 0))

    def next_plan():
        runnable = [PL.Planned(c, "r", c.optimizer, "projection", "final", p)
                    for c, p in ((first, (1, 0, 0, 0)), (last, (3, 0, 0, 0))) if c.run_id not in done]
        return PL.Plan(profile=None, runnable=runnable, measurements=[measurement])  # never marked measured

    def compute_run(config):
        order.append(config.optimizer)
        return config

    def store_run(config, root):
        done.add(config.run_id)
        return {"status": "finished"}

    def measure_and_record(m, root, progress):
        order.append(f"measure {m.method}")
        return m.measurement_id
    monkeypatch.setattr(executors, "compute_run", compute_run)
    monkeypatch.setattr(executors, "store_run", store_run)
    monkeypatch.setattr(executors, "remove_temp_files", lambda root, ids: None)
    monkeypatch.setattr(records, "measure_and_record", measure_and_record)
    scheduler.train_by_priority(next_plan, scheduler.InlineExecutor(), str(tmp_path), progress=False, measure=True)
    assert order == ["kfac", "measure kfac", "lbfgs"]
