"""On a CUDA device: the graphed step and the unfolded conv blocks against the eager grouped
path. Skipped without one; ``tools/device_speed.sh`` runs them on a lent GPU before it measures.

- CUDA graphs replay the kernels the eager step launches, so after 5 epochs of 18 steps (a
  cosine schedule, so the rate changes at every step; a short last batch, so a second capture;
  the sparse scenario's projection and fixed-mask phases) every model's
  parameters and state agree with the eager run to float32 rounding.
- The unfolded blocks compute the grouped path's features and gradients (float32; cuBLAS and
  cuDNN sum in different orders). ``tests/test_triton_convs.py`` checks the Triton block here.
"""

import pytest
import torch

from helpers.engine import graphed_step, stacked_model, unfolded_convs
from helpers.engine.config import RunConfig
from helpers.engine.train import run
from helpers.problem.model import LeNet5
from feature_paths import assert_features_match_grouped

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
TOL = dict(rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def cuda_data():
    from helpers.problem.data import load
    return load(device="cuda", train_fraction=0.02, val_size=500)


def _final_state(name, scenario, strategy, data, graphs: bool, monkeypatch, conv="grouped"):
    monkeypatch.setenv(graphed_step.SWITCH, "1" if graphs else "0")
    monkeypatch.setenv(unfolded_convs.SWITCH, conv)
    configs = [RunConfig(optimizer=name, hparams={"lr": 1e-2 * (i + 1) if name != "sgd_schedulefree" else 0.5},
                         seed=i, epochs=5, batch_size=70, schedule="cosine", scenario=scenario,
                         sparsity_strategy=strategy, eval_split="val", val_size=500, train_fraction=0.02)
               for i in range(4)]
    kept = {}

    def observer(step, stepper):
        kept["graphed"] = stepper.graphed is not None
        kept["captures"] = len(stepper.graphed.graphs) if stepper.graphed is not None else 0
        kept["tensors"] = [stepper.p.clone(), *(t.clone() for t in stepper.rule.state.values())]

    results = run(configs, data, progress=False, observer=observer)
    return kept, [r.records[-1]["val_loss"] for r in results]


@pytest.mark.parametrize("name, scenario, strategy, conv", [
    ("sgd", "standard", "projection", "grouped"), ("nesterov", "l2", "projection", "grouped"),
    ("adam", "sparse60", "projection", "grouped"), ("heavy_ball", "sparse60", "gradual", "grouped"),
    ("sgd_schedulefree", "standard", "projection", "grouped"), ("sgd", "standard", "projection", "unfold"),
    ("adam", "l2", "projection", "triton_conv1"), ("nadam", "sparse60", "gradual", "triton")])
def test_cuda_graph_replay_follows_the_eager_step(name, scenario, strategy, conv, cuda_data, monkeypatch):
    eager, eager_losses = _final_state(name, scenario, strategy, cuda_data, False, monkeypatch, conv)
    graphed, graphed_losses = _final_state(name, scenario, strategy, cuda_data, True, monkeypatch, conv)
    assert not eager["graphed"] and graphed["graphed"] and graphed["captures"] >= 2
    for a, b in zip(eager["tensors"], graphed["tensors"]):
        torch.testing.assert_close(b, a, **TOL)
    assert graphed_losses == pytest.approx(eager_losses, rel=1e-4)


@pytest.mark.parametrize("shared", [False, True])
def test_unfolded_convs_equal_the_grouped_path_on_cuda(shared, monkeypatch, full_float32):
    monkeypatch.setenv(unfolded_convs.SWITCH, "unfold")
    torch.manual_seed(0)
    flat = stacked_model.stack_models([LeNet5() for _ in range(8)]).cuda()
    x = torch.rand(*((64,) if shared else (8, 64)), 1, 28, 28, device="cuda")
    assert_features_match_grouped(flat, x, shared, stacked_model.features, TOL, dict(rtol=1e-3, atol=1e-4))


def test_a_record_says_how_the_step_ran_on_cuda(monkeypatch):
    from helpers.runtime import environment
    monkeypatch.setenv(unfolded_convs.SWITCH, "triton")
    monkeypatch.setenv(graphed_step.SWITCH, "1")
    got = environment("cuda")
    assert got["gpu_conv"] == "triton" and got["cuda_graphs"] is True and "cudnn_tf32" in got
