"""The batched engine gives each model the records the single-model engine gives it.

Both are one loop (helpers.engine.train.run) with K models or one; in float32 they differ only
in the grouped convolutions' summation order (groups=K vs 1). Tolerances over the short
runs below: steps, epochs, oracle counts, learning rates, densities and divergence flags
equal; losses within rtol 1e-3; accuracies within 0.2 points. The step-by-step float64
comparison of every method, scenario and strategy is tests/test_engine_equivalence.py.
"""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from helpers.engine import batched
from helpers.engine.batched import batch_groups, can_batch, train_many, why_not_batch
from helpers.engine.config import RunConfig
from helpers.problem.data import load
from helpers.problem.model import LeNet5
from helpers.optimizers import get_spec
from helpers.engine.train import RECORD_COLUMNS, train

FRACTION, VAL = 0.05, 2_000
TINY = dict(epochs=1, train_fraction=FRACTION, evals_per_epoch=2, eval_split="val", val_size=VAL)
EXACT = ("epoch", "step", "grad_evals", "hvp_evals", "oracle_evals", "lr", "density", "diverged")
LOSSES = ("train_loss", "test_loss", "test_starter_loss", "val_loss")
LOSS_RTOL = 1e-3
ACC_POINTS = 0.2
ACCURACIES = ("test_acc", "val_acc")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_val():
    return load(device="cpu", train_fraction=FRACTION, val_size=VAL)


@pytest.fixture(scope="module")
def tiny_test():
    return load(device="cpu", train_fraction=FRACTION)


def _assert_same_records(got: list[dict], want: list[dict]):
    assert len(got) == len(want) and len(got) > 0
    for a, b in zip(got, want):
        assert list(a) == RECORD_COLUMNS
        for key in EXACT:
            assert a[key] == pytest.approx(b[key], rel=1e-6), key
        for key in LOSSES:
            assert (math.isnan(a[key]) and math.isnan(b[key])) or a[key] == pytest.approx(b[key], rel=LOSS_RTOL), key
        for key in ACCURACIES:
            assert (math.isnan(a[key]) and math.isnan(b[key])) or abs(a[key] - b[key]) <= ACC_POINTS, key


@pytest.mark.parametrize("optimizer, hparams, extra", [
    ("sgd", [{"lr": 0.05}, {"lr": 0.1}], dict(eval_split="test", val_size=10_000, evals_per_epoch=1)),
    ("heavy_ball", [{"lr": 0.01}, {"lr": 0.02, "momentum": 0.8}, {"lr": 0.005}], {}),
    ("adam", [{"lr": 1e-3}, {"lr": 5e-4}, {"lr": 2e-3}], {}),
    ("sgd", [{"lr": 0.05}, {"lr": 0.1}], dict(scenario="sparse60")),
    ("adamw_schedulefree", [{"lr": 1e-3}, {"lr": 2e-3}], dict(scenario="sparse60", sparsity_strategy="gradual")),
])
def test_each_model_gets_the_single_engine_records(optimizer, hparams, extra, tiny_val, tiny_test):
    settings = {**TINY, **extra}
    data = tiny_test if settings["eval_split"] == "test" else tiny_val
    configs = [RunConfig(optimizer=optimizer, hparams=h, seed=s, **settings)
               for s, h in enumerate(hparams)]
    results = train_many(configs, data, progress=False)
    for config, result in zip(configs, results):
        single = train(config, data, progress=False)
        _assert_same_records(result.records, single.records)
        assert not result.diverged
        if settings["eval_split"] == "test":  # per-sample predictions of the final evaluation
            assert (result.predictions["pred"] == single.predictions["pred"]).mean() > 0.999
        else:
            assert result.predictions is None
    assert results[0].records[-1]["grad_evals"] == len(data.train)
    assert results[0].records[0]["wall_s"] > 0
    if "scenario" in extra:
        from helpers.constraints.scenarios import check_records
        for config, res in zip(configs, results):
            check_records(config, res.records, len(data.train))
            assert res.records[-1]["density"] <= 0.6


def test_sgd_heavy_ball_and_nesterov_share_one_rule():
    assert can_batch([RunConfig(optimizer=n, **TINY) for n in ("sgd", "heavy_ball", "nesterov")])


def test_forward_is_the_vmapped_model():
    torch.manual_seed(0)
    flat = batched.stack_models([LeNet5() for _ in range(3)])
    x = torch.rand(3, 5, 1, 28, 28)
    want = batched.reference_logits(flat, x)
    torch.testing.assert_close(batched.forward(batched.unstack(flat), x), want, rtol=1e-5, atol=1e-5)
    shared = batched.forward(batched.unstack(flat), x[0], shared=True)
    torch.testing.assert_close(shared, batched.reference_logits(flat, x[0].expand(3, -1, -1, -1, -1)),
                               rtol=1e-5, atol=1e-5)
    one = LeNet5()
    torch.testing.assert_close(batched.to_model(batched.stack_models([one])[0])(x[0]), one(x[0]))


