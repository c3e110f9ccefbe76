"""The training loop: one configuration in, tidy per-evaluation records out.

A record row holds: epoch (fractional when ``evals_per_epoch`` > 1), step, train_loss (mean
of the batch losses since the last row), the evaluated split's loss (mean cross-entropy
per sample), the starter's "Average loss" (sum of batch-64 mean losses / N, about
loss / 64), accuracy in percent, cumulative training wall seconds (evaluation excluded),
cumulative sample-gradient evaluations (``grad_evals``; full-gradient passes counted as N),
Hessian-vector products in sample units (``hvp_evals``), their sum ``oracle_evals``, the
learning rate, the fc1+fc2 density and the diverged flag.
"""
from __future__ import annotations

import math
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .config import RunConfig
from ..problem.data import FashionMNIST, Split, batch_indices
from ..problem.model import LeNet5, density
from ..optimizers import get_spec
from ..runtime import seed_everything
from ..constraints.scenarios import get_scenario
from .schedules import lr_factor

STARTER_BATCH = 64
EVAL_CHUNK = 2_000
RECORD_COLUMNS = ["epoch", "step", "train_loss", "test_loss", "test_starter_loss", "test_acc",
                  "val_loss", "val_acc", "wall_s", "grad_evals", "hvp_evals", "oracle_evals",
                  "lr", "density", "diverged"]


@torch.no_grad()
def evaluate(model: torch.nn.Module, split: Split) -> dict:
    """Mean cross-entropy per sample, the starter's batch-64 "Average loss", accuracy (%)."""
    was_training = model.training
    model.eval()
    losses, correct = [], 0
    for start in range(0, len(split), EVAL_CHUNK):
        logits = model(split.x[start:start + EVAL_CHUNK])
        target = split.y[start:start + EVAL_CHUNK]
        losses.append(F.cross_entropy(logits, target, reduction="none"))
        correct += int((logits.argmax(1) == target).sum())
    model.train(was_training)
    per_sample = torch.cat(losses).double()
    starter = sum(chunk.mean() for chunk in per_sample.split(STARTER_BATCH)) / len(split)
    return {"loss": float(per_sample.mean()), "starter_loss": float(starter),
            "acc": 100.0 * correct / len(split)}


@dataclass
class RunResult:
    config: RunConfig
    records: list[dict]
    model: torch.nn.Module
    diverged: bool


def make_closure(model, x, y, counter: dict, weight: float = 1.0):
    """closure(create_graph=False): zero grads, loss on (x, y), backward; counts sample gradients."""
    def closure(create_graph: bool = False):
        model.zero_grad(set_to_none=False)
        loss = F.cross_entropy(model(x), y) * weight
        loss.backward(create_graph=create_graph)
        counter["grad"] += len(y)
        return loss
    closure.batch_size = len(y)
    return closure


def full_gradient_closure(model, split: Split, counter: dict, chunk: int = 10_000):
    """A closure evaluating the mean gradient over the whole split (chunked; counts N)."""
    def closure(create_graph: bool = False):
        model.zero_grad(set_to_none=False)
        total = 0.0
        for start in range(0, len(split), chunk):
            x, y = split.x[start:start + chunk], split.y[start:start + chunk]
            loss = F.cross_entropy(model(x), y, reduction="sum") / len(split)
            loss.backward()
            total += float(loss.detach())
        counter["grad"] += len(split)
        return torch.tensor(total)
    return closure


