"""The side studies' tables pick the right runs from the records and aggregate them correctly
(hand-built records, hand-computed means)."""
import json
import math

import matplotlib
import pandas as pd
import pytest

from helpers.evidence import side_studies as SS
from helpers.study import definition as D

matplotlib.use("Agg")


def run(run_id, optimizer="sgd", scenario="standard", seed=0, acc=80.0, loss=0.5, status="finished",
        split="test", scaling="standardize", tag="final", epochs=10, batch="64", hparams=None, norm=10.0,
        evals=((1.0, 600_000),), train_loss=(0.4,)):
    """One run's evaluation rows in the layout of ``load_records``."""
    rows = []
    for (epoch, oracle), tl in zip(evals, train_loss):
        rows.append(dict(run_id=run_id, optimizer=optimizer, scenario=scenario, seed=seed, status=status,
                         eval_split=split, scaling=scaling, tag=tag, planned_epochs=epochs, batch_size=batch,
                         hparams=json.dumps(hparams or {"lr": 0.1}), weight_norm=norm, epoch=epoch,
                         oracle_evals=oracle, train_loss=tl, test_acc=acc, test_loss=loss))
    return rows


def frame(*runs):
    return pd.DataFrame([row for r in runs for row in r])


def test_weight_decay_table_takes_the_definition_s_decays_of_its_methods_only():
    low, high = D.weight_decays("coupled")[0], D.weight_decays("decoupled")[-1]
    records = frame(
        run("a0", "adam", "l2", 0, 90.0, 0.30, hparams={"lr": 1e-3, "weight_decay": low}, norm=20.0),
        run("a1", "adam", "l2", 1, 91.0, 0.28, hparams={"lr": 1e-3, "weight_decay": low}, norm=22.0),
        run("a2", "adam", "l2", 2, 10.0, 9.0, status="diverged", hparams={"lr": 1e-3, "weight_decay": low}),
        run("w0", "adamw", "l2", 0, 89.0, 0.31, hparams={"lr": 1e-3, "weight_decay": high}, norm=5.0),
        run("main", "adam", "l2", 0, 92.0, 0.25, hparams={"lr": 1e-3, "weight_decay": 3.3e-4}),  # the l2 row's tuned decay
        run("tune", "adam", "l2", 0, 95.0, 0.2, split="val", hparams={"lr": 1e-3, "weight_decay": low}),
        run("std", "adam", "standard", 0, 93.0, 0.2, hparams={"lr": 1e-3, "weight_decay": low}),
        run("sgd", "sgd", "l2", 0, 93.0, 0.2, hparams={"lr": 1e-1, "weight_decay": low}),
    )
    table = SS.weight_decay_results(records).set_index(["optimizer", "weight_decay"])
    assert sorted(table.index) == [("adam", low), ("adamw", high)]
    adam = table.loc[("adam", low)]
    assert adam["kind"] == "coupled" and adam["seeds"] == 2
    assert adam["test_acc_mean"] == pytest.approx(90.5) and adam["test_acc_std"] == pytest.approx(math.sqrt(0.5))
    assert adam["weight_norm"] == pytest.approx(21.0)
    assert adam["shrinkage"] == pytest.approx(1e-3 * low)
    assert table.loc[("adamw", high), "kind"] == "decoupled"
    assert SS.weight_decay_plot(SS.weight_decay_results(records)) is not None


