"""The engine's graphed step (captured once, replayed) gives the eager step's numbers.

CUDA graphs freeze what a step reads from Python at the capture; a rule or engine value that
changes between steps outside tensors written in place would be replayed stale. On a CPU,
:mod:`tests.cpu_graph` records a step's aten operations and replays them with the same
semantics, so every capturable rule runs through the engine's :class:`GraphedStep` (warm-up,
one capture per batch shape and mask phase, inputs copied into the static ones) and must match
the eager run bit for bit after every step. ``tools/device_speed.sh`` repeats the comparison
with real CUDA graphs on a GPU (``tests/test_cuda_graphs.py``).
"""
import pytest
import torch

from helpers.engine.config import RunConfig
from helpers.engine.graphed_step import GraphedStep, wanted
from helpers.engine.train import epoch_indices, run
from helpers.optimizers import get_spec, registry
from tests.cpu_graph import CaptureError, CpuGraph, CpuGraphs

pytestmark = pytest.mark.usefixtures("one_thread")

CAPTURABLE = sorted(n for n, s in registry().items()
                    if s.rule is not None and s.rule.capturable and not s.rule.needs)
SCENARIOS = [("standard", "projection"), ("l2", "projection"), ("sparse60", "projection"),
             ("sparse60", "gradual"), ("sparse60", "finetune")]
CASES = sorted({(n, *SCENARIOS[i % len(SCENARIOS)]) for i, n in enumerate(CAPTURABLE)}
               | {(n, *s) for n in ("heavy_ball", "adam") for s in SCENARIOS})


def _configs(name, scenario, strategy, k=2):
    spec = get_spec(name)
    hparams = [{"lr": spec.defaults["lr"] * scale} for scale in (1.0, 0.6)[:k]]
    if scenario == "l2":
        hparams = [{**h, "weight_decay": wd} for h, wd in zip(hparams, (5e-4, 3e-3))]
    batch = {"batch_size": 12} if spec.batch_size in (None, 64) else {}
    epochs = {"full": 14, None: 3, 64: 3}.get(spec.batch_size, 8)
    return [RunConfig(optimizer=name, hparams=h, seed=i, scenario=scenario, sparsity_strategy=strategy,
                      epochs=epochs, schedule="cosine", eval_split="val", val_size=100, train_fraction=0.01, **batch)
            for i, h in enumerate(hparams)]


def _trace(configs, data, graphs=None):
    seen = []

    def observer(step, stepper):
        seen.append([stepper.p.clone(), stepper.evaluated_weights().clone(),
                     *(t.clone() for t in stepper.rule.state.values()),
                     *(t.clone() for t in stepper.rule.counters.values())])

    results = run(configs, data, progress=False, observer=observer, graphs=graphs)
    return seen, [[{k: v for k, v in row.items() if k != "wall_s"} for row in r.records] for r in results]


def test_every_rule_the_engine_trains_is_checked_or_declared_not_capturable():
    assert {"sgd", "heavy_ball", "nesterov", "adam", "adamw", "nadam", "radam", "sgd_schedulefree",
            "adamw_schedulefree"} <= set(CAPTURABLE)
    assert not {"lookahead_adam", "sgd_polyak", "svrg", "sarah", "saga"} & set(CAPTURABLE)


@pytest.mark.parametrize("name, scenario, strategy", CASES)
def test_replayed_steps_equal_eager_steps_bit_for_bit(name, scenario, strategy, data64):
    """Two models (their own seeds, rates, decays), a cosine schedule, batches of 12 with a
    short last batch (a second capture; full batches and growing ones as the method says): after every step, parameters, evaluated weights, every
    state tensor and counter, and then the records are those of the eager run."""
    configs = _configs(name, scenario, strategy)
    eager, eager_records = _trace(configs, data64)
    graphs = CpuGraphs(warmup_calls=1)
    replayed, replayed_records = _trace(configs, data64, graphs)
    assert graphs.captures >= (2 if get_spec(name).batch_size in (None, 64) else 1)
    assert graphs.replays >= len(eager) // 3
    assert len(replayed) == len(eager) >= 10
    for step, (a, b) in enumerate(zip(eager, replayed), start=1):
        for i, (x, y) in enumerate(zip(a, b)):
            assert torch.equal(x, y), f"{name} {scenario}/{strategy} step {step} tensor {i}"
    assert eager_records == replayed_records


