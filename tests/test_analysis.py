"""The study's evidence functions on small hand-made record frames (helpers.evidence.analysis, helpers.study.protocol)."""
import pandas as pd
import pytest

from helpers.evidence import analysis as A
from helpers.optimizers import get_spec, names
from helpers.evidence.report_tables import coverage, density_tex, families_tex
from helpers.study.protocol import base_config, final_hparams, schedule_for, stage_members


def _runs(rows):
    """One final record per (optimizer, scenario, seed, test_acc[, strategy]) row."""
    records = []
    for i, (optimizer, scenario, seed, acc, *strategy) in enumerate(rows):
        records.append(dict(run_id=f"r{i}", epoch=10.0, test_acc=acc, test_loss=0.3, test_starter_loss=0.005,
                            seed=seed, grad_evals=600_000, oracle_evals=600_000, wall_s=60.0, diverged=False,
                            family=get_spec(optimizer).family, method=optimizer, optimizer=optimizer,
                            scenario=scenario, sparsity_strategy=(strategy or ["projection"])[0],
                            config_key='{"lr": 0.1}|64|10|standardize'))
    return pd.DataFrame(records)


def _tuning(rows):
    """One finished hold-out trial per (optimizer, scenario, val_acc, val_loss[, strategy]) row."""
    return pd.DataFrame([dict(run_id=f"t{i}", epoch=10.0, eval_split="val", status="finished", tag="tune",
                              optimizer=o, scenario=sc, val_acc=acc, val_loss=loss,
                              sparsity_strategy=(strategy or ["projection"])[0])
                         for i, (o, sc, acc, loss, *strategy) in enumerate(rows)])


def test_best_per_scenario_is_the_hold_out_s_choice_measured_on_test():
    frame = _runs([("adam", "standard", 0, 91.5), ("adam", "standard", 1, 91.5),  # best on test
                   ("sgd", "standard", 0, 90.0), ("sgd", "standard", 1, 90.4),
                   ("nadam", "standard", 0, 90.1), ("adam", "l2", 0, 89.0), ("sgd", "l2", 0, 90.0)])
    tuning = _tuning([("adam", "standard", 90.0, 0.30), ("sgd", "standard", 90.5, 0.31),
                      ("sgd", "standard", 85.0, 0.50), ("nadam", "standard", 90.5, 0.29),
                      ("adam", "l2", 89.0, 0.3)])
    best = A.best_per_scenario(A.final_results(frame), tuning)
    assert best.loc["standard", "method"] == "nadam"  # ties sgd on hold-out accuracy, lower loss
    assert best.loc["standard", "test_acc_mean"] == pytest.approx(90.1)
    assert best.loc["standard", "holdout_acc"] == 90.5
    assert best.loc["l2", "method"] == "adam"  # sgd has no hold-out trial in l2


def test_accuracy_vs_density_keeps_methods_run_sparse_with_their_dense_point():
    frame = _runs([("adam", "standard", 0, 90.0), ("adam", "standard", 1, 90.2),
                   ("adam", "sparse60", 0, 89.8), ("adam", "sparse60", 1, 89.6),
                   ("adam", "sparse10", 0, 88.0), ("adam", "sparse60", 0, 89.0, "gradual"),
                   ("sgd", "standard", 0, 88.0), ("sgd", "sparse60", 0, 87.0)])
    table = A.accuracy_vs_density(frame)
    assert set(table["method"]) == {"adam"}  # sgd ran sparse60 only: the thinner budgets' members are drawn
    assert set(A.accuracy_vs_density(frame[frame["scenario"] != "sparse10"])["method"]) == {"adam", "sgd"}
    assert sorted(table.loc[table["sparsity_strategy"] == "projection", "density"]) == [0.1, 0.6, 1.0]
    sparse60 = table[(table["density"] == 0.6) & (table["sparsity_strategy"] == "projection")].iloc[0]
    assert sparse60["test_acc_mean"] == pytest.approx(89.7) and sparse60["seeds"] == 2
    tex = density_tex(table)
    assert "89.70 $\\pm$ 0.14 (2)" in tex and "gradual" in tex and tex.count("\\\\") == 3


def test_study_cost_counts_tuning_and_final_runs():
    frame = _runs([("adam", "standard", 0, 90.0), ("sgd", "standard", 0, 88.0)])
    frame["status"] = ["finished", "diverged"]
    frame["eval_split"] = ["val", "test"]
    cost = A.study_cost(frame)
    assert cost == {"runs": 2, "tuning_runs": 1, "final_runs": 1, "train_hours": pytest.approx(120 / 3600),
                    "devices": {}}
    assert A.devices_sentence(cost) == ""


