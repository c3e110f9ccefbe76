import gc
import itertools
from contextlib import contextmanager

import pytest
import torch

from helpers.engine.config import RunConfig
from helpers.problem.data import FashionMNIST
from helpers.problem.model import N_CONSTRAINED_WEIGHTS, LeNet5, constrained_weights, density
from helpers.optimizers import names
from helpers.constraints.scenarios import (DensityError, SCENARIOS, check_model, check_records, get_scenario,
                               sparse_scenario, within_budget)
from helpers.constraints.sparsity import (STRATEGIES, SparsityHook, budget, count_nonzero, project_,
                              pruning_schedule, topk_mask)
from helpers.constraints.structured import compact_model, forward_flops, neuron_masks, parameter_count, thin_widths
from helpers.engine.train import train


pytestmark = pytest.mark.usefixtures("one_thread")


def _distance(w, projected):
    return float((w - projected).pow(2).sum())


def test_projection_keeps_exactly_the_k_largest_and_is_idempotent():
    g = torch.Generator().manual_seed(0)
    weights = [torch.randn(30, 20, generator=g), torch.randn(7, 30, generator=g)]
    flat = torch.cat([w.reshape(-1) for w in weights]).abs()
    for k in (0, 1, 17, 400, 809, 810, 2000):
        projected = [w.clone() for w in weights]
        masks = project_(projected, k=k)
        kept = torch.cat([m.reshape(-1) for m in masks])
        assert int(kept.sum()) == min(k, flat.numel()) == count_nonzero(projected)
        if 0 < k < flat.numel():
            assert flat[kept].min() > flat[~kept].max()
        again = [w.clone() for w in projected]
        project_(again, k=k)
        assert all(torch.equal(a, b) for a, b in zip(again, projected))


def test_projection_is_the_closest_point_of_the_constraint_set():
    g = torch.Generator().manual_seed(1)
    for trial in range(30):
        w = torch.randint(-3, 4, (8,), generator=g).float() if trial % 2 else torch.randn(8, generator=g)
        for k in range(9):
            projected = w.clone()
            project_([projected], k=k)
            assert count_nonzero([projected]) <= k
            squares = w.pow(2).tolist()
            best = min(sum(squares) - sum(squares[i] for i in support)
                       for size in range(k + 1) for support in itertools.combinations(range(8), size))
            assert _distance(w, projected) == pytest.approx(best, abs=1e-6)


def test_ties_go_to_the_lower_index_across_layers():
    assert topk_mask(torch.tensor([1.0, -1.0, 1.0, 1.0]), 2).tolist() == [True, True, False, False]
    first, second = torch.ones(2, 2), -torch.ones(3)
    masks = project_([first, second], k=5)
    assert masks[0].all() and masks[1].tolist() == [True, False, False]
    g = torch.Generator().manual_seed(2)
    values = torch.randint(-4, 5, (500,), generator=g).float()
    order = torch.sort(values.abs(), descending=True, stable=True).indices
    for k in (0, 10, 123, 499):
        expected = torch.zeros(500, dtype=torch.bool)
        expected[order[:k]] = True
        assert torch.equal(topk_mask(values, k), expected)


def test_non_finite_weights_never_break_the_budget():
    w = torch.tensor([0.1, float("nan"), -0.3, float("inf"), 0.2, float("nan")])
    project_([w], k=3)
    assert count_nonzero([w]) == 3 and torch.isnan(w[1]) and torch.isinf(w[3])


def test_budget_of_the_registered_scenarios():
    assert budget(N_CONSTRAINED_WEIGHTS, 0.6) == 24_480
    expected = {"sparse60": 24_480, "sparse30": 12_240, "sparse10": 4_080, "sparse5": 2_040, "sparse1": 408}
    assert {name: SCENARIOS[name].budget for name in expected} == expected
    assert SCENARIOS["thin30"].structured and SCENARIOS["thin30"].budget == 12_240
    assert get_scenario("sparse", density=0.25) == get_scenario("sparse25") == sparse_scenario(0.25)
    assert get_scenario("sparse2.5").density == 0.025 and get_scenario("thin45").structured


