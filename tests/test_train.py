import math

import pandas as pd
import pytest

from helpers.engine.config import RunConfig
from helpers.engine.train import RECORD_COLUMNS, train

QUICK = dict(epochs=2, train_fraction=0.1)


def _strip_time(records):
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in records]


def test_same_seed_gives_identical_records(small_data):
    config = RunConfig(optimizer="heavy_ball", hparams={"lr": 0.05}, seed=7, **QUICK)
    a, b = train(config, small_data, progress=False), train(config, small_data, progress=False)
    assert _strip_time(a.records) == _strip_time(b.records)
    other = train(RunConfig(optimizer="heavy_ball", hparams={"lr": 0.05}, seed=8, **QUICK),
                  small_data, progress=False)
    assert _strip_time(other.records) != _strip_time(a.records)


def test_records_schema_and_accounting(small_data):
    config = RunConfig(optimizer="sgd", hparams={"lr": 0.05}, batch_size=100, evals_per_epoch=2, **QUICK)
    result = train(config, small_data, progress=False)
    frame = pd.DataFrame(result.records)
    assert list(frame.columns) == RECORD_COLUMNS
    assert frame["epoch"].tolist() == [0.5, 1.0, 1.5, 2.0]
    assert frame["grad_evals"].tolist() == [3000, 6000, 9000, 12000]
    assert frame["step"].tolist() == [30, 60, 90, 120]
    assert (frame["wall_s"].diff().dropna() > 0).all()
    assert frame["test_acc"].between(0, 100).all() and frame["val_acc"].isna().all()
    ratio = frame["test_loss"] / frame["test_starter_loss"]
    assert ratio.between(60, 68).all()  # starter's figure ~ mean CE / 64 (last batch is 16)
    assert not frame["diverged"].any() and (frame["density"] == 1.0).all()
    assert frame["test_acc"].iloc[-1] > 15 and frame["train_loss"].iloc[-1] < frame["train_loss"].iloc[0]


def test_huge_learning_rate_is_recorded_as_diverged(small_data):
    result = train(RunConfig(optimizer="sgd", hparams={"lr": 1e6}, **QUICK), small_data, progress=False)
    assert result.diverged and result.records[-1]["diverged"]
    assert math.isnan(result.records[-1]["test_acc"])
    assert len(result.records) == 1


def test_closure_optimizer_and_gradient_budget(small_data):
    config = RunConfig(optimizer="lbfgs", batch_size=2000, grad_budget=20_000, epochs=5,
                       train_fraction=0.1)
    result = train(config, small_data, progress=False)
    last = result.records[-1]
    assert last["grad_evals"] >= 20_000 and last["epoch"] < 5
    assert last["grad_evals"] > last["step"] * 2000  # line search evaluates several times per step
    assert last["test_acc"] > 20


def test_full_batch_lbfgs_step_is_capped_by_the_oracle_budget(small_data):
    """One full-batch L-BFGS step would run 20 iterations (~25 full gradients); with 8 full
    gradients left it stops there."""
    n = 6_000
    config = RunConfig(optimizer="lbfgs_full", grad_budget=8 * n, epochs=3, train_fraction=0.1)
    result = train(config, small_data, progress=False)
    assert len(result.records) == 1 and result.records[0]["step"] == 1
    assert result.records[0]["grad_evals"] == 8 * n
    assert not result.diverged and result.records[0]["test_loss"] < math.log(10)  # below chance


@pytest.mark.parametrize("lr", [0.01, 0.1, 1.0, 10.0])
def test_lbfgs_evaluation_cap_holds_through_the_line_search(lr):
    """torch's strong-Wolfe search may evaluate max_ls + 1 times; a step capped at n evaluations
    (the oracle budget left) never asks for an (n + 1)-th, which would stop and undo the whole
    step (full-batch L-BFGS at lr 0.01 once ended its run at its initial weights that way)."""
    import torch
    from helpers.optimizers.lbfgs_l2 import LBFGSWithDecay
    torch.manual_seed(0)
    worst = {}
    for _ in range(15):
        x = torch.randn(200, 20)
        y = (x @ torch.randn(20, 3)).argmax(1)
        w = torch.nn.Parameter(torch.randn(20, 3) * 3)
        opt = LBFGSWithDecay([w], lr=lr, max_iter=20, history_size=10, line_search_fn="strong_wolfe")
        for n in (2, 3, 5, 10):
            calls = [0]

            def closure():
                calls[0] += 1
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(x @ w, y)
                loss.backward()
                return loss
            opt.limit_evaluations(n)
            opt.step(closure)
            worst[n] = max(worst.get(n, 0), calls[0])
    assert all(calls <= n for n, calls in worst.items()), worst
    assert worst[10] >= 9  # the cap is used, not avoided


def test_validation_split_is_used_for_tuning():
    from helpers.problem.data import load
    data = load(device="cpu", val_size=10_000, train_fraction=0.1)
    result = train(RunConfig(eval_split="val", epochs=1, train_fraction=0.1), data, progress=False)
    assert not math.isnan(result.records[-1]["val_acc"]) and math.isnan(result.records[-1]["test_acc"])
    with pytest.raises(ValueError, match="val_size"):
        train(RunConfig(eval_split="val", epochs=1), type(data)(data.train, data.test), progress=False)