def test_study_cost_says_where_runs_trained_when_on_several_devices():
    frame = _runs([("adam", "standard", 0, 90.0), ("sgd", "standard", 0, 88.0), ("sgd", "standard", 1, 88.1)])
    frame["status"], frame["eval_split"] = "finished", "test"
    frame["device"] = ["cpu, torch 2.14.1", "NVIDIA H200, torch 2.11.0", "cpu, torch 2.14.1"]
    cost = A.study_cost(frame)
    assert cost["devices"] == {"cpu, torch 2.14.1": 2, "NVIDIA H200, torch 2.11.0": 1}
    assert "2 machines (2 on cpu, torch 2.14.1; 1 on NVIDIA H200, torch 2.11.0)" in A.devices_sentence(cost)
    frame["device"] = "cpu, torch 2.14.1"
    assert A.devices_sentence(A.study_cost(frame)) == ""


def test_stage_members_from_the_validation_ranking():
    ranking = ["shampoo", "radam", "adam", "sgd_swa", "kfac", "sgd", "svrg", "gd"]
    assert stage_members(2, names(), ranking) == ["shampoo", "radam"]
    assert stage_members("families", names(), ranking) == ["shampoo", "radam", "sgd_swa", "sgd"]
    assert stage_members("all", names(), ranking) == names()


def test_study_recipe_comes_from_the_registry():
    assert schedule_for("adamw_schedulefree") == "constant" and schedule_for("adam") == "cosine"
    assert base_config("sgd_basic", epochs=10).epochs == 1
    assert base_config("kfac", epochs=10).grad_budget == 600_000
    assert base_config("adam", epochs=10).grad_budget == 600_000  # v2: every run has the oracle budget


def test_averaging_start_scales_with_the_run_length():
    assert base_config("sgd_polyak", epochs=2).hparams == {"start_epoch": 1.0}
    assert base_config("sgd_swa", epochs=2).hparams == {"start_epoch": 1.5}
    tuned = {"lr": 0.1, "momentum": 0.9, "start_epoch": 1.5}
    assert final_hparams(tuned, "sgd_swa", "standard", 10) == {"lr": 0.1, "momentum": 0.9, "start_epoch": 7.5}
    assert final_hparams(tuned, "sgd_swa", "standard", 4) == {"lr": 0.1, "momentum": 0.9, "start_epoch": 3.0}
    assert base_config("sgd", epochs=2).hparams == {}


def test_best_per_family_skips_separately_tuned_recipes():
    frame = _runs([("sgd", "standard", 0, 88.0), ("sgd", "standard", 1, 88.2),
                   ("sgd_basic", "standard", 0, 89.0),
                   ("adam", "standard", 0, 90.0), ("nesterov", "standard", 0, 91.0)])
    frame.loc[frame["optimizer"] == "nesterov", "method"] = "nesterov+onecycle [tuned]"
    tuning = _tuning([("sgd", "standard", 88.0, 0.3), ("sgd_basic", "standard", 89.0, 0.3),
                      ("adam", "standard", 90.0, 0.3), ("nesterov", "standard", 91.0, 0.3)])
    best = A.best_per_family(A.final_results(frame), tuning)
    assert best.loc["sgd", "method"] == "sgd_basic" and best.loc["momentum", "method"] == "adam"


def test_side_experiments_never_win_the_headline():
    frame = _runs([("adam", "standard", 0, 90.0), ("nesterov", "standard", 0, 91.0)])
    frame.loc[frame["optimizer"] == "nesterov", "method"] = "nesterov [tune8x10]"
    tuning = _tuning([("adam", "standard", 90.0, 0.3), ("nesterov", "standard", 91.0, 0.3)])
    assert A.best_per_scenario(A.final_results(frame), tuning).loc["standard", "method"] == "adam"


def test_performance_profile_over_methods_run_on_every_problem():
    rows = [("adam", sc, s, acc) for sc in ("standard", "l2") for s, acc in ((0, 90.0), (1, 88.0))]
    rows += [("sgd", sc, s, 90.0) for sc in ("standard", "l2") for s in (0, 1)]
    rows += [("nadam", "standard", 0, 90.0)]  # not run on the other problems
    frame = _runs(rows)
    frame["run_id"] = [f"r{i}" for i in range(len(frame))]
    frame.loc[frame["optimizer"] == "sgd", "oracle_evals"] = 1_200_000
    profile = A.performance_profile(frame, target=89.38, scenarios=("standard", "l2"), taus=[1.0, 2.0])
    rho = profile.set_index(["method", "tau"])["rho"]
    assert set(profile["method"]) == {"adam", "sgd"}
    assert rho["adam", 1.0] == 0.5 and rho["sgd", 1.0] == 0.5  # sgd is alone on adam's failed seeds
    assert rho["sgd", 2.0] == 1.0 and rho["adam", 2.0] == 0.5