@pytest.mark.parametrize("name, message", [
    ("sparse0", r"in \(0, 100\]"), ("sparse150", r"in \(0, 100\]"), ("sparse", "needs a density"),
    ("sparse060", "write it as 'sparse60'"), ("dense", "unknown scenario 'dense'.*sparseP"),
])
def test_bad_scenario_names_raise_clear_errors(name, message):
    with pytest.raises(ValueError, match=message):
        get_scenario(name)


@pytest.mark.parametrize("density", [0, -0.1, 1.5, float("nan"), True, "0.6"])
def test_bad_densities_raise_clear_errors(density):
    with pytest.raises(ValueError, match=r"density must be a number in \(0, 1\]"):
        get_scenario("sparse", density=density)


def test_bad_strategy_and_schedule_parameters_raise_clear_errors():
    with pytest.raises(ValueError, match="takes no density"):
        get_scenario("standard", density=0.5)
    with pytest.raises(ValueError, match="unknown sparsity strategy 'magic'"):
        RunConfig(scenario="sparse60", sparsity_strategy="magic")
    with pytest.raises(ValueError, match="start <= end < 1"):
        pruning_schedule("gradual", 100, 0.5, 100, start=0.8, end=0.2)
    with pytest.raises(ValueError, match="dense_share"):
        pruning_schedule("finetune", 100, 0.5, 100, dense_share=1.0)
    with pytest.raises(ValueError, match="total_steps"):
        pruning_schedule("gradual", 100, 0.5, 0)
    with pytest.raises(ValueError, match="trains without L2"):
        RunConfig(scenario="sparse60", hparams={"weight_decay": 1e-4})


def test_gradual_schedule_is_cubic_monotone_and_ends_exactly_at_the_budget():
    n, d, total = N_CONSTRAINED_WEIGHTS, 0.1, 1000
    schedule = pruning_schedule("gradual", n, d, total, start=0.1, end=0.7, every=30)
    steps = [s for s, _ in schedule.events]
    assert steps[0] == 100 and steps[-1] == 700 and all(b - a <= 30 for a, b in zip(steps, steps[1:]))
    assert schedule.events[0][1] == n and schedule.events[-1][1] == budget(n, d) == 4_080
    allowed = [schedule.allowed(c) for c in range(total + 1)]
    assert all(a >= b for a, b in zip(allowed, allowed[1:]))
    assert allowed[100] == n and allowed[701] == 4_080 and schedule.end_step == 701
    middle = dict(schedule.events)[400]
    assert middle == budget(n, d + (1 - d) * 0.5 ** 3)
    tiny = pruning_schedule("gradual", n, d, 3)
    assert tiny.events[-1] == (2, 4_080)
    finetune = pruning_schedule("finetune", n, d, 10)
    assert finetune.events == ((4, 4_080),) and finetune.allowed(4) == n and finetune.allowed(5) == 4_080


def _perturb(model, g):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("structured", [False, True])
def test_gradual_hook_ends_at_the_budget_and_never_exceeds_the_schedule(structured):
    model, g = LeNet5(), torch.Generator().manual_seed(3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    hook = SparsityHook(model, optimizer, 0.1, 50, "gradual", structured=structured)
    weights = constrained_weights(model)
    hook.after_step(-1)
    for step in range(50):
        _perturb(model, g)  # a stand-in for a step that would regrow pruned weights
        hook.after_step(step)
        assert count_nonzero(weights) <= hook.allowed(step + 1)
        if step + 1 >= hook.schedule.end_step and not structured:
            assert count_nonzero(weights) == 4_080
    if structured:
        h1, h2 = thin_widths(4_080)
        assert count_nonzero(weights) == 256 * h1 + h1 * h2 <= 4_080


def test_optimizer_state_is_zeroed_where_weights_are_pruned():
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(32, 1, 28, 28, generator=g), torch.randint(0, 10, (32,), generator=g)
    for make in (lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), lambda p: torch.optim.Adam(p, lr=1e-3)):
        model = LeNet5()
        optimizer = make(model.parameters())
        hook = SparsityHook(model, optimizer, 0.3, 10, "projection")
        for step in range(3):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            hook.after_step(step)
            for w, m in zip(constrained_weights(model), hook.masks):
                tensors = [v for v in optimizer.state[w].values() if torch.is_tensor(v) and v.shape == w.shape]
                assert tensors and all(float(v[~m].abs().max()) == 0 for v in tensors)
                assert all(float(v[m].abs().max()) > 0 for v in tensors)


