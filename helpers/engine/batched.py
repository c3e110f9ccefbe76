"""Train K LeNet-5 models at once: one batched forward/backward and one stacked update per step.

Contract: ``train_many(configs, data)`` returns, for each configuration, the records that
:func:`helpers.engine.train.train` gives for it alone: both are :func:`helpers.engine.train.run`
(the one loop), with K models or one. Model k is seeded exactly as alone, so the models may
differ in seed, hyperparameters or both; everything else must be shared (:func:`why_not_batch`).
``wall_s`` is each model's share of the shared training time (elapsed / K).

Every method with a stacked rule (``OptimizerSpec.rule``, :mod:`helpers.optimizers.stacked`)
batches, in every scenario and sparsity strategy (projection, gradual, finetune; thin
scenarios prune whole neurons per row). Methods that call the model themselves run alone.
"""
from __future__ import annotations

import json
import sys

import torch

from .config import RunConfig
from ..problem.data import FashionMNIST
from ..optimizers import get_spec
from .stacked_model import (LAYOUT, MAX_SAMPLES_PER_STEP, N_CONSTRAINED, N_PARAMS, evaluate_many,  # noqa: F401
                            forward, losses_and_grad, per_model_loss, reference_logits, stack_models,
                            to_model, unstack)
from .stacked_sparsity import topk_rows  # noqa: F401
from .train import RunResult, run


def _why_not_alone(config: RunConfig) -> str | None:
    spec = get_spec(config.optimizer)
    if spec.rule is None:
        return f"optimizer {config.optimizer!r} has no stacked rule (it calls the model itself)"
    unknown = set(config.effective_hparams) - set(spec.rule.hyperparameters)
    if unknown:
        return f"hyperparameter(s) {sorted(unknown)} of {config.optimizer!r} are not in its stacked rule"
    if config.effective_batch_size == "full":
        return "full-batch runs are not batched (K copies of the training set per step)"
    return None


def _shared_settings(config: RunConfig) -> tuple:
    """What must be equal for models to share steps, batches' sizes, schedule and data."""
    rule = get_spec(config.optimizer).rule
    return (rule.__name__ if rule is not None else config.optimizer, config.scenario,
            config.sparsity_strategy, config.epochs, config.grad_budget, config.effective_batch_size,
            config.effective_batch_growth, config.schedule,
            json.dumps(config.schedule_params, sort_keys=True), config.scaling, config.train_fraction,
            config.eval_split, config.val_size if config.eval_split == "val" else None,
            config.evals_per_epoch,
            tuple(config.effective_hparams.get(k) for k in getattr(rule, "shared_hyperparameters", ())))


_SHARED_NAMES = ("update rule", "scenario", "sparsity_strategy", "epochs", "grad_budget", "batch_size",
                 "batch_growth", "schedule", "schedule_params", "scaling", "train_fraction",
                 "eval_split", "val_size", "evals_per_epoch", "the rule's shared hyperparameters")


def why_not_batch(configs: list[RunConfig]) -> str | None:
    """None if ``configs`` can train together in one batched run, else the reason."""
    configs = list(configs)
    if not configs:
        return "no configurations"
    for c in configs:
        reason = _why_not_alone(c)
        if reason:
            return f"{c.run_id}: {reason}"
    first = _shared_settings(configs[0])
    for c in configs[1:]:
        for name, a, b in zip(_SHARED_NAMES, first, _shared_settings(c)):
            if a != b:
                return (f"{configs[0].run_id} and {c.run_id} differ in {name} ({a!r} vs {b!r}); "
                        f"batched models share it (they may differ in seed, hparams and tag)")
    if len({c.run_id for c in configs}) < len(configs):
        return "the same configuration appears twice"
    size = configs[0].effective_batch_size
    if len(configs) * size > MAX_SAMPLES_PER_STEP:
        return (f"{len(configs)} models x batch {size} exceeds {MAX_SAMPLES_PER_STEP} samples per "
                f"step; use at most {max_models(configs[0])} models")
    return None


def can_batch(configs) -> bool:
    return why_not_batch(list(configs)) is None


