import math

import numpy as np
import pytest

from helpers.optimizers import get_spec, names
from helpers.study import definition as D
from helpers.study import tuning as T
from helpers.study.protocol import study_config


def test_grid_is_half_a_decade_apart_and_centred_on_the_range():
    for method in names():
        grid = T.grid_exponents(method, 7)
        assert grid == list(range(grid[0], grid[0] + 7))
        rates = [T.lr_of(j) for j in grid]
        assert all(math.isclose(b / a, 10 ** 0.5, rel_tol=1e-3) for a, b in zip(rates, rates[1:]))
        low, high = T.lr_range(method)
        centre = math.sqrt(low * high)
        assert rates[2] < centre < rates[4], (method, rates, centre)
    assert [T.lr_of(j) for j in T.grid_exponents("sgd", 7)] == [3.162e-4, 1e-3, 3.162e-3, 0.01, 0.03162, 0.1, 0.3162]


def test_edge_extension_goes_one_point_at_a_time_up_to_the_allowance():
    grid = list(range(-7, 0))
    assert T.next_extension(grid, -4, grid, 2) is None
    assert T.next_extension(grid, -1, grid, 2) == 0
    assert T.next_extension(grid + [0], 0, grid, 2) == 1
    assert T.next_extension(grid + [0, 1], 1, grid, 2) is None
    assert T.next_extension(grid, -7, grid, 2) == -8
    assert T.next_extension(grid + [-8, -9], -9, grid, 2) is None
    assert T.next_extension(grid, -1, grid, 0) is None


def test_an_unbounded_extension_walks_to_the_declared_limit():
    top = T.exponent_limits()[1]
    grid = list(range(top - 9, top - 2))
    tried, best = list(grid), grid[-1]
    while (nxt := T.next_extension(tried, best, grid, math.inf)) is not None:
        tried.append(nxt)
        best = nxt
    assert tried[len(grid):] == [top - 2, top - 1, top]
    assert T.edge_status(tried, top, grid, math.inf) == "limit"
    assert T.edge_status(tried, top - 1, grid, math.inf) == "interior"


def test_only_the_batch_size_rows_extend_to_the_limit():
    extending = {r.name for r in D.ROWS if r.extend_to_limit}
    assert extending == {r.name for r in D.ROWS if r.study == "batch_size"}
    assert "batchfull-1ep" in extending and "standard" not in extending


def test_edge_status_interior_limit_or_spent():
    grid = list(range(-7, 0))
    assert T.edge_status(grid, -3, grid, 2) == "interior"
    assert T.edge_status(grid + [0], -1, grid, 2) == "interior"
    assert T.edge_status(grid, -1, grid, 2) == "open"
    assert T.edge_status(grid + [0, 1], 1, grid, 2) == "spent"
    top = T.exponent_limits()[1]  # 10.0
    near = list(range(top - 6, top + 1))
    assert T.edge_status(near, top, near, 2) == "limit"
    assert T.next_extension(near, top, near, 2) is None
    assert T.lr_of(top) == D.LR_LIMITS[1]


def test_quasi_random_trials_are_seeded_within_bounds_and_nested():
    space = {"momentum": D.MOMENTUM, "betas": D.BETAS, "batch_size": (32, 512, "pow2"), "k": (5, 10, "int"),
             "damping": (1e-3, 1e-1, "log")}
    a = T.qmc_points(space, 8, "standard:x")
    assert a == T.qmc_points(space, 8, "standard:x")
    assert a != T.qmc_points(space, 8, "standard:y")
    assert T.qmc_points(space, 6, "standard:x") == a[:6]
    for p in a:
        assert 0.8 <= p["momentum"] <= 0.99
        assert 0.8 <= p["betas"][0] <= 0.95 and 0.99 <= p["betas"][1] <= 0.9999
        assert p["batch_size"] in (32, 64, 128, 256, 512)
        assert isinstance(p["k"], int) and 5 <= p["k"] <= 10
        assert 1e-3 <= p["damping"] <= 1e-1
    assert len({p["damping"] for p in a}) == 8
    assert T.qmc_points({}, 4, "x") == [] and T.qmc_points(space, 0, "x") == []


@pytest.mark.parametrize("method, low, high", [("sgd", 1e-6, 1e-2), ("adam", 1e-6, 1e-2), ("nesterov", 1e-6, 1e-2),
                                               ("adamw", 1e-3, 1.0), ("adamw_schedulefree", 1e-3, 1.0)])
def test_l2_trials_span_a_decade_of_rates_and_the_kind_s_weight_decays(method, low, high):
    space = T.l2_space(method, 0.01)
    assert space["weight_decay"][:2] == (low, high)
    points = T.qmc_points(space, 8, f"l2:{method}")
    assert len(points) == 8
    for p in points:
        assert 0.01 / 10 ** 0.5 <= p["lr"] <= 0.01 * 10 ** 0.5
        assert low <= p["weight_decay"] <= high
    decays = np.log10([p["weight_decay"] for p in points])
    assert decays.max() - decays.min() > 0.5 * (math.log10(high) - math.log10(low))


def test_sparse_rates_are_the_choice_and_half_a_decade_either_side():
    assert T.rate_exponents(-4, 3) == [-5, -4, -3]
    assert T.rate_exponents(-4, 1) == [-4]


def test_every_key_hyperparameter_is_the_method_s_own_and_makes_a_valid_run():
    from helpers.study.definition import PROFILES
    for method, space in D.KEY_HPARAMS.items():
        spec = get_spec(method)
        for key in space:
            assert key in spec.defaults or key in D.RUN_SETTINGS, (method, key)
        for point in T.qmc_points(space, 4, method):
            hparams, settings = T.split_setting(point)
            study_config(method, "standard", "val", PROFILES["full"], {"lr": 0.01, **hparams}, **settings)
    assert set(D.DECOUPLED) <= set(names())


def test_score_puts_diverged_trials_last():
    assert T.score(90.0, 0.3) > T.score(90.0, 0.4) > T.score(10.0, 2.0) > T.score(float("nan"), float("nan"))


def test_a_side_search_budgets_its_trials_on_the_images_they_train_on():
    from helpers.study.protocol import base_config
    trials = T.tuning_configs(base_config("sgd", epochs=10), 3)
    assert [t.grad_budget for t in trials] == [500_000] * 3
    assert all(t.eval_split == "val" and t.tag == "tune" for t in trials)
    assert [t.hparams["lr"] for t in trials] == [T.lr_of(j) for j in T.grid_exponents("sgd", 3)]


def test_the_trials_stay_the_same_across_installs():
    """Run ids hash the trials' values: a library change that moved them would silently start the study
    over, so the first points are pinned here (regenerate only with a new PROTOCOL_VERSION)."""
    assert T.qmc_points({"momentum": D.MOMENTUM, "betas": D.BETAS}, 2, "standard:adam:projection") == [
        {"momentum": 0.985148, "betas": (0.8806, 0.998617)}, {"momentum": 0.93358, "betas": (0.9306, 0.999449)}]
    assert T.qmc_points(T.l2_space("adamw", 0.001), 2, "l2:adamw:projection") == [
        {"lr": 0.002368, "weight_decay": 0.006017}, {"lr": 0.0007487, "weight_decay": 0.06017}]