def test_preprocessing_table_puts_each_method_beside_its_standardised_finals_and_the_starter():
    records = frame(
        run("u0", "sgd", seed=0, acc=88.0, scaling="unit"), run("u1", "sgd", seed=1, acc=86.0, scaling="unit"),
        run("u2", "sgd", seed=2, acc=10.0, scaling="unit", status="diverged"),
        run("s0", "sgd", seed=0, acc=90.0), run("s1", "sgd", seed=1, acc=91.0),
        run("b8", "sgd", seed=0, acc=70.0, batch="8"),  # the batch-size study, not the main recipe
        run("e1", "sgd", seed=0, acc=70.0, epochs=1),  # the small budget
        run("adam", "adam", seed=0, acc=92.0),  # not re-tuned on unit pixels: not in the table
        run("st0", "sgd", seed=0, acc=30.0, scaling="unit", tag="starter", hparams={"lr": 1e-3}),
        run("st1", "sgd", seed=1, acc=60.0, scaling="unit", tag="starter", hparams={"lr": 1e-3}),
    )
    table = SS.preprocessing_results(records).set_index(["method", "pixels"])
    assert sorted(table.index) == [("sgd", "[0, 1] (re-tuned)"), ("sgd", "standardised"),
                                   ("starter", "[0, 1] (starter recipe)")]
    unit = table.loc[("sgd", "[0, 1] (re-tuned)")]
    assert (unit["runs"], unit["finished"]) == (3, 2) and unit["test_acc_mean"] == pytest.approx(87.0)
    assert table.loc[("sgd", "standardised"), "test_acc_mean"] == pytest.approx(90.5)
    assert table.loc[("starter", "[0, 1] (starter recipe)"), "test_acc_mean"] == pytest.approx(45.0)
    tex = SS.preprocessing_tex(SS.preprocessing_results(records))
    assert "87.00 $\\pm$ 1.41" in tex and "2/3" in tex and "starter" in tex


def test_batch_size_curves_average_seeds_and_price_oracle_calls_by_the_timing_table(monkeypatch):
    per_call = {("sgd", 8): 2e-4, ("sgd", "full"): 1e-5}
    monkeypatch.setattr("helpers.study.timing.seconds_per_oracle_call", lambda m, b: per_call[(m, b)])
    evals = ((0.5, 30_000), (1.0, 60_000))
    records = frame(
        run("b8s0", seed=0, epochs=1, batch="8", evals=evals, train_loss=(1.0, 0.6)),
        run("b8s1", seed=1, epochs=1, batch="8", evals=evals, train_loss=(0.8, 0.4)),
        run("full", seed=0, epochs=1, batch="full", evals=evals, train_loss=(2.0, 1.8)),
        run("main", seed=0, epochs=10, batch="8", evals=evals, train_loss=(9.0, 9.0)),  # the main budget
        run("tune", seed=0, epochs=1, batch="8", split="val", evals=evals, train_loss=(9.0, 9.0)),
    )
    curves = SS.batch_size_curves(records).set_index(["batch", "oracle_evals"])
    assert sorted(curves.index) == [(8, 30_000), (8, 60_000), (60_000, 30_000), (60_000, 60_000)]
    assert curves.loc[(8, 60_000), "train_loss"] == pytest.approx(0.5)
    assert curves.loc[(8, 60_000), "seeds"] == 2
    assert curves.loc[(8, 30_000), "wall_s"] == pytest.approx(6.0)
    assert curves.loc[(60_000, 60_000), "wall_s"] == pytest.approx(0.6)
    assert SS.batch_size_curves_plot(SS.batch_size_curves(records)) is not None


def test_starter_runs_are_the_starter_s_final_evaluations():
    records = frame(run("st0", tag="starter", scaling="unit"), run("st0v", tag="starter", split="val"), run("s0"))
    assert set(SS.starter_runs(records)["run_id"]) == {"st0"}