@pytest.fixture(scope="module")
def tiny_data():
    """256 real training and 200 real test images: enough for a few steps of every method."""
    import torch
    from helpers.problem.data import FashionMNIST, load
    data = load(device="cpu", train_fraction=0.01)
    return FashionMNIST(train=data.train.subset(torch.arange(256)), test=data.test.subset(torch.arange(200)))


@pytest.mark.parametrize("optimizer", __import__("helpers.optimizers", fromlist=["names"]).names())
def test_no_record_passes_the_oracle_budget(optimizer, tiny_data):
    """The budget (a little over two passes) binds before the epochs end; no step passes it."""
    budget = 600
    config = RunConfig(optimizer=optimizer, grad_budget=budget, epochs=50, train_fraction=0.01,
                       evals_per_epoch=4)
    result = train(config, tiny_data, progress=False)
    frame = pd.DataFrame(result.records)
    assert len(frame) >= 1 and (frame["oracle_evals"] <= budget).all()
    assert frame["oracle_evals"].iloc[-1] > 0 and frame["epoch"].iloc[-1] < 50
    assert frame["step"].is_monotonic_increasing and frame["oracle_evals"].is_monotonic_increasing


def test_kfac_does_not_start_a_factor_step_its_budget_cannot_pay_for(tiny_data):
    """K-FAC's sampled Fisher costs a second pass on factor steps (every 2nd here: 64, 32, 64, ...
    at batch 32). With 40 calls left after two steps, the third (a factor step, 64 calls) is not
    taken. Predicting a step's cost from the last step's (32) would take it and pass the budget
    (a committed K-FAC record passed its 500,000 by 176 before this)."""
    config = RunConfig(optimizer="kfac", hparams={"lr": 0.01, "factor_interval": 2}, batch_size=32,
                       grad_budget=136, epochs=5, train_fraction=0.01)
    records = train(config, tiny_data, progress=False).records
    assert records[-1]["oracle_evals"] == 96 and records[-1]["step"] == 2


def test_newton_cg_stops_a_step_whose_cg_would_pass_the_budget(tiny_data):
    """A Newton-CG step's cost is known only as its CG runs (here all 10 iterations: a batch
    gradient and ten curvature products of 64 samples each). With 256 calls, the first step's
    fourth product would pass the budget: the step stops there, undone, and no record passes
    256. Predicting the cost from the last step, or from the batch size, would not stop it."""
    config = RunConfig(optimizer="newton_cg", hparams={"lr": 1.0, "cg_tol": 1e-9}, batch_size=64,
                       grad_budget=256, epochs=3, train_fraction=0.01)
    records = train(config, tiny_data, progress=False).records
    assert records[-1]["oracle_evals"] == 256 and records[-1]["step"] == 0


def test_the_decay_ends_when_the_budget_is_spent(tiny_data):
    """Linear decay to 0 over a budget of 1.5 epochs: the rate of the last step is nearly 0, and
    at the half-budget record about half the base rate (progress = oracle calls / budget)."""
    config = RunConfig(optimizer="sgd", hparams={"lr": 0.1}, grad_budget=384, epochs=10, batch_size=32,
                       schedule="linear", train_fraction=0.01, evals_per_epoch=2)
    records = train(config, tiny_data, progress=False).records
    assert [r["oracle_evals"] for r in records] == [128, 256, 384]
    assert [r["lr"] for r in records] == pytest.approx([0.1 * (1 - 96 / 384), 0.1 * (1 - 224 / 384),
                                                        0.1 * (1 - 352 / 384)])


def test_final_test_runs_return_per_sample_predictions(tiny_data):
    result = train(RunConfig(optimizer="adam", epochs=1, train_fraction=0.01), tiny_data, progress=False)
    pred = result.predictions
    assert pred["pred"].dtype.name == "uint8" and pred["loss"].dtype.name == "float32"
    assert pred["pred"].shape == pred["loss"].shape == (200,)
    last = result.records[-1]
    assert 100 * (pred["pred"] == tiny_data.test.y.numpy()).mean() == pytest.approx(last["test_acc"])
    assert float(pred["loss"].mean()) == pytest.approx(last["test_loss"], rel=1e-5)
    diverged = train(RunConfig(optimizer="sgd", hparams={"lr": 1e6}, epochs=1, train_fraction=0.01),
                     tiny_data, progress=False)
    assert diverged.diverged and diverged.predictions is None


def test_a_step_that_cannot_finish_is_not_started(tiny_data):
    """SVRG: a full pass (256) at the epoch start, then 2 x 64 per step. With 64 calls left after
    three steps the fourth is not started, so none of its calls are spent."""
    config = RunConfig(optimizer="svrg", grad_budget=704, epochs=3, train_fraction=0.01)
    records = train(config, tiny_data, progress=False).records
    assert records[-1]["oracle_evals"] == 256 + 3 * 128 and records[-1]["step"] == 3