def test_families_by_scenario_table_has_a_cell_per_family_and_scenario_run():
    frame = _runs([("sgd", "standard", 0, 88.0), ("sgd", "standard", 1, 88.4),
                   ("adam", "standard", 0, 90.0), ("adam", "standard", 1, 90.4),
                   ("adam", "l2", 0, 89.5), ("sgd_swa", "sparse60", 0, 87.0)])
    tuning = _tuning([("sgd", "standard", 88.0, 0.3), ("adam", "standard", 90.0, 0.3),
                      ("adam", "l2", 89.0, 0.3), ("sgd_swa", "sparse60", 87.0, 0.3)])
    table = A.families_by_scenario(A.final_results(frame), tuning)
    assert set(zip(table["scenario"], table["family"])) == {
        ("standard", "sgd"), ("standard", "momentum"), ("l2", "momentum"), ("sparse60", "noise_reduction")}
    tex = families_tex(table)
    assert "family & standard & l2 & sparse60" in tex
    assert "noise\\_reduction & -- & -- & sgd\\_swa: 87.00 (1)" in tex
    assert "momentum & adam: 90.20 $\\pm$ 0.28 (2) & adam: 89.50 (1) & --" in tex


def test_coverage_counts_seeds_of_the_study_configurations_only():
    frame = _runs([("adam", "standard", s, 90.0) for s in range(3)] + [("sgd", "standard", 0, 88.0)] +
                  [("nesterov", "standard", s, 91.0) for s in range(3)] + [("gd", "l2", 0, 10.0)])
    frame.loc[frame["optimizer"] == "nesterov", "method"] = "nesterov [tuned]"
    text = coverage(frame)
    assert text.startswith(f"1 of the {len(names())} registered methods have 3 seeds on the standard scenario")
    assert ", 1 fewer (sgd 1), " in text
    assert f", {len(names()) - 2} none (" in text and "nesterov" in text and "gd" in text


def test_final_table_counts_diverged_and_failed_runs_apart_from_the_means():
    from helpers.evidence.summary import final_table
    frame = _runs([("svrg", "standard", 0, 90.0), ("svrg", "standard", 1, 88.0), ("svrg", "standard", 2, 10.0),
                   ("svrg", "standard", 3, 10.0), ("gd", "standard", 0, 10.0)])
    frame["status"] = ["finished", "finished", "diverged", "failed", "diverged"]
    frame["hvp_evals"] = 0
    frame.loc[2, ["test_acc", "oracle_evals"]] = [float("nan"), 90_000]  # a diverged run stops early
    frame.loc[3, "epoch"] = float("nan")  # a failed run: one row, no metrics
    table = final_table(frame, by=["optimizer"])
    svrg = table.loc["svrg"]
    assert (svrg["finished"], svrg["diverged"], svrg["failed"]) == (2, 1, 1)
    assert svrg["seeds"] == 2  # finished seeds, not every run started
    assert svrg["test_acc_mean"] == pytest.approx(89.0)  # the failed run's 10.0 stays out
    assert svrg["oracle_evals"] == 600_000  # costs over finished runs: the diverged 90,000 stays out
    gd = table.loc["gd"]  # nothing finished: the row stays, counted, with no mean
    assert gd["diverged"] == 1 and gd["seeds"] == 0 and pd.isna(gd["test_acc_mean"])


def test_final_results_keeps_failed_runs_counted_per_strategy():
    frame = _runs([("shampoo", "sparse60", 0, 89.0, "projection"), ("shampoo", "sparse60", 1, 89.5, "projection"),
                   ("shampoo", "sparse60", 0, 88.0, "gradual"), ("shampoo", "sparse60", 1, 70.0, "gradual")])
    frame["status"] = ["finished", "finished", "finished", "failed"]
    results = A.final_results(frame).set_index("sparsity_strategy")
    assert results.loc["gradual", "failed"] == 1 and results.loc["gradual", "test_acc_mean"] == 88.0
    assert results.loc["projection", "finished"] == 2 and results.loc["projection", "failed"] == 0