def test_side_study_sentences_name_the_best_point_of_each_method():
    batch = pd.DataFrame([
        dict(optimizer="sgd", planned_epochs=1, batch=8, test_acc_mean=85.0, test_acc_std=0.5),
        dict(optimizer="sgd", planned_epochs=1, batch=60_000, test_acc_mean=40.0, test_acc_std=1.0),
        dict(optimizer="heavy_ball", planned_epochs=1, batch=32, test_acc_mean=86.0, test_acc_std=float("nan")),
        dict(optimizer="sgd", planned_epochs=10, batch=1024, test_acc_mean=90.0, test_acc_std=0.1),
        dict(optimizer="sgd", planned_epochs=10, batch=64, test_acc_mean=89.0, test_acc_std=0.1)])
    text = SS.batch_size_sentence(batch)
    assert "at 60{,}000 oracle calls, the highest mean test accuracy of heavy\\_ball at batch 32 (86.00\\%)" in text
    assert "and of sgd at batch 8 (85.00\\% $\\pm$ 0.50)" in text
    assert "at 600{,}000 oracle calls, the highest mean test accuracy of sgd at batch 1{,}024" in text
    decay = pd.DataFrame([
        dict(kind="coupled", optimizer="adam", weight_decay=1e-6, test_acc_mean=90.0, test_acc_std=0.3),
        dict(kind="coupled", optimizer="adam", weight_decay=1e-4, test_acc_mean=90.4, test_acc_std=0.3,
             shrinkage=2e-7),
        dict(kind="coupled", optimizer="adam", weight_decay=1e-3, test_acc_mean=90.2, test_acc_std=0.2),
        dict(kind="coupled", optimizer="adam", weight_decay=1e-2, test_acc_mean=80.0, test_acc_std=0.2)])
    assert SS.weight_decay_sentence(decay) == (
        "In the weight-decay study, adam (coupled) is most accurate at decay 0.0001 (90.40\\% $\\pm$ 0.30; "
        "shrinkage $2 \\times 10^{-7}$ per step) and within one standard deviation of that up to 0.001.")
    steep = decay.assign(test_acc_mean=[90.0, 90.4, 89.0, 80.0])
    assert SS.weight_decay_sentence(steep).endswith(
        "per step) and every larger decay more than one standard deviation below it.")
    assert SS.weight_decay_sentence(steep.iloc[:2]).endswith("per step), the largest decay run.")
    pixels = pd.DataFrame([dict(method="sgd", pixels=SS.UNIT, test_acc_mean=88.0, test_acc_std=0.2),
                           dict(method="sgd", pixels=SS.STANDARDISED, test_acc_mean=90.0, test_acc_std=0.1),
                           dict(method="starter", pixels=SS.STARTER_PIXELS, test_acc_mean=45.0, test_acc_std=19.0)])
    assert SS.preprocessing_sentence(pixels) == (
        "Re-tuned by the protocol, sgd reaches 88.00\\% $\\pm$ 0.20 on $[0, 1]$ pixels against 90.00\\% $\\pm$ 0.10 "
        "on standardised pixels; the starter's recipe 45.00\\% $\\pm$ 19.00.")
    assert SS.batch_size_sentence(batch.iloc[:0]) == SS.weight_decay_sentence(decay.iloc[:0]) == ""


def test_variance_ratios_pair_each_estimator_with_the_mini_batch_gradient_at_the_same_point():
    def m(run_id, method, estimator, checkpoint, relative, kind="exact", batch=64, run_batch=64, age=None):
        return dict(run_id=run_id, method=method, estimator=estimator, checkpoint=checkpoint, relative=relative,
                    kind=kind, batch_size=batch, run_batch=run_batch, age_steps=age)
    table = pd.DataFrame([
        m("v", "svrg", "minibatch", 0.5, 1.0), m("v", "svrg", "svrg", 0.5, 2.0, age=1),
        m("v", "svrg", "minibatch", 2, 1.0), m("v", "svrg", "svrg", 2, 0.5, age=470),
        m("v", "svrg", "minibatch", 5, 2.0), m("v", "svrg", "svrg", 5, 1.0, age=1_385),
        m("v", "svrg", "svrg", 5, 9.0, batch=8), m("v", "svrg", "minibatch", 5, 90.0, batch=8),  # not the run's batch
        m("s", "sarah", "minibatch", 2, 1.0), m("s", "sarah", "sarah", 2, 3.0, kind="realized"),
        m("s", "sarah", "sarah", 2, 0.1, kind="estimate"),  # an estimate: left out
    ])
    ratios = SS.variance_ratios(table).set_index(["method", "checkpoint"])
    assert ratios.loc[("svrg", 0.5), "ratio"] == pytest.approx(2.0)
    assert ratios.loc[("svrg", 5), "ratio"] == pytest.approx(0.5)
    assert ratios.loc[("sarah", 2), "ratio"] == pytest.approx(3.0) and ratios.loc[("sarah", 2), "kind"] == "realized"
    text = SS.variance_sentence(SS.variance_ratios(table))
    assert "svrg's is below it from epoch 2 on (0.50 at epoch 2, 470 steps after its snapshot, up to 2.00 at " \
           "epoch 0.5, 1 step after its snapshot)" in text
    assert "sarah's is above it at every checkpoint (3.00 at epoch 2);" in text
    assert SS.variance_tex(SS.variance_ratios(table)).splitlines()[4:6] == [
        "sarah & sarah (realized) & -- & 3.00 & -- \\\\",
        "svrg & svrg (exact) & 2.00 (1) & 0.50 (470) & 0.50 (1{,}385) \\\\"]