def train(config: RunConfig, data: FashionMNIST, progress: bool = True,
          model: torch.nn.Module | None = None) -> RunResult:
    """Train LeNet-5 as ``config`` says on ``data``; return the records and the model.

    Same seed, same machine -> same records (wall time aside). A non-finite loss stops
    the run and marks its last record ``diverged`` instead of raising.
    """
    spec = get_spec(config.optimizer)
    scenario = get_scenario(config.scenario)
    generator = seed_everything(config.seed)
    device = data.device
    model = (model or LeNet5()).to(device)
    train_split = data.train
    eval_split = data.test if config.eval_split == "test" else data.val
    if eval_split is None:
        raise ValueError("eval_split='val' needs data loaded with val_size > 0")
    n = len(train_split)
    sizes = config.epoch_batch_sizes(n)
    steps = [math.ceil(n / b) for b in sizes]
    total_steps = sum(steps)
    optimizer = spec.build(model, **config.effective_hparams)
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    hook = scenario.hook(model, optimizer, total_steps, config.sparsity_strategy)
    if hook is not None:
        hook.after_step(-1)
    counter = {"grad": 0}
    fixed = batch_indices(n, sizes[0], generator) if "fixed_batches" in spec.needs else None

    records, wall, step, diverged = [], 0.0, 0, False
    loss_sum, loss_count = torch.zeros((), device=device, dtype=torch.float64), 0
    bar = tqdm(total=total_steps, desc=config.run_id, file=sys.stderr, disable=not progress,
               leave=False, mininterval=1.0)
    model.train()
    for epoch in range(config.epochs):
        t0 = time.perf_counter()
        if hasattr(optimizer, "on_epoch_start"):
            optimizer.on_epoch_start(full_gradient_closure(model, train_split, counter))
        if fixed is not None:
            order = torch.randperm(len(fixed), generator=generator)
            batches = [(int(i), fixed[i]) for i in order]
        else:
            batches = list(enumerate(batch_indices(n, sizes[epoch], generator)))
        eval_points = _eval_points(len(batches), config.evals_per_epoch)
        for position, (batch_id, index) in enumerate(batches):
            index = index.to(device)
            x, y = train_split.x[index], train_split.y[index]
            t = step / total_steps
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * lr_factor(config.schedule, t, **config.schedule_params)
            if hasattr(optimizer, "on_batch"):
                optimizer.on_batch(batch_id, len(batches))
            if config.grad_budget is not None and hasattr(optimizer, "limit_evaluations"):
                optimizer.limit_evaluations(_left(config, counter, optimizer) // len(index))
            loss = optimizer.step(make_closure(model, x, y, counter))
            if hook is not None:
                hook.after_step(step)
            step += 1
            loss_sum += loss.detach().double()
            loss_count += 1
            bar.update(1)
            last_in_epoch = position == len(batches) - 1
            if position + 1 in eval_points or last_in_epoch:
                wall += time.perf_counter() - t0
                train_loss = float(loss_sum) / max(loss_count, 1)
                diverged = not math.isfinite(train_loss) or not _finite(model)
                records.append(_record(model, optimizer, eval_split, config.eval_split,
                                       epoch + (position + 1) / len(batches), step, train_loss,
                                       wall, counter, diverged))
                loss_sum.zero_()
                loss_count = 0
                t0 = time.perf_counter()
                if diverged or _spent(config, counter, optimizer):
                    break
        if diverged or _spent(config, counter, optimizer):
            break
    bar.close()
    return RunResult(config, records, model, diverged)


def _left(config: RunConfig, counter: dict, optimizer) -> int:
    """Oracle calls (sample gradients + HVPs) left of ``grad_budget`` (which must be set)."""
    extra = getattr(optimizer, "oracle_counts", {}) or {}
    return config.grad_budget - counter["grad"] - int(extra.get("grad", 0)) - int(extra.get("hvp", 0))


def _spent(config: RunConfig, counter: dict, optimizer) -> bool:
    """True once the run's oracle calls reach ``grad_budget``. Checked at evaluation points, so a
    run may pass the budget by what it spends until the next one."""
    return config.grad_budget is not None and _left(config, counter, optimizer) <= 0


def _eval_points(steps_per_epoch: int, per_epoch: int) -> set[int]:
    return {round(steps_per_epoch * k / per_epoch) for k in range(1, per_epoch + 1)}


def _finite(model) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _record(model, optimizer, split, split_name, epoch, step, train_loss, wall, counter, diverged) -> dict:
    extra = getattr(optimizer, "oracle_counts", {}) or {}
    hvp = int(extra.get("hvp", 0))
    grad = counter["grad"] + int(extra.get("grad", 0))
    row = {"epoch": round(epoch, 6), "step": step, "train_loss": train_loss,
           "test_loss": math.nan, "test_starter_loss": math.nan, "test_acc": math.nan,
           "val_loss": math.nan, "val_acc": math.nan, "wall_s": wall, "grad_evals": grad,
           "hvp_evals": hvp, "oracle_evals": grad + hvp,
           "lr": optimizer.param_groups[0]["lr"], "density": density(model), "diverged": diverged}
    if not diverged:
        with getattr(optimizer, "evaluation_weights", nullcontext)():
            metrics = evaluate(model, split)
            row["density"] = density(model)  # of the weights evaluated
        if split_name == "test":
            row.update(test_loss=metrics["loss"], test_starter_loss=metrics["starter_loss"],
                       test_acc=metrics["acc"])
        else:
            row.update(val_loss=metrics["loss"], val_acc=metrics["acc"])
    return row
