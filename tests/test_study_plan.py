"""The planner on fake records: stages unblock in order, priorities hold, selections come from results."""
import json
import math
from dataclasses import replace

import pandas as pd
import pytest

from helpers.study import definition as D
from helpers.study import protocol as P
from helpers.study import readout as R
from helpers.study import tuning as T

PEAK = {"sgd": -1, "adam": -6, "svrg": 1, "kfac": 12}  # best half-decade exponent of the rate
MAIN_ROWS = tuple(r.name for r in D.ROWS if r.study == "main")
PROFILE = replace(D.Profile("full"), name="test", methods=tuple(PEAK), train_fraction=0.01, val_size=1_000,
                  rows=MAIN_ROWS)  # the definition as written, before the full profile's cuts


def fake_outcome(config):
    """Hold-out accuracy peaking at PEAK (log scale), a little from momentum/weight decay; sgd diverges from 1."""
    j = 2 * math.log10(config.hparams["lr"])
    if config.optimizer == "sgd" and config.hparams["lr"] >= 1:
        return dict(status="diverged", val_acc=math.nan, val_loss=math.nan)
    acc = 90 - (j - PEAK[config.optimizer]) ** 2 + 0.1 * config.hparams.get("momentum", 0)
    acc -= 0.1 * abs(math.log10(config.hparams.get("weight_decay") or 1e-4) + 4)
    acc += {"sgd": 0.0, "adam": 0.5, "svrg": -0.5, "kfac": 0.2}[config.optimizer]
    return dict(status="finished", val_acc=acc, val_loss=(100 - acc) / 50)


def simulate(profile=PROFILE, rows=None, max_rounds=30):
    """Train every runnable run at once, round after round; return (round of each run, last plan)."""
    frame = pd.DataFrame(columns=["run_id", "status", "val_acc", "val_loss", "epoch"])
    first_round, history = {}, []
    for round_ in range(max_rounds):
        state = P.study_plan(frame, profile, rows=rows)
        history.append(state)
        if not state.runnable:
            return first_round, state, history
        new = []
        for r in state.runnable:
            first_round[r.config.run_id] = (round_, r)
            new.append(dict(run_id=r.config.run_id, epoch=10.0, **fake_outcome(r.config)))
        frame = pd.concat([frame, pd.DataFrame(new)], ignore_index=True)
    raise AssertionError("the plan never finished")


@pytest.fixture(scope="module")
def finished():
    return simulate()


def test_every_run_waits_for_what_it_depends_on(finished):
    rounds, state, _ = finished
    by = {}
    for rid, (rnd, r) in rounds.items():
        by.setdefault((r.row, r.method, r.strategy, r.stage), []).append(rnd)
    tuning = ("grid", "extension", "trials", "l2", "rates")

    def last(row, method, strategy="projection"):
        return max(max(v) for (r, m, s, st), v in by.items() if (r, m, s) == (row, method, strategy) and st in tuning)

    for (row, method, strategy, stage), rnds in by.items():
        if stage == "final":
            assert min(rnds) > last(row, method, strategy)
        if stage in ("l2", "rates"):
            assert min(rnds) > last("standard", method)
        if stage == "trials":
            assert min(rnds) > max(by[(row, method, strategy, "grid")])
        if stage == "seeds":
            assert min(rnds) > max(last(row, m, s) for (r, m, s, st) in by if r == row and st in tuning)
        if row in D.THINNER:
            assert min(rnds) > max(last("sparse60", m) for m in PEAK)


def test_tuned_rates_are_interior_or_at_their_declared_limit(finished):
    _, state, _ = finished
    assert state.edges[("standard", "sgd", "projection")] == "interior"
    assert state.edges[("standard", "adam", "projection")] == "interior"
    assert state.edges[("standard", "svrg", "projection")] == "interior"  # found by extending past the edge
    assert state.edges[("standard", "kfac", "projection")] == "limit"
    for (row, method, strategy), choice in state.choices.items():
        if row == "standard":
            j = T.exponent_of(choice.hparams["lr"])
            assert j == min(PEAK[method], T.exponent_limits()[1]), (method, choice)