def test_a_diverging_model_stops_alone(tiny_val):
    configs = [RunConfig(optimizer="heavy_ball", hparams={"lr": lr}, **TINY) for lr in (1e6, 0.02)]
    bad, good = train_many(configs, tiny_val, progress=False)
    alone = train(configs[0], tiny_val, progress=False)
    assert bad.diverged and alone.diverged and len(bad.records) == len(alone.records) == 1
    assert math.isnan(bad.records[-1]["val_acc"]) and bad.records[-1]["diverged"]
    assert not good.diverged
    _assert_same_records(good.records, train(configs[1], tiny_val, progress=False).records)


def test_incompatible_configurations_are_refused():
    base = RunConfig(optimizer="sgd", **TINY)
    assert can_batch([base, RunConfig(optimizer="sgd", hparams={"lr": 0.1}, seed=3, **TINY)])
    cases = [
        (RunConfig(optimizer="sgd", batch_size=128, **TINY), "batch_size"),
        (RunConfig(optimizer="adam", **TINY), "update rule"),
        (RunConfig(optimizer="sgd", **{**TINY, "epochs": 2}), "epochs"),
        (RunConfig(optimizer="sgd", schedule="cosine", **TINY), "schedule"),
        (RunConfig(optimizer="lbfgs", **TINY), "no stacked rule"),
        (base, "twice"),
    ]
    for other, reason in cases:
        assert not can_batch([base, other])
        with pytest.raises(ValueError, match=reason):
            train_many([base, other], None, progress=False)
    too_many = [RunConfig(optimizer="sgd", seed=s, **TINY) for s in range(batched.MAX_SAMPLES_PER_STEP // 64 + 1)]
    assert "at most" in why_not_batch(too_many)


def test_groups_keep_order_and_split_what_differs():
    a = [RunConfig(optimizer="nesterov", seed=s, **TINY) for s in range(3)]
    b = [RunConfig(optimizer="adamw", seed=s, **TINY) for s in range(2)]
    lone = RunConfig(optimizer="lbfgs", **TINY)
    configs = [a[0], b[0], lone, a[1], b[1], a[2]]
    assert batch_groups(configs) == [[0, 3, 5], [1, 4], [2]]
    assert batch_groups(configs, max_k=2) == [[0, 3], [1, 4], [2], [5]]


def test_runs_that_must_share_a_rule_s_hyperparameter_are_grouped_apart():
    """SARAH's models share their snapshot schedule: trials at 256 and 1,024 steps between
    snapshots form two groups (one group failed in the study and fell back to single runs)."""
    sarah = [RunConfig(optimizer="sarah", hparams={"lr": lr, "snapshot_every": every}, **TINY)
             for lr, every in ((0.01, 256), (0.02, 1024), (0.03, 256))]
    assert batch_groups(sarah) == [[0, 2], [1]]
    assert "shared hyperparameters" in why_not_batch(sarah[:2])


def test_run_all_batches_and_records_like_single_runs(runs_root):
    from helpers.study.experiment import run_all
    from helpers.study.records import load_records, run_and_record
    configs = [RunConfig(optimizer="sgd", seed=s, **TINY) for s in (0, 1)]
    lone = RunConfig(optimizer="gd", **TINY)
    metas = run_all(configs + [lone], root=runs_root, progress=False, batch=True)
    assert [m["status"] for m in metas] == ["finished"] * 3
    assert [m.get("batched", {}).get("models") for m in metas] == [2, 2, None]
    single = run_and_record(RunConfig(optimizer="sgd", seed=0, tag="single", **TINY), runs_root / "x")
    assert set(metas[0]) - {"batched"} == set(single)
    frame = load_records(runs_root)
    assert len(frame) == 5 and frame["run_id"].nunique() == 3
    again = run_all(configs, root=runs_root, progress=False, batch=True)
    assert [m["started"] for m in again] == [m["started"] for m in metas[:2]]
    assert json.loads((runs_root / configs[0].run_id / "meta.json").read_text())["status"] == "finished"


def test_benchmark_starter_loop_reads_local_files(tmp_path):
    from benchmarks.run import starter_dataset, starter_loop
    dataset = starter_dataset(tmp_path)
    assert len(dataset) == 60_000
    got = starter_loop(dataset, steps=2, device=torch.device("cpu"))
    assert got["samples"] == 128 and got["steps"] == 2 and got["wall_s"] > 0


def test_fixed_batches_line_up_when_the_last_batch_is_short(tiny_val):
    """SAGA's fixed partition with n not a multiple of the batch: the short batch comes last in
    every model's epoch, so K models stack; each model's records equal its lone run."""
    n = len(tiny_val.train)
    assert n % 64
    configs = [RunConfig(optimizer="saga", hparams={"lr": lr}, seed=s, **{**TINY, "epochs": 2})
               for s, lr in enumerate((0.05, 0.02))]
    results = train_many(configs, tiny_val, progress=False)
    for config, result in zip(configs, results):
        _assert_same_records(result.records, train(config, tiny_val, progress=False).records)
    assert results[0].records[-1]["grad_evals"] == 2 * n