@pytest.mark.parametrize("name", ["lookahead_adam", "sgd_polyak"])
def test_rules_declared_not_capturable_would_replay_wrong(name, data64, monkeypatch):
    """Lookahead reads ``bool(any sync)`` (a host synchronisation); the averages rebind a state
    tensor and count epochs in Python: forced through a capture, either is refused or the
    replay departs from the eager run."""
    rule = get_spec(name).rule
    monkeypatch.setattr(rule, "capturable", True)
    configs = _configs(name, "standard", "projection")
    eager, _ = _trace(configs, data64)
    try:
        replayed, _ = _trace(configs, data64, CpuGraphs(warmup_calls=1))
    except CaptureError:
        return
    assert any(not torch.equal(x, y) for a, b in zip(eager, replayed) for x, y in zip(a, b))


def test_a_capture_has_no_effect_and_a_replay_freezes_python_values():
    state, counter = torch.zeros(3), torch.zeros(1)
    rate = [1.0]

    def step():
        counter.add_(1)
        state.add_(counter * rate[0])
        return state.sum().reshape(1)

    graph = CpuGraph(step)
    assert state.tolist() == [0, 0, 0] and counter.item() == 0
    rate[0] = 10.0
    assert graph.replay().item() == 3.0
    assert graph.replay().item() == 9.0 and graph.out.item() == 9.0
    rebound = {"t": torch.zeros(1)}

    def rebinding():
        rebound["t"] = rebound["t"] + 1
        return rebound["t"]

    graph = CpuGraph(rebinding)
    graph.replay()
    graph.replay()
    assert graph.out.item() == 1.0


@pytest.mark.parametrize("sync", [lambda t: t.sum().item(), lambda t: bool(t.any()), lambda t: t.nonzero(),
                                  lambda t: torch.tensor([1.0, 2.0])])
def test_a_host_synchronisation_in_a_capture_is_refused(sync):
    with pytest.raises(CaptureError):
        CpuGraph(lambda: sync(torch.ones(3)))


def test_graphed_step_warms_up_then_captures_once_per_key_and_copies_the_inputs():
    backend = CpuGraphs()
    total = torch.zeros(1)

    def fn(x):
        total.add_(x.sum())
        return total.clone()

    step = GraphedStep(fn, backend, warmup=2)
    outs = [step("a", (torch.full((2,), float(i)),)).item() for i in range(1, 6)]
    assert outs == [2.0, 6.0, 12.0, 20.0, 30.0]
    assert backend.captures == 1 and backend.replays == 3
    step("b", (torch.ones(3),))
    assert backend.captures == 1 and total.item() == 33.0


def test_epoch_indices_are_each_position_s_stacked_batches():
    orders = [[(0, torch.tensor([3, 1])), (1, torch.tensor([0]))], [(1, torch.tensor([2, 5])), (0, torch.tensor([4]))]]
    got = epoch_indices(orders, "cpu")
    assert [t.tolist() for t in got] == [[[3, 1], [2, 5]], [[0], [4]]]


def test_graphs_are_wanted_only_on_cuda_and_only_when_switched_on(monkeypatch):
    monkeypatch.setenv("FMNIST_CUDA_GRAPHS", "1")
    assert not wanted(torch.device("cpu"))
    assert wanted(torch.device("cuda"))
    monkeypatch.setenv("FMNIST_CUDA_GRAPHS", "0")
    assert not wanted(torch.device("cuda"))