def test_extensions_are_counted_and_never_past_two_points(finished):
    rounds, _, _ = finished
    extensions = {}
    for _, r in rounds.values():
        if r.stage == "extension":
            extensions.setdefault(r.method, []).append(T.exponent_of(r.config.hparams["lr"]))
    assert sorted(extensions["svrg"]) == [1, 2]
    assert sorted(extensions["kfac"]) == [1, 2]
    assert extensions["sgd"] == [0] and "adam" not in extensions


def test_the_full_study_is_planned_with_the_declared_counts(finished):
    rounds, state, _ = finished
    assert not state.blocked
    stages = pd.Series([(r.row, r.stage) for _, r in rounds.values()]).value_counts()
    n = len(PEAK)
    assert stages[("standard", "grid")] == 7 * n
    assert stages[("standard", "trials")] == 4 * (n - 1)  # sgd has no key hyperparameter but its rate
    assert stages[("l2", "l2")] == 8 * n
    assert stages[("sparse60", "rates")] == 3 * n
    assert stages[("sparse60-pruned", "rates")] == 3 * n * 2
    assert stages[("standard", "final")] == 3 * n and stages[("starter", "fixed")] == 5
    assert stages[("standard", "seeds")] == 2 * n  # top 6 of 4 methods: all get 5 seeds
    for thin in D.THINNER:
        assert stages[(thin, "final")] == 3 * n  # one method per family


def test_diverged_runs_are_results_never_replanned(finished):
    rounds, state, _ = finished
    diverged = [rid for rid, (_, r) in rounds.items() if r.method == "sgd" and r.config.hparams["lr"] >= 1]
    assert diverged
    assert not {r.config.run_id for r in state.runnable} & set(diverged)


def test_runnable_runs_come_most_valuable_first(finished):
    _, _, history = finished
    first = history[0].runnable
    assert [r.stage for r in first[:5]] == ["fixed"] * 5
    assert {r.stage for r in first[5:]} == {"grid"}
    for state in history:
        priorities = [r.priority for r in state.runnable]
        assert priorities == sorted(priorities)
    mixed = next(s for s in history if {"final", "l2"} <= {r.stage for r in s.runnable})
    stages = [r.stage for r in mixed.runnable]
    assert max(i for i, s in enumerate(stages) if s == "final" and mixed.runnable[i].row == "standard") < \
        min(i for i, s in enumerate(stages) if s == "l2")


def test_blocked_says_what_it_waits_for():
    state = P.study_plan(pd.DataFrame(), PROFILE)
    waits = {(b.row, b.stage): b for b in state.blocked}
    assert "rate grid of adam" in next(b.waiting_for for b in state.blocked if b.row == "standard" and b.method == "adam")
    assert "choice of adam in standard" in next(b.waiting_for for b in state.blocked
                                                 if b.row == "l2" and b.method == "adam" and b.stage == "tuning")
    assert waits[("sparse30", "members")].waiting_for == "the hold-out ranking of sparse60"
    assert sum(b.runs for b in state.blocked if b.row == "l2" and b.stage == "tuning") == 8 * len(PEAK)


def test_the_ci_profile_is_small():
    state = P.study_plan(pd.DataFrame(), "ci")
    total = len(state.runnable) + len(state.done) + sum(b.runs for b in state.blocked)
    assert total <= 30
    for r in state.runnable:
        assert r.config.train_fraction <= 0.01 and r.config.epochs == 1
    assert len(D.main_scenarios("ci")) >= 3


def test_cuts_apply_in_the_declared_order():
    uncut = P.study_plan(pd.DataFrame(), replace(D.Profile("full"), rows=MAIN_ROWS))
    cut = P.study_plan(pd.DataFrame(), replace(D.get_profile(D.Profile("full"), cuts=1), rows=MAIN_ROWS))
    written = D.Profile("full")
    assert D.get_profile(written, 3).qmc_trials == 2 and D.get_profile(written, 3).l2_trials == 6
    assert D.get_profile(written, 1).qmc_trials == 4
    pruned = lambda s: sum(b.runs for b in s.blocked if b.row == "sparse60-pruned")  # noqa: E731
    assert pruned(cut) < pruned(uncut)


