"""Model k of a K = 4 run and the same configuration alone (K = 1) agree step by step.

For every method with a stacked rule x {standard, l2, sparse60 with each strategy}: four
models with different seeds and hyperparameters train together in float64; each is also
trained alone (model k = the scenario's position mod 4, so each method checks every row
position across the five scenarios and the lone runs stay cheap). After every one of the first STEPS steps (same batches: each model draws its
own order from its own seed) the parameters, the evaluated weights and every state tensor and
counter of model k agree with the lone run within rtol 1e-6, atol 1e-9. The two runs differ only in the grouped convolutions' summation order.
"""
import math

import pytest
import torch

from helpers.engine.config import RunConfig
from helpers.engine.stacked_model import evaluate_many, stack_models, to_model
from helpers.engine.train import evaluate, run
from helpers.optimizers import get_spec, registry
from helpers.problem.model import LeNet5

STEPS = 10
TOL = dict(rtol=1e-6, atol=1e-9)
STACKED = sorted(n for n, s in registry().items() if s.rule is not None)
SCENARIOS = [("standard", "projection"), ("l2", "projection"), ("sparse60", "projection"),
             ("sparse60", "gradual"), ("sparse60", "finetune")]


class _Enough(Exception):
    pass


pytestmark = pytest.mark.usefixtures("one_thread")


def _variants(name: str, scenario: str) -> list[dict]:
    """Four hyperparameter settings: the defaults, then the rate, momentum/betas and decay moved."""
    defaults = get_spec(name).defaults
    out = []
    for i, scale in enumerate((1.0, 0.5, 1.7, 0.3)):
        h = {"lr": defaults["lr"] * scale}
        if "momentum" in defaults and defaults.get("momentum"):
            h["momentum"] = (0.9, 0.8, 0.95, 0.5)[i]
        if "betas" in defaults:
            h["betas"] = ((0.9, 0.999), (0.8, 0.99), (0.95, 0.9), (0.5, 0.999))[i]
        if scenario == "l2":
            h["weight_decay"] = (5e-4, 1e-3, 1e-2, 2e-4)[i]
        out.append(h)
    return out


def _trace(configs, data):
    """Per step: (parameters, evaluated weights, state tensors, counters) of every model, and the records."""
    seen = []

    def observer(step, stepper):
        rule = stepper.rule
        seen.append((stepper.p.clone(), stepper.evaluated_weights().clone(),
                     {k: v.clone() for k, v in rule.state.items()},
                     {k: v.clone() for k, v in rule.counters.items()}))
        if step >= STEPS:
            raise _Enough

    try:
        run(configs, data, progress=False, observer=observer)
    except _Enough:
        pass
    return seen


@pytest.mark.parametrize("scenario, strategy", SCENARIOS)
@pytest.mark.parametrize("name", STACKED)
def test_model_k_of_four_equals_the_model_alone(name, scenario, strategy, data64):
    spec = get_spec(name)
    batch = 8 if spec.batch_size not in (1, "full") else spec.batch_size
    configs = [RunConfig(optimizer=name, hparams=h, seed=k, scenario=scenario, sparsity_strategy=strategy,
                         epochs=STEPS if spec.batch_size == "full" else 2, batch_size=batch if spec.batch_size != 1 else None,
                         eval_split="val", val_size=100, train_fraction=0.01)
               for k, h in enumerate(_variants(name, scenario))]
    together = _trace(configs, data64)
    assert len(together) == STEPS
    for k in [SCENARIOS.index((scenario, strategy)) % 4]:
        alone = _trace([configs[k]], data64)
        assert len(alone) == STEPS
        for step, ((p4, e4, s4, c4), (p1, e1, s1, c1)) in enumerate(zip(together, alone), start=1):
            where = f"{name} {scenario}/{strategy} model {k} step {step}"
            torch.testing.assert_close(p4[k], p1[0], **TOL, msg=lambda m: f"{where} parameters: {m}")
            torch.testing.assert_close(e4[k], e1[0], **TOL, msg=lambda m: f"{where} evaluated: {m}")
            assert set(s4) == set(s1) and set(c4) == set(c1)
            for key in s4:
                torch.testing.assert_close(s4[key][k], s1[key][0], **TOL, msg=lambda m: f"{where} {key}: {m}")
            for key in c4:
                torch.testing.assert_close(c4[key][k], c1[key][0], **TOL, msg=lambda m: f"{where} {key}: {m}")


def test_batched_evaluation_equals_each_models_evaluation(data64):
    torch.manual_seed(0)
    models = [LeNet5().double() for _ in range(3)]
    flat = stack_models(models)
    flat[1, :40_800] *= (torch.rand(40_800, dtype=torch.float64) > 0.5)
    for split in (data64.val, data64.test):
        batched = evaluate_many(flat, split, per_sample=True)
        for i in range(3):
            alone = evaluate(to_model(flat[i]), split, per_sample=True)
            for key in ("loss", "starter_loss", "acc"):
                assert batched[i][key] == pytest.approx(alone[key], rel=1e-6, abs=1e-9), key
            assert (batched[i]["predictions"]["pred"] == alone["predictions"]["pred"]).all()
            assert batched[i]["predictions"]["loss"] == pytest.approx(alone["predictions"]["loss"], rel=1e-6)
    assert not math.isclose(evaluate_many(flat, data64.val)[0]["loss"], evaluate_many(flat, data64.val)[1]["loss"])


@pytest.mark.parametrize("name, scenario, strategy", [
    ("adam", "sparse60", "projection"), ("sgd_schedulefree", "sparse60", "projection"),
    ("heavy_ball", "sparse60", "gradual"), ("nadam", "thin30", "projection")])
def test_state_is_zeroed_where_the_projection_prunes(name, scenario, strategy, data64):
    """After every step each per-entry state tensor is zero wherever the row's mask is off (and
    not zero everywhere); thin scenarios keep whole fc1 neurons."""
    from helpers.constraints.scenarios import get_scenario
    from helpers.engine.stacked_model import N_CONSTRAINED
    k_max = get_scenario(scenario).budget
    checked = []

    def observer(step, stepper):
        masks = stepper.sparsity.masks
        if masks is None:
            return
        off = ~masks
        assert int(masks.sum(1).max()) <= stepper.sparsity.k and stepper.sparsity.k >= k_max
        assert int(torch.count_nonzero(stepper.p[:, :N_CONSTRAINED][off])) == 0
        for key, tensor in stepper.rule.state.items():
            block = tensor[:, :N_CONSTRAINED]
            assert int(torch.count_nonzero(block[off])) == 0, (key, step)
            assert int(torch.count_nonzero(block[masks])) > 0, (key, step)
        if get_scenario(scenario).structured:
            fc1 = masks[:, :30_720].view(-1, 120, 256)
            assert bool((fc1.all(2) | ~fc1.any(2)).all())
        checked.append(step)
        if step >= 6:
            raise _Enough

    configs = [RunConfig(optimizer=name, hparams={"lr": get_spec(name).defaults["lr"] * s}, seed=i,
                         scenario=scenario, sparsity_strategy=strategy, epochs=2, batch_size=8,
                         eval_split="val", val_size=100, train_fraction=0.01) for i, s in enumerate((1, 0.5))]
    with pytest.raises(_Enough):
        run(configs, data64, progress=False, observer=observer)
    assert checked