def test_fixed_mask_phase_masks_gradients_and_hooks_vanish_with_the_run():
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)
    model = LeNet5()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    hook = SparsityHook(model, optimizer, 0.3, 4, "finetune")
    for step in range(4):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        if step >= 2:
            for w, m in zip(constrained_weights(model), hook.masks):
                assert float(w.grad[~m].abs().max()) == 0 and float(w.grad[m].abs().max()) > 0
        optimizer.step()
        hook.after_step(step)
    assert density(model) == budget(N_CONSTRAINED_WEIGHTS, 0.3) / N_CONSTRAINED_WEIGHTS
    del hook, optimizer
    gc.collect()
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    assert float(model.fc1.weight.grad[model.fc1.weight == 0].abs().max()) > 0


class _DenseAverage(torch.optim.SGD):
    """SGD evaluating a dense 'average' (all ones), to test that evaluated weights are restricted."""

    @contextmanager
    def evaluation_weights(self):
        live = [p.detach().clone() for p in self.param_groups[0]["params"]]
        with torch.no_grad():
            for p in self.param_groups[0]["params"]:
                p.fill_(1.0)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, w in zip(self.param_groups[0]["params"], live):
                    p.copy_(w)


def test_evaluated_weights_are_restricted_and_training_weights_restored():
    model = LeNet5()
    optimizer = _DenseAverage(model.parameters(), lr=0.1)
    hook = SparsityHook(model, optimizer, 0.1, 5, "projection")
    hook.after_step(-1)
    live = [w.clone() for w in constrained_weights(model)]
    with optimizer.evaluation_weights():
        assert density(model) == budget(N_CONSTRAINED_WEIGHTS, 0.1) / N_CONSTRAINED_WEIGHTS
        assert float(model.conv1.weight.detach().min()) == 1.0
    assert all(torch.equal(a, b) for a, b in zip(live, constrained_weights(model)))


@pytest.fixture(scope="module")
def tiny_data():
    """128 real training and 200 real test images: enough to exercise every optimizer's step."""
    from helpers.problem.data import load
    data = load(device="cpu", train_fraction=0.01)
    return FashionMNIST(train=data.train.subset(torch.arange(128)), test=data.test.subset(torch.arange(200)))


@pytest.mark.parametrize("optimizer", names())
def test_every_registered_optimizer_stays_within_the_budget_after_every_step(optimizer, tiny_data, monkeypatch):
    seen = []
    original = SparsityHook.after_step

    def checked(self, step):
        original(self, step)
        nonzero = count_nonzero(self.weights)
        assert nonzero <= self.allowed(step + 1), (self.strategy, step, nonzero)
        seen.append((self.strategy, step, nonzero))

    monkeypatch.setattr(SparsityHook, "after_step", checked)
    from helpers.engine.stacked_model import N_CONSTRAINED
    from helpers.engine.stacked_sparsity import StackedSparsity
    stacked = StackedSparsity.after_step

    def checked_rows(self, step, p, state):  # methods with a stacked rule prune rows of one tensor
        stacked(self, step, p, state)
        nonzero = int(torch.count_nonzero(p[:, :N_CONSTRAINED], dim=1).max())
        assert nonzero <= self.schedule.allowed(step + 1), (self.strategy, step, nonzero)
        seen.append((self.strategy, step, nonzero))

    monkeypatch.setattr(StackedSparsity, "after_step", checked_rows)
    scenarios = [("sparse10", s) for s in STRATEGIES] + ([("thin30", "projection")] if optimizer == "sgd" else [])
    for scenario, strategy in scenarios:
        config = RunConfig(optimizer=optimizer, scenario=scenario, sparsity_strategy=strategy,
                           epochs=1, train_fraction=0.01)
        result = train(config, tiny_data, progress=False)
        check_records(config, result.records, len(tiny_data.train))
        if not result.diverged:
            check_model(result.model, scenario)
            assert result.records[-1]["density"] <= get_scenario(scenario).density
        steps = [s for strat, s, _ in seen if strat == strategy]
        assert steps[0] == -1 and steps[-1] == result.records[-1]["step"] - 1
        seen.clear()