def test_the_full_profile_makes_the_declared_cuts_and_says_so():
    full = {r.name: r for r in D.get_profile("full").rows_in()}
    assert D.FULL_CUTS == 3 and full["sparse60-pruned"].methods == "family_best:sparse60"
    assert D.applied_cuts("full") == [what for what, _ in D.CUTS] and D.applied_cuts("ci") == []
    assert (D.get_profile("full").qmc_trials, D.get_profile("full").l2_trials) == (2, 6)
    assert all(r.seeds == u.seeds and r.top_seeds == u.top_seeds  # the seeds are kept
               for r, u in zip(D.get_profile("full").rows_in(), D.Profile("full").rows_in()))
    with pytest.raises(ValueError, match="cuts must be in"):
        D.get_profile("full", 4)


def test_budget_and_schedule_follow_the_definition():
    tune = P.study_config("svrg", "standard", "val", D.PROFILES["full"], {"lr": 0.01})
    final = P.study_config("svrg", "standard", "test", D.PROFILES["full"], {"lr": 0.01})
    assert (tune.grad_budget, final.grad_budget) == (500_000, 600_000)
    assert tune.epochs == final.epochs == 10 and tune.eval_split == "val" and tune.val_size == 10_000
    assert tune.schedule == "cosine"
    basic = P.study_config("sgd_basic", "standard", "test", D.PROFILES["full"], {"lr": 0.01})
    assert basic.epochs == 1 and basic.grad_budget == 60_000


def test_run_family_reads_a_notebook_profile():
    p, seeds = P.profile_from(dict(epochs=1, train_fraction=0.02, seeds=[0, 1], tune_budget=2, tune_epochs=1,
                                   evals_per_epoch=1))
    assert (p.epochs, p.grid_points, p.qmc_trials, p.l2_trials, seeds) == (1, 2, 1, 2, (0, 1))
    full, _ = P.profile_from(P.PROFILES["full"])
    assert (full.grid_points, full.qmc_trials, full.l2_trials) == (7, 2, 6)  # with the full profile's cuts
    with pytest.raises(ValueError, match="unknown profile setting"):
        P.profile_from({"epoch": 3})


def test_the_estimate_multiplies_runs_by_the_cost_table(tmp_path):
    costs = tmp_path / "costs.csv"
    costs.write_text("method,seconds_per_epoch,batched_seconds_per_epoch\nsgd,10,\nadam,20,4\nsvrg,,\n")
    table, source = R.cost_table(costs)
    assert table == {"sgd": 10.0, "adam": 4.0} and "timing pass" in source
    profile = replace(PROFILE, methods=("sgd",), rows=("standard",))
    state = P.study_plan(pd.DataFrame(), profile)
    grid = R.estimate(state, table).loc[("standard", "grid")]
    assert grid["runs"] == 7
    assert grid["seconds"] == pytest.approx(7 * 10 * P.oracle_budget("sgd", profile, "val") / 60_000)


def test_run_family_tunes_and_trains_a_scenario_through_the_planner(runs_root):
    profile = dict(epochs=1, train_fraction=0.01, seeds=[0], tune_budget=2, evals_per_epoch=1, val_size=1_000)
    tuning, finals, frame = P.run_family(["sgd"], "l2", profile, progress=False)
    assert set(tuning["row"]) == {"standard", "l2"}
    assert sorted(tuning["stage"]) == ["grid", "grid", "l2"]  # the ci profile's sizes: 1 l2 trial
    assert len(finals) == 1 and finals[0].scenario == "l2" and finals[0].eval_split == "test"
    l2 = tuning[tuning["row"] == "l2"].assign(neg_loss=lambda f: -f["val_loss"])
    chosen = l2.sort_values(["val_acc", "neg_loss"]).iloc[-1]
    assert finals[0].hparams["weight_decay"] == json.loads(chosen["hparams"])["weight_decay"]
    assert set(frame["status"]) <= {"finished", "diverged"} and frame["run_id"].nunique() == 1
    again = P.run_family(["sgd"], "l2", profile, progress=False)
    assert again.finals == finals