def max_models(config: RunConfig) -> int:
    size = config.effective_batch_size
    return max(1, MAX_SAMPLES_PER_STEP // size) if size != "full" else 1


def batch_groups(configs, max_k: int = 32) -> list[list[int]]:
    """Indices of ``configs`` grouped into batchable runs of at most ``max_k`` (in input order);
    configurations that cannot batch come back as groups of one."""
    groups: dict[tuple, list[int]] = {}
    out: list[list[int]] = []
    for i, c in enumerate(configs):
        if _why_not_alone(c) is not None:
            out.append([i])
            continue
        key = _shared_settings(c)
        group = groups.get(key)
        if group is None or len(group) >= min(max_k, max_models(c)):
            group = groups[key] = []
            out.append(group)
        group.append(i)
    return out


def train_many(configs, data: FashionMNIST, progress: bool = True, compile: bool = False,
               observer=None) -> list[RunResult]:
    """Train every configuration in one batched run (:func:`helpers.engine.train.run`).

    Raises ValueError naming the difference if the configurations cannot share a run
    (:func:`why_not_batch`). ``compile`` wraps the loss in ``torch.compile``.
    """
    configs = list(configs)
    reason = why_not_batch(configs)
    if reason:
        raise ValueError(f"these configurations cannot train as one batch: {reason}")
    loss_fn = torch.compile(per_model_loss) if compile else per_model_loss
    return run(configs, data, progress, observer=observer, loss_fn=loss_fn)


# ---------------------------------------------------------------- the sweep layer

def compute_batch(configs, device: str | None = None, progress: bool = False) -> list[tuple]:
    """Train one batchable group; return ``(config, records, meta, predictions)`` per configuration,
    the metadata built as :func:`helpers.study.records.run_and_record` builds it, plus ``batched``."""
    from ..study.records import _check_density, data_for, failed_meta, finished_meta, start_meta
    from ..runtime import environment
    configs = list(configs)
    metas = [start_meta(c) for c in configs]
    data = data_for(configs[0], device)
    results = train_many(configs, data, progress=progress)
    env = environment(data.device)
    out = []
    for config, meta, result in zip(configs, metas, results):
        meta["environment"] = env
        meta["batched"] = {"models": len(configs), "wall_s": "share of the shared training time (elapsed / models)"}
        try:
            _check_density(config, result.records, result.model, len(data.train))
        except Exception as exc:
            out.append((config, [], failed_meta(meta, exc), None))
            continue
        out.append((config, result.records, finished_meta(meta, result), result.predictions))
    return out


def run_batched(configs, root=None, executor=None, progress: bool = True, max_k: int = 32,
                device: str | None = None) -> list[str]:
    """Train the not-yet-done configurations that batch (groups of 2..``max_k``) and write each
    run with :func:`helpers.study.records.write_run`; return the run ids written.

    Groups go to ``executor`` when given (each group is one task), else run here. A group that
    raises writes nothing: its runs are left to the single-model path, which records any error.
    """
    from concurrent.futures import as_completed

    from ..study.records import is_done, write_run
    unique = {c.run_id: c for c in configs}
    todo = [c for c in unique.values() if not is_done(c, root)]
    groups = [[todo[i] for i in g] for g in batch_groups(todo, max_k) if len(g) >= 2]
    written: list[str] = []

    def store(rows):
        for config, records, meta, predictions in rows:
            write_run(config, records, meta, root, predictions=predictions)
            written.append(config.run_id)

    if executor is None:
        for group in groups:
            try:
                rows = compute_batch(group, device, progress)
            except Exception as exc:  # left to the single-model path
                print(f"batched run of {len(group)} models failed ({type(exc).__name__}: {exc}); "
                      f"they run one by one", file=sys.stderr)
                continue
            store(rows)
        return written
    futures = {executor.submit(compute_batch, group, device): group for group in groups}
    for future in as_completed(futures):
        try:
            store(future.result())
        except Exception as exc:
            print(f"batched run of {len(futures[future])} models failed ({type(exc).__name__}: "
                  f"{exc}); they run one by one", file=sys.stderr)
    return written