def test_records_and_models_above_the_budget_are_errors():
    config = RunConfig(scenario="sparse60", sparsity_strategy="projection", epochs=1)
    ok = [{"step": 10, "density": 0.6, "diverged": False}]
    check_records(config, ok)
    with pytest.raises(DensityError, match="sparse60"):
        check_records(config, [{"step": 5, "density": 0.61, "diverged": False}, *ok])
    gradual = RunConfig(scenario="sparse60", sparsity_strategy="gradual", epochs=1, batch_size=100)
    early, late = {"step": 5, "density": 0.95, "diverged": False}, {"step": 100, "density": 0.6}
    check_records(gradual, [early, late], 10_000)  # 100 steps; pruning from step 10 to 70
    with pytest.raises(DensityError, match="at step 90 density 0.95000 exceeds"):
        check_records(gradual, [{**early, "step": 90}, late], 10_000)
    with pytest.raises(DensityError, match="before its pruning schedule ended"):
        check_records(gradual, [early], 10_000)
    check_records(gradual, [{**early, "diverged": True}], 10_000)
    with pytest.raises(DensityError, match="density 1.00000"):
        check_model(LeNet5(), "sparse60")


def test_a_dense_run_claiming_a_sparse_scenario_is_recorded_as_failed(runs_root, monkeypatch):
    import pandas as pd

    from helpers.study import records
    from helpers.engine.train import RunResult

    def dense_train(config, data, progress=True, model=None):
        row = {"epoch": 1.0, "step": 1, "density": 1.0, "test_acc": 90.0, "diverged": False}
        return RunResult(config, [row], LeNet5(), False)

    monkeypatch.setattr("helpers.engine.train.train", dense_train)
    meta = records.run_and_record(RunConfig(scenario="sparse60", epochs=1, train_fraction=0.01))
    assert meta["status"] == "failed" and "DensityError" in meta["error"]
    frame = pd.DataFrame({"scenario": ["sparse60", "sparse60", "standard", "gone"],
                          "density": [0.6, 0.7, 1.0, 0.1]})
    assert within_budget(frame).tolist() == [True, False, True, False]


def test_neuron_pruning_yields_a_smaller_equivalent_network():
    model = LeNet5()
    weights = constrained_weights(model)
    masks = neuron_masks(weights, 12_240)
    h1, h2 = thin_widths(12_240)
    assert (h1, h2) == (42, 29) and 256 * h1 + h1 * h2 <= 12_240 < 256 * (h1 + 1) + (h1 + 1) * (h2 + 1)
    assert int(masks[0].any(1).sum()) == h1 and bool((masks[0].all(1) | ~masks[0].any(1)).all())
    assert int(masks[1].any(1).sum()) == h2
    with torch.no_grad():
        for w, m in zip(weights, masks):
            w.masked_fill_(~m, 0)
        constant = int(torch.nonzero(model.fc2.weight.any(1))[0])
        model.fc2.weight[constant] = 0  # an fc2 neuron left with only its bias: folded into fc3's bias
        model.fc2.bias[constant] = 0.7
    small = compact_model(model)
    x = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(6))
    assert torch.allclose(small(x), model(x), atol=1e-5)
    assert (small.fc1.out_features, small.fc2.out_features) == (h1, h2 - 1)
    assert parameter_count(LeNet5()) == 44_426
    assert parameter_count(small) == 44_426 - (120 - h1) * (256 + 1 + 84) - (84 - h2 + 1) * (h1 + 1 + 10)
    assert forward_flops(LeNet5()) == 2 * (6 * 25 * 24 * 24 + 16 * 150 * 8 * 8 + 30_720 + 10_080 + 840) == 563_280
    convolutions = 6 * 25 * 24 * 24 + 16 * 150 * 8 * 8
    assert forward_flops(small) == 2 * (convolutions + 256 * h1 + h1 * (h2 - 1) + (h2 - 1) * 10)