def test_the_commands_print_the_definition_and_the_plan(tmp_path, capsys):
    assert P.main(["definition", "--profile", "full"]) == 0  # protocol.main: the package's entry point
    out = capsys.readouterr().out
    for row in D.ROWS:
        assert row.name in out
    assert "protocol v2" in out and "500000" in out and "600000" in out
    assert R.main(["plan", "--dry-run", "--profile", "ci", "--runs-dir", str(tmp_path), "--costs",
                   str(tmp_path / "none.csv"), "--cost-runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "done 0, runnable now 5, blocked 23" in out
    assert R.main(["archive", "--dry-run", "--runs-dir", str(tmp_path)]) == 0
    assert "would move 0 run(s) of protocol v1" in capsys.readouterr().out


def test_failed_runs_count_as_results_unless_retried():
    state = P.study_plan(pd.DataFrame(), PROFILE)
    first = state.runnable[0].config.run_id
    frame = pd.DataFrame([dict(run_id=first, status="failed", epoch=math.nan)])
    after = P.study_plan(frame, PROFILE)
    assert first not in {r.config.run_id for r in after.runnable}
    assert [r.config.run_id for r in after.failed] == [first]
    assert first in {r.config.run_id for r in P.study_plan(frame, PROFILE, retry_failed=True).runnable}


def test_a_row_can_select_the_hold_out_s_best_of_another_row():
    ablation = D.Row("unit-pixels", "standard", "best:standard", tuning="grid", overrides={"scaling": "unit"},
                     priority=7)
    rounds, state, _ = simulate(replace(PROFILE, rows=("standard",)), rows=[*PROFILE.rows_in()[:2], ablation])
    chosen = {r.method for _, r in rounds.values() if r.row == "unit-pixels"}
    assert chosen == {"adam"}  # the best on the fake hold-out
    assert all(r.config.scaling == "unit" for _, r in rounds.values() if r.row == "unit-pixels")
    with pytest.raises(ValueError, match="'fastest:<row>'"):
        P.study_plan(pd.DataFrame(), PROFILE, rows=[replace(ablation, methods="slowest:standard")])


def test_notebook_parameters_of_a_profile_ask_for_that_profile_s_runs():
    for name in D.PROFILES:
        p, seeds = P.profile_from(P.notebook_parameters(name))
        assert replace(p, name=name) == D.get_profile(name)
        assert seeds == tuple(range(min(3, p.max_seeds or 3)))


def test_the_choices_table_reports_edges_and_extension_costs(finished):
    _, state, _ = finished
    table = R.choices_table(state).set_index(["row", "method"])
    assert table.loc[("standard", "kfac"), "edge"] == "limit"
    assert table.loc[("standard", "kfac"), "extension"] == 2
    assert table.loc[("standard", "kfac"), "trials"] == 7 + 2 + 4
    assert table.loc[("standard", "sgd"), "trials"] == 7 + 1
    assert table.loc[("l2", "adam"), "trials"] == 8 and table.loc[("l2", "adam"), "edge"] == "-"
    assert "weight_decay" in table.loc[("l2", "adam"), "chosen"]


def test_a_row_s_fixed_settings_are_not_searched():
    batch = D.Row("bs256", "standard", ("kfac",), tuning="grid", overrides={"batch_size": 256})
    betas = D.Row("betas", "standard", ("adam",), tuning="grid", overrides={"hparams": {"betas": (0.9, 0.99)}})
    rounds, state, _ = simulate(replace(PROFILE, rows=()), rows=[batch, betas])
    trials = [r.config for _, r in rounds.values() if r.stage == "trials"]
    assert {c.optimizer for c in trials} == {"kfac"}  # adam's betas are fixed: no key hyperparameter left
    assert all(c.batch_size == 256 and "damping" in c.hparams for c in trials)
    assert all(r.config.batch_size == 256 for _, r in rounds.values() if r.method == "kfac")
    assert all(r.config.hparams["betas"] == (0.9, 0.99) for _, r in rounds.values() if r.method == "adam")


def test_a_base_row_trains_the_base_choice_with_its_own_settings():
    rows = [D.Row(f"wd{wd:g}", "l2", ("adam", "sgd"), tuning="base", overrides={"hparams": {"weight_decay": wd}},
                  priority=8) for wd in (1e-5, 1e-3)]
    rounds, state, _ = simulate(replace(PROFILE, rows=("standard",)), rows=[*PROFILE.rows_in()[1:2], *rows])
    finals = [r.config for _, r in rounds.values() if r.row.startswith("wd")]
    assert {(c.optimizer, c.hparams["weight_decay"]) for c in finals} == {(m, wd) for m in ("adam", "sgd")
                                                                         for wd in (1e-5, 1e-3)}
    assert len(finals) == 2 * 2 * 3 and not [r for _, r in rounds.values() if r.row.startswith("wd")
                                             and r.stage != "final"]
    standard = {m: state.choices[("standard", m, "projection")].hparams["lr"] for m in ("adam", "sgd")}
    assert all(c.hparams["lr"] == standard[c.optimizer] for c in finals)


def test_observed_overhead_counts_a_batched_group_once_from_its_start_to_its_last_end(tmp_path):
    import json
    from helpers.study.readout import observed_overhead
    assert observed_overhead(tmp_path) is None

    def meta(run_id, started, ended, wall, oracle=60_000, status="finished", batched=True, optimizer="sgd"):
        folder = tmp_path / run_id
        folder.mkdir()
        body = {"run_id": run_id, "status": status, "started": f"2026-11-30T10:{started}",
                "ended": f"2026-11-30T10:{ended}", "final": {"wall_s": wall, "oracle_evals": oracle},
                "config": {"optimizer": optimizer, "batch_size": None, "train_fraction": 1.0}}
        if batched:
            body["batched"] = {"models": 2}
        (folder / "meta.json").write_text(json.dumps(body))

    meta("a", "00:00.000", "01:40.000", 40.0)
    meta("b", "00:00.000", "01:50.000", 40.0, oracle=120_000)  # the same group: 110 s
    meta("c", "05:00.000", "05:50.000", 45.0, batched=False)  # alone: 50 s
    meta("d", "06:00.000", "09:00.000", 1.0, status="failed", batched=False)  # not counted
    factor, units = observed_overhead(tmp_path)  # against the records' training seconds
    assert units == 2 and factor == pytest.approx(160 / 125)
    factor, units = observed_overhead(tmp_path, {"sgd": 20.0})  # 20 s per 60,000 oracle calls
    assert units == 2 and factor == pytest.approx(160 / (20 * 3 + 20))
    assert observed_overhead(tmp_path, {"sgd": 20.0}, recent=1) == (pytest.approx(50 / 20), 1)


def test_observed_overhead_groups_models_stamped_apart_and_keeps_parallel_groups_apart(tmp_path):
    """A batched group stamps its models' starts milliseconds apart; the other worker may start a
    group of another method in the same second. Keyed on the exact start, each model counted the
    whole group's time (a factor of 6.6 where 2 was true)."""
    import json
    from helpers.study.readout import observed_overhead
    for run_id, optimizer, started in (("a", "adamw", "00:00.266"), ("b", "adamw", "00:00.269"),
                                       ("c", "adamw", "00:00.271"), ("d", "adam", "00:00.268"),
                                       ("e", "adam", "00:00.272")):
        folder = tmp_path / run_id
        folder.mkdir()
        (folder / "meta.json").write_text(json.dumps({
            "run_id": run_id, "status": "finished", "started": f"2026-11-30T10:{started}",
            "ended": "2026-11-30T10:01:00.000", "final": {"wall_s": 20.0, "oracle_evals": 60_000},
            "config": {"optimizer": optimizer, "batch_size": None, "train_fraction": 1.0}, "batched": {"models": 3}}))
    factor, units = observed_overhead(tmp_path, {"adamw": 20.0, "adam": 20.0})
    assert units == 2 and factor == pytest.approx((59.734 + 59.732) / 100)  # from each group's first start; 3 x 20 + 2 x 20
