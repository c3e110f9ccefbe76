"""Gradient-variance measurements: the per-sample (torch.func) formula against brute force over
every batch of a tiny problem, and a measurement along a tiny trajectory through the records."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from helpers.evidence import variance as V
from helpers.problem.data import FashionMNIST, Split
from helpers.problem.model import LeNet5


def tiny_split(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Split(torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g))


def batch_gradient(model, split, index):
    model.zero_grad()
    F.cross_entropy(model(split.x[list(index)]), split.y[list(index)]).backward()
    return V.flat_gradient(model).double()


def brute_mse(models, split, b):
    """Mean over every b-subset of ||estimate - full||^2 (estimate: the batch gradient at models[0],
    minus the same batch's at models[1] plus its full gradient when given)."""
    n = len(split)
    full = [batch_gradient(m, split, range(n)) for m in models]
    errors = []
    for subset in itertools.combinations(range(n), b):
        v = batch_gradient(models[0], split, subset)
        if len(models) == 2:
            v = v - batch_gradient(models[1], split, subset) + full[1]
        errors.append(float((v - full[0]).pow(2).sum()))
    return sum(errors) / len(errors)


@pytest.mark.parametrize("b", [1, 3, 8])
def test_minibatch_error_from_per_sample_gradients_matches_every_batch(b):
    torch.manual_seed(0)
    model, split = LeNet5().double(), tiny_split()
    split = Split(split.x.double(), split.y)
    m = V.sample_moments([model], split, chunk=3)
    assert torch.allclose(m["mean"], batch_gradient(model, split, range(8)), rtol=1e-9, atol=1e-12)
    assert V.minibatch_mse(m["spread"], 8, b) == pytest.approx(brute_mse([model], split, b), rel=1e-8, abs=1e-14)


def test_svrg_error_from_per_sample_differences_matches_every_batch():
    torch.manual_seed(1)
    model, anchor, split = LeNet5().double(), LeNet5().double(), tiny_split(seed=1)
    split = Split(split.x.double(), split.y)
    with torch.no_grad():
        for p, q in zip(anchor.parameters(), model.parameters()):
            p.copy_(q + 0.05 * torch.randn_like(q))
    m = V.sample_moments([model, anchor], split, chunk=5)
    for b in (2, 4):
        assert V.minibatch_mse(m["diff_spread"], 8, b) == pytest.approx(brute_mse([model, anchor], split, b), rel=1e-8)


def test_per_sample_gradients_are_in_the_engine_s_layout():
    from helpers.engine.stacked_model import losses_and_grad, stack_models
    torch.manual_seed(2)
    model, split = LeNet5(), tiny_split(4, seed=2)
    per = V.per_sample_gradients(model, split.x, split.y)
    _, g = losses_and_grad(stack_models([model]), split.x[None], split.y[None])
    assert torch.allclose(per.mean(0), g[0], atol=1e-6)


def test_minibatch_error_refuses_a_batch_larger_than_the_data():
    with pytest.raises(ValueError, match=r"batch size must be in \[1, 8\], got 9"):
        V.minibatch_mse(1.0, 8, 9)


@pytest.mark.parametrize("method, hparams", [("svrg", {"lr": 0.05}), ("heavy_ball", {"lr": 0.02, "momentum": 0.9}),
                                             ("saga", {"lr": 0.02}), ("sarah", {"lr": 0.05})])
def test_a_trajectory_measurement_reaches_its_checkpoints(method, hparams):
    from helpers.engine.config import RunConfig
    g = torch.Generator().manual_seed(3)
    train = Split(torch.randn(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g))
    data = FashionMNIST(train=train, test=tiny_split(16, seed=4), val=None)
    config = RunConfig(optimizer=method, hparams=hparams, epochs=9, batch_size=16, grad_budget=9 * 64)
    table = V.trajectory_variance(config, data, (1, 4), (1, 16, 64))  # epochs of oracle calls
    assert sorted(table["checkpoint"].unique()) == [1, 4]
    mini = table[table["estimator"] == "minibatch"]
    assert (mini[mini["batch_size"] == 64]["mse"] == 0).all() and (mini["mse"] >= 0).all()
    own = {"svrg": "svrg", "heavy_ball": "momentum", "saga": "saga", "sarah": "sarah"}[method]
    assert len(table[table["estimator"] == own]) >= 2
    if method in ("sarah", "heavy_ball"):
        assert set(table[table["estimator"] == own]["kind"]) == {"realized", "estimate"}
    assert (table["oracle_epochs"] >= table["checkpoint"]).all()
    if method == "svrg":
        assert table[table["estimator"] == "svrg"]["age_steps"].notna().all()


def test_a_measurement_is_recorded_once_and_read_back(runs_root):
    from helpers.engine.config import RunConfig
    from helpers.study import records
    from helpers.study.planner import Measurement
    config = RunConfig(optimizer="sgd", hparams={"lr": 0.05}, epochs=2, train_fraction=0.01, grad_budget=1_200)
    m = Measurement("variance", config, (0.5, 1), (1, 64), "variance", "sgd", "variance")
    assert not records.measurement_done(m.measurement_id)
    assert records.measure_and_record(m) == m.measurement_id
    folder = records.measurements_dir() / m.measurement_id
    assert folder.parent == runs_root.parent / "measurements"
    stamp = (folder / "meta.json").stat().st_mtime_ns
    table = records.load_measurements(kind="variance")
    assert set(table["checkpoint"]) == {0.5, 1} and set(table["batch_size"]) == {1, 64}
    assert set(table["study"]) == {"variance"} and set(table["run_id"]) == {config.run_id}
    records.measure_and_record(m)
    assert (folder / "meta.json").stat().st_mtime_ns == stamp and records.measurement_done(m.measurement_id)


def test_saga_error_is_the_mean_over_batches_of_the_rule_s_own_steps():
    """saga_mse against the SAGA rule itself: v_j read off one step of lr 1 on a copy, for every batch j."""
    import copy
    from types import SimpleNamespace

    from helpers.engine.stacked_model import losses_and_grad, stack_models
    from helpers.optimizers.saga import SAGARule
    torch.manual_seed(5)
    split = tiny_split(10, seed=5)
    batches = [torch.arange(0, 4), torch.arange(4, 8), torch.arange(8, 10)]  # a shorter last batch
    model = LeNet5()
    p = stack_models([model])
    rule = SAGARule([{"lr": 1.0, "weight_decay": 0.0}], p)
    lr = torch.ones(1, 1, dtype=torch.float64)

    def oracle(j):
        return SimpleNamespace(batch_ids=[j], n_batches=len(batches), batch_size=len(batches[j]))

    for j in (1, 0, 2, 1):  # fill the table at moving points
        g = losses_and_grad(p, split.x[batches[j]][None], split.y[batches[j]][None])[1]
        rule.step(p, g, 0.01 * lr, oracle(j))
    here = V._module(p[0])
    full = V.sample_moments([here], split)["mean"]
    errors = []
    for j, index in enumerate(batches):
        q, r = p.clone(), copy.deepcopy(rule)
        g = losses_and_grad(q, split.x[index][None], split.y[index][None])[1]
        r.step(q, g, lr, oracle(j))
        errors.append(float(((p - q)[0].double() - full).pow(2).sum()))
    assert V.saga_mse(here, rule, batches, split, full) == pytest.approx(sum(errors) / len(errors), rel=1e-4)


def test_a_failed_measurement_is_a_result_until_retried(runs_root):
    from helpers.engine.config import RunConfig
    from helpers.study import records
    from helpers.study.planner import Measurement
    config = RunConfig(optimizer="lbfgs", epochs=1, train_fraction=0.01)  # no stacked rule: refused
    m = Measurement("variance", config, (0.5,), (1,))
    records.measure_and_record(m)
    meta = records.read_meta_file(records.measurements_dir() / m.measurement_id / "meta.json")
    assert meta["status"] == "failed" and "no stacked rule" in meta["error"]
    assert records.measurement_done(m.measurement_id) and not records.measurement_done(m.measurement_id,
                                                                                        retry_failed=True)
    assert records.load_measurements().empty
