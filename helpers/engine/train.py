"""The training loop: configurations in, tidy per-evaluation records out (one loop for every K).

A record row holds: epoch (fractional when ``evals_per_epoch`` > 1 or when the budget stops a
run mid-epoch), step, train_loss (mean of the batch losses since the last row; NaN if a step cut by the
budget was the only thing since), the evaluated
split's loss (mean cross-entropy per sample), the starter's "Average loss" (sum of batch-64
mean losses / N, about loss / 64), accuracy in percent, cumulative training wall seconds
(evaluation excluded; with K models each model's share, elapsed / K), cumulative
sample-gradient evaluations (``grad_evals``; full-gradient passes counted as N),
Hessian-vector products in sample units (``hvp_evals``), their sum ``oracle_evals``, the
learning rate, the fc1+fc2 density of the evaluated weights and the diverged flag.

:func:`run` trains K >= 1 configurations that share steps (same optimizer rule, scenario,
schedule, batch sizes, budget, data; they differ in seed and hyperparameters): methods with a
stacked rule (``OptimizerSpec.rule``) as K rows of one tensor
(:class:`~helpers.engine.steppers.StackedStepper`), the others (they call the model
themselves: L-BFGS, Newton-CG, K-FAC, ...) as one module (K = 1,
:class:`~helpers.engine.steppers.ModuleStepper`). Batch selection, the schedule, the budget,
pruning, evaluation and records are this one loop's. Fixed batches (``needs`` "fixed_batches",
SAGA): each model's partition is drawn once from its generator; every epoch shuffles the full
batches and takes a shorter last batch last. Each model k is seeded exactly as a run
alone: ``seed_everything(seed_k)``, then ``LeNet5()``, then its batch order from that generator.

Oracle budget (``grad_budget``): a step (or an epoch start's full pass) whose oracle calls
would pass the budget is not taken; the run stops there and records what it spent, so no
record exceeds the budget. Schedule progress is max(oracle calls spent / budget, step /
planned steps) with a budget (the decay ends exactly when the budget is spent, or when the
epochs end if they come first), else step / planned steps.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .config import RunConfig
from ..problem.data import FashionMNIST, Split, batch_indices
from ..problem.model import LeNet5
from ..optimizers import get_spec
from ..runtime import seed_everything
from .schedules import lr_factor
from .stacked_model import eval_chunk, per_model_loss, starter_loss
from .steppers import BudgetSpent, ModuleStepper, StackedStepper, full_gradient_closure, make_closure  # noqa: F401

RECORD_COLUMNS = ["epoch", "step", "train_loss", "test_loss", "test_starter_loss", "test_acc",
                  "val_loss", "val_acc", "wall_s", "grad_evals", "hvp_evals", "oracle_evals",
                  "lr", "density", "diverged"]


@torch.no_grad()
def evaluate(model: torch.nn.Module, split: Split, per_sample: bool = False) -> dict:
    """Mean cross-entropy per sample, the starter's batch-64 "Average loss", accuracy (%);
    with ``per_sample`` also ``{"pred": uint8[n], "loss": float32[n]}`` under ``"predictions"``."""
    was_training = model.training
    model.eval()
    losses, preds = [], []
    chunk = eval_chunk(1, split.x.device)
    for start in range(0, len(split), chunk):
        logits = model(split.x[start:start + chunk])
        losses.append(F.cross_entropy(logits, split.y[start:start + chunk], reduction="none"))
        preds.append(logits.argmax(1))
    model.train(was_training)
    per, pred = torch.cat(losses).double(), torch.cat(preds)
    out = {"loss": float(per.mean()), "starter_loss": float(starter_loss(per)),
           "acc": 100.0 * int((pred == split.y).sum()) / len(split)}
    if per_sample:
        out["predictions"] = {"pred": pred.to(torch.uint8).cpu().numpy(), "loss": per.float().cpu().numpy()}
    return out


@dataclass
class RunResult:
    """``predictions``: the final evaluation's per-sample test predictions and losses
    (``{"pred": uint8[n_test], "loss": float32[n_test]}``) for eval_split="test" runs that did
    not diverge, else None."""
    config: RunConfig
    records: list[dict]
    model: torch.nn.Module
    diverged: bool
    predictions: dict | None = None


def train(config: RunConfig, data: FashionMNIST, progress: bool = True,
          model: torch.nn.Module | None = None) -> RunResult:
    """Train LeNet-5 as ``config`` says on ``data``; return the records and the model (:func:`run`, K = 1).

    Same seed, same machine -> same records (wall time aside). A non-finite loss stops the run
    and marks its last record ``diverged`` instead of raising. ``model``: start from these
    weights (they are trained in place).
    """
    return run([config], data, progress, models=None if model is None else [model])[0]


def run(configs, data: FashionMNIST, progress: bool = True, models=None, observer=None,
        loss_fn=per_model_loss, graphs=None) -> list[RunResult]:
    """Train the configurations together (see the module docstring); one result per configuration.

    ``observer(step, stepper)`` (optional) is called after every step (the tests compare runs
    step by step through it). The caller checks that the configurations can share a run
    (:func:`helpers.engine.batched.why_not_batch`). ``graphs``: the backend that replays
    captured steps (:class:`~helpers.engine.steppers.StackedStepper`; default: CUDA graphs where
    enabled). An epoch's batch indices reach the device in one copy, so the host does not wait
    for the device at every step.
    """
    configs = list(configs)
    first = configs[0]
    spec = get_spec(first.optimizer)
    if spec.rule is None and len(configs) > 1:
        raise ValueError(f"optimizer {first.optimizer!r} has no stacked rule: it trains one model at a time")
    eval_split = data.test if first.eval_split == "test" else data.val
    if eval_split is None:
        raise ValueError("eval_split='val' needs data loaded with val_size > 0")
    device = data.device
    n = len(data.train)
    sizes = first.epoch_batch_sizes(n)
    total_steps = sum(math.ceil(n / b) for b in sizes)
    generators, nets = [], []
    for i, c in enumerate(configs):
        generators.append(seed_everything(c.seed))
        nets.append(models[i] if models is not None else LeNet5())
    if spec.rule is not None:
        stepper = StackedStepper(configs, nets, data, spec, total_steps, loss_fn, graphs)
    else:
        stepper = ModuleStepper(first, nets[0], data, spec, total_steps)
    stepper.begin()
    needs = spec.needs | (spec.rule.needs if spec.rule is not None else frozenset())
    fixed = [batch_indices(n, sizes[0], g) for g in generators] if "fixed_batches" in needs else None
    budget = first.grad_budget
    k = len(configs)
    per_sample = first.eval_split == "test"
    records: list[list[dict]] = [[] for _ in configs]
    alive, predictions = [True] * k, [None] * k
    step, wall, stop, recorded = 0, 0.0, False, 0
    loss_sum = torch.zeros(k, device=device, dtype=torch.float64)
    loss_count = 0
    bar = tqdm(total=total_steps, desc=configs[0].run_id if k == 1 else f"{k} models", file=sys.stderr,
               disable=not progress, leave=False, mininterval=1.0)

    def record(epoch_value: float) -> None:
        nonlocal wall, t0, loss_count, recorded
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall += time.perf_counter() - t0
        train_loss = (loss_sum / loss_count).tolist() if loss_count else [math.nan] * k
        finite = stepper.finite()
        live = [i for i in range(k) if alive[i]]
        healthy = [i for i in live if (math.isfinite(train_loss[i]) or not loss_count) and finite[i]]
        metrics = stepper.evaluate(healthy, eval_split, per_sample)
        grad, hvp = stepper.counts()
        for i in live:
            diverged = i not in metrics
            row = {"epoch": round(epoch_value, 6), "step": step, "train_loss": train_loss[i],
                   "test_loss": math.nan, "test_starter_loss": math.nan, "test_acc": math.nan,
                   "val_loss": math.nan, "val_acc": math.nan, "wall_s": wall / k, "grad_evals": grad,
                   "hvp_evals": hvp, "oracle_evals": grad + hvp, "lr": stepper.lr(i),
                   "density": stepper.density(i) if diverged else metrics[i]["density"],
                   "diverged": diverged}
            if diverged:
                alive[i] = False
                predictions[i] = None
                stepper.kill(i)
            elif first.eval_split == "test":
                got = metrics[i]
                row.update(test_loss=got["loss"], test_starter_loss=got["starter_loss"], test_acc=got["acc"])
                predictions[i] = got.get("predictions")
            else:
                row.update(val_loss=metrics[i]["loss"], val_acc=metrics[i]["acc"])
            records[i].append(row)
        loss_sum.zero_()
        loss_count = 0
        recorded = grad + hvp
        t0 = time.perf_counter()

    for epoch in range(first.epochs):
        t0 = time.perf_counter()
        if budget is not None and sum(stepper.counts()) + stepper.epoch_cost(n) > budget:
            break
        try:
            stepper.on_epoch_start()
        except BudgetSpent:
            break
        if fixed is not None:
            orders = [fixed_order(f, g) for f, g in zip(fixed, generators)]
        else:
            orders = [list(enumerate(batch_indices(n, sizes[epoch], g))) for g in generators]
        n_batches = len(orders[0])
        eval_points = _eval_points(n_batches, first.evals_per_epoch)
        indices = epoch_indices(orders, device)
        for position in range(n_batches):
            ids = [o[position][0] for o in orders]
            index = indices[position]
            spent = sum(stepper.counts())
            if budget is not None and spent + stepper.step_cost(index.shape[1], n) > budget:
                stop = True
            else:
                t = step / total_steps if budget is None else max(step / total_steps, spent / budget)
                factor = lr_factor(first.schedule, t, **first.schedule_params)
                try:
                    losses = stepper.step(data.train.x[index], data.train.y[index], factor, ids, n_batches)
                except BudgetSpent:
                    stop = True
                else:
                    stepper.after_step(step)
                    step += 1
                    loss_sum += losses.detach().double()
                    loss_count += 1
                    bar.update(1)
                    if observer is not None:
                        observer(step, stepper)
            done = position + (0 if stop else 1)
            if stop and (loss_count or sum(stepper.counts()) > recorded) or \
                    not stop and (done in eval_points or done == n_batches):
                record(epoch + done / n_batches)
            if stop or not any(alive):
                break
        if stop or not any(alive):
            break
    bar.close()
    return [RunResult(c, records[i], stepper.model(i, models[i] if models is not None else None),
                      not alive[i], predictions[i] if alive[i] else None)
            for i, c in enumerate(configs)]


def fixed_order(batches: list[torch.Tensor], generator: torch.Generator) -> list[tuple[int, torch.Tensor]]:
    """One epoch's order of a fixed partition: the full batches shuffled, a shorter last batch
    last (so K models' batches line up by size)."""
    short = len(batches) > 1 and len(batches[-1]) < len(batches[0])
    full = len(batches) - short
    order = torch.randperm(full, generator=generator).tolist() + ([full] if short else [])
    return [(j, batches[j]) for j in order]


def epoch_indices(orders: list[list[tuple[int, torch.Tensor]]], device) -> list[torch.Tensor]:
    """Each position's ``[K, B]`` batch indices of one epoch (``orders``: per model, per
    position, (batch id, indices)), moved to ``device`` in one copy."""
    blocks = [torch.stack([o[position][1] for o in orders]) for position in range(len(orders[0]))]
    flat = torch.cat([b.reshape(-1) for b in blocks]).to(device)
    return [part.view(b.shape) for part, b in zip(flat.split([b.numel() for b in blocks]), blocks)]


def _eval_points(steps_per_epoch: int, per_epoch: int) -> set[int]:
    return {round(steps_per_epoch * k / per_epoch) for k in range(1, per_epoch + 1)}