def test_performance_profile_keys_on_method_and_strategy():
    # shampoo's gradual strategy is cheap on seed 0 of sparse60: merged with its projection runs, the
    # min over strategies would credit projection with it
    rows = [("shampoo", "sparse60", s, 90.0, st) for s in (0, 1) for st in ("projection", "gradual")]
    rows += [("adam", "sparse60", s, 90.0) for s in (0, 1)]
    frame = _runs(rows)
    frame.loc[frame["optimizer"] == "shampoo", "oracle_evals"] = 1_200_000
    frame.loc[(frame["sparsity_strategy"] == "gradual") & (frame["seed"] == 0), "oracle_evals"] = 300_000
    profile = A.performance_profile(frame, target=89.38, scenarios=("sparse60",), taus=[1.0])
    rho = profile.set_index(["method", "sparsity_strategy", "tau"])["rho"]
    assert len(rho) == 3
    assert rho["shampoo", "projection", 1.0] == 0.0
    assert rho["shampoo", "gradual", 1.0] == 0.5 and rho["adam", "projection", 1.0] == 0.5


def _curve_frame(finals: dict[str, float], epochs=(1.0, 2.0, 3.0, 4.0), seeds=(0, 1)):
    """Accuracy curves rising linearly to each method's final value, for a few seeds."""
    rows = []
    for method, final in finals.items():
        for seed in seeds:
            for e in epochs:
                acc = final - (epochs[-1] - e) * 0.5 + 0.05 * seed
                rows.append(dict(run_id=f"{method}-{seed}", method=method, optimizer=method.split()[0], seed=seed,
                                 epoch=e, test_acc=acc, test_loss=0.3 + 0.01 * (epochs[-1] - e),
                                 train_loss=0.2, oracle_evals=60_000 * e))
    return pd.DataFrame(rows)


def test_one_style_per_member_and_one_hue_per_family_in_every_figure():
    from helpers.evidence import plots as P
    from matplotlib.colors import rgb_to_hsv
    members = names()
    looks = {m: P.style_for(m) for m in members}
    assert P.style_for("adam") == looks["adam"]  # the same mapping on every call
    for family in {get_spec(m).family for m in members}:
        mine = [m for m in members if get_spec(m).family == family]
        assert len({(looks[m]["marker"], looks[m]["linestyle"], looks[m]["color"]) for m in mine}) == len(mine)
        hues = {round(float(rgb_to_hsv(looks[m]["color"])[0]), 2) for m in mine}
        assert len(hues) == 1, f"{family}: members in several hues {hues}"
    family_hues = {round(float(rgb_to_hsv(P.FAMILY_COLORS[f])[0]), 2) for f in ("sgd", "momentum",
                                                                                  "noise_reduction", "second_order")}
    assert len(family_hues) == 4
    tagged = P.styles(["nesterov", "nesterov+onecycle [tuned]"])
    assert tagged["nesterov"] != tagged["nesterov+onecycle [tuned]"]


def test_every_registered_method_has_a_panel_of_at_most_six():
    from helpers.evidence import plots as P
    placed = [m for members in P.PANELS.values() for m in members]
    assert sorted(placed) == sorted(names()) and len(placed) == len(set(placed))
    assert max(len(members) for members in P.PANELS.values()) <= P.MAX_LINES
    assert set(P.PANELS["momentum, SGD-type"]) & {"adam", "adamw", "nadam", "radam"} == set()


def test_cost_ticks_in_thousands():
    from helpers.evidence.plots import thousands
    assert [thousands(v) for v in (0, 500, 120_000, 600_000, 1_500_000)] == ["0", "500", "120k", "600k", "1.5M"]


def test_y_range_on_the_informative_band_with_collapses_in_an_inset():
    import matplotlib
    matplotlib.use("Agg")
    from helpers.evidence import plots as P
    frame = _curve_frame({"adam": 90.0, "nadam": 89.5, "gd": 10.0})
    points = P.line_points(frame, "test_acc")
    (low, high), collapsed = P.informative_band(points, "test_acc")
    assert collapsed == ["gd"]
    assert 88 < low < 88.5 and 90 < high < 90.5  # second halves of the lines ending at 89.5-90.05, not 10-90
    ax = P.curves(frame, y="test_acc", target=89.38)
    assert ax.get_ylim() == pytest.approx((low, high))
    assert len(ax.child_axes) == 1  # the inset with the full range
    assert not P.legend_inside_data(ax)
    fig = P.family_facets(_curve_frame({m: 90.0 - i * 0.1 for i, m in enumerate(names())}), "test_acc", target=89.38)
    per_panel = [len(ax.get_lines()) for ax in fig.axes if ax.get_legend() is not None]
    assert len(per_panel) == len(P.PANELS) and max(per_panel) <= P.MAX_LINES + 1  # + the target line
    matplotlib.pyplot.close("all")


def test_inset_goes_to_the_corner_the_lines_leave_free():
    import matplotlib
    matplotlib.use("Agg")
    import numpy as np
    from helpers.evidence import plots as P
    _, ax = matplotlib.pyplot.subplots()
    x = np.arange(1.0, 11.0)
    falling = (x, 1.0 / x)  # a loss curve: top left to bottom right
    ax.plot(*falling)
    assert P.free_corner(ax, [falling]) == P.INSET_CORNERS[1]  # upper right, not the preferred lower right
    rising = (x, -1.0 / x)
    _, ax = matplotlib.pyplot.subplots()
    ax.plot(*rising)
    assert P.free_corner(ax, [rising]) == P.INSET_CORNERS[0]
    _, ax = matplotlib.pyplot.subplots()
    ax.set_xscale("log")
    ax.plot(x ** 3, 1.0 / x)  # the same shape on a log x axis
    assert P.free_corner(ax, [(x ** 3, 1.0 / x)]) == P.INSET_CORNERS[1]
    matplotlib.pyplot.close("all")


def test_difference_plot_marks_verdicts_and_keeps_outliers_at_the_edge():
    import matplotlib
    matplotlib.use("Agg")
    from helpers.evidence import plots as P
    table = pd.DataFrame({"method": ["adam", "sgd", "gd", "nadam"], "sparsity_strategy": "projection",
                          "difference": [0.0, -0.5, -80.0, 0.1], "ci_low": [None, -0.9, -99.0, -0.5],
                          "ci_high": [None, -0.1, -61.0, 0.7], "verdict": ["best", "separable", "separable",
                                                                             "not separable"]})
    ax = P.difference_plot({"test accuracy difference (points)": table})[0]
    markers = [line for line in ax.get_lines() if line.get_marker() not in ("None", None, "")]
    faces = {tuple(line.get_xdata()): line.get_markerfacecolor() for line in markers}
    assert faces[(-0.5,)] != "white" and faces[(0.1,)] == "white"  # filled separable, hollow not
    assert (-3.0,) in faces  # gd's -80 drawn at the axis edge
    assert any(t.get_text() == "-80" for t in ax.texts)
    assert ax.get_xlim() == (-3.0, 3.0)
    matplotlib.pyplot.close("all")


def test_density_plot_draws_one_line_per_method_and_the_other_strategies_as_markers():
    import matplotlib
    matplotlib.use("Agg")
    from helpers.evidence import plots as P
    rows = [("adam", "projection", d, 90 - 10 * (1 - d)) for d in (1.0, 0.6, 0.3)] + \
        [("sgd", "projection", d, 89 - 10 * (1 - d)) for d in (1.0, 0.6)] + \
        [("adam", "gradual", 1.0, 90.0), ("adam", "gradual", 0.6, 87.0), ("sgd", "thin (neurons)", 0.3, 80.0)]
    table = pd.DataFrame(rows, columns=["method", "sparsity_strategy", "density", "test_acc_mean"]).assign(
        test_acc_std=0.1)
    ax = P.density_plot(table)
    drawn = [line for line in ax.get_lines() if len(line.get_xdata())]
    connected = [line for line in drawn if line.get_linestyle() not in ("None", "none", "")]
    assert len(connected) == 2  # the projection of each method
    gradual = [line for line in drawn if line.get_marker() == "^"]
    assert [list(line.get_xdata()) for line in gradual] == [[0.6]]  # its dense point is the projection's
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["adam", "sgd", " ", "projection", "gradual", "thin (neurons)"]  # one column each
    matplotlib.pyplot.close("all")


def test_density_plot_keeps_collapsed_densities_out_of_the_main_axis_and_shows_them_in_the_inset():
    import matplotlib
    matplotlib.use("Agg")
    from helpers.evidence import plots as P
    rows = [("kfac", "projection", 1.0, 90.4), ("kfac", "projection", 0.1, 89.1), ("kfac", "projection", 0.05, 34.7),
            ("sgd", "projection", 1.0, 89.9), ("sgd", "projection", 0.1, 88.0), ("sgd", "projection", 0.05, 10.0)]
    table = pd.DataFrame(rows, columns=["method", "sparsity_strategy", "density", "test_acc_mean"]).assign(
        test_acc_std=[0.1, 0.2, 43.0, 0.1, 0.3, 0.0])
    ax = P.density_plot(table)
    low, high = ax.get_ylim()
    assert 85 < low < 88 and 90.4 < high < 92  # 5%'s best (34.7, std 43) collapsed: not in the band
    assert len(ax.child_axes) == 1 and ax.child_axes[0].get_title() == "full range"
    matplotlib.pyplot.close("all")
