"""Sparsity over the fc1+fc2 weights: projection, pruning schedules, masks, density counting.

The constraint set is C_k = {w : ||w||_0 <= k} over the 40,800 fc1+fc2 weights together
(biases are not counted). Its Euclidean projection keeps the k largest magnitudes and zeroes
the rest; ties go to the lower flat index (fc1 row-major, then fc2), so it is deterministic.

Strategies (``RunConfig.sparsity_strategy``):

- ``projection``: projected SGD / iterative hard thresholding (Blumensath & Davies 2009):
  w <- P_{C_k}(w - step) after every optimizer step, and once before the first.
- ``gradual``: gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune").
  From a fraction ``start`` to ``end`` of the run's steps the allowed density follows
  d_t = d + (1 - d)(1 - p)^3, p = (t - t0) / (t_end - t0), pruning by magnitude every
  ``every`` steps and at t_end exactly to the budget k. Between pruning events the mask is
  fixed, so the density never exceeds the last pruning event's.
- ``finetune``: prune-then-fine-tune: dense training for ``dense_share`` of the steps, one
  magnitude pruning to k, then training with that fixed mask.

Optimizer state at pruned weights: after every step (projection and fixed-mask phases alike)
every per-entry state tensor of fc1/fc2 weights (any tensor in ``optimizer.state[w]`` shaped
like ``w``: momentum buffers, Adam's first and second moments, ...) is set to zero wherever
the mask is off, exactly like the weight (an optimizer may exempt keys by listing them in an
``unmasked_state`` attribute). A weight that re-enters the support under
``projection`` therefore starts from fresh state. State that is not per entry (step
counters, L-BFGS's flattened curvature pairs, Kronecker factors) is left alone. In fixed-mask
phases the gradient is masked too (a tensor hook on fc1/fc2 weights), so optimizers that mix
coordinates (L-BFGS, K-FAC, ...) optimise over the mask's subspace; the weights are re-masked
after every step regardless, so the constraint holds for any optimizer.

Evaluated weights: if the optimizer evaluates other weights than it trains
(``evaluation_weights()``: iterate averages, schedule-free's x), those are restricted to the
same number of nonzeros for the evaluation, so every evaluated model is feasible.
"""
from __future__ import annotations

import math
import weakref
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..problem.model import constrained_weights
from .masks import budget, check_density, split_mask, topk_mask, topk_masks  # noqa: F401 (re-exported)
from .structured import neuron_masks
from ..optimizers.swap import weights_swapped

STRATEGIES = ("projection", "gradual", "finetune")
GRADUAL_START, GRADUAL_END, GRADUAL_EVENTS = 0.1, 0.7, 20
FINETUNE_DENSE_SHARE = 0.5


def check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown sparsity strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    return strategy


@torch.no_grad()
def apply_masks_(tensors: list[torch.Tensor], masks: list[torch.Tensor]) -> None:
    for t, m in zip(tensors, masks):
        t.masked_fill_(~m, 0)


@torch.no_grad()
def project_(weights: list[torch.Tensor], density: float | None = None, k: int | None = None
             ) -> list[torch.Tensor]:
    """Project ``weights`` in place onto C_k (k from ``density`` unless given); return the masks."""
    if k is None:
        k = budget(sum(w.numel() for w in weights), density)
    masks = topk_masks(weights, k)
    apply_masks_(weights, masks)
    return masks


@torch.no_grad()
def mask_state_(optimizer: torch.optim.Optimizer, weights: list[torch.Tensor],
                masks: list[torch.Tensor]) -> None:
    """Zero every per-entry optimizer state tensor of ``weights`` where the mask is off.

    Keys named in the optimizer's ``unmasked_state`` (e.g. SVRG's snapshot point and its full
    gradient, which must stay consistent with each other) are left alone.
    """
    keep = set(getattr(optimizer, "unmasked_state", ()))
    for w, m in zip(weights, masks):
        for key, value in optimizer.state.get(w, {}).items():
            if (key not in keep and torch.is_tensor(value) and value.shape == w.shape
                    and value.is_floating_point()):
                value.masked_fill_(~m, 0)


def count_nonzero(weights: list[torch.Tensor]) -> int:
    return sum(int(torch.count_nonzero(w)) for w in weights)


def nonzero_share(weights: list[torch.Tensor]) -> float:
    return count_nonzero(weights) / sum(w.numel() for w in weights)


@dataclass(frozen=True)
class PruningSchedule:
    """When to prune, and to how many nonzeros. Steps are 0-based; -1 is before the first step.

    ``events`` maps a step to the nonzero count the weights are pruned to after it;
    ``every_step`` (projection) prunes to ``k`` after every step including -1.
    """
    strategy: str
    n: int
    k: int
    total_steps: int
    events: tuple[tuple[int, int], ...] = ()
    every_step: bool = False

    def target(self, step: int) -> int | None:
        if self.every_step:
            return self.k
        return dict(self.events).get(step)

    def allowed(self, steps_done: int) -> int:
        """Most nonzeros the weights may hold once ``steps_done`` steps have run."""
        if self.every_step:
            return self.k
        passed = [k for step, k in self.events if step <= steps_done - 1]
        return passed[-1] if passed else self.n

    @property
    def end_step(self) -> int:
        """Steps after which the final budget holds (0 for projection)."""
        return 0 if self.every_step else self.events[-1][0] + 1


def pruning_schedule(strategy: str, n: int, density: float, total_steps: int,
                     start: float = GRADUAL_START, end: float = GRADUAL_END, every: int | None = None,
                     dense_share: float = FINETUNE_DENSE_SHARE) -> PruningSchedule:
    """The pruning events of ``strategy`` over a run of ``total_steps`` steps (see module doc)."""
    check_strategy(strategy)
    k = budget(n, density)
    if not (isinstance(total_steps, int) and total_steps >= 1):
        raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
    last = total_steps - 1
    if strategy == "projection":
        return PruningSchedule(strategy, n, k, total_steps, every_step=True)
    if strategy == "finetune":
        if not 0 <= dense_share < 1:
            raise ValueError(f"dense_share must be in [0, 1), got {dense_share!r}")
        step = min(max(round(dense_share * total_steps) - 1, 0), last)
        return PruningSchedule(strategy, n, k, total_steps, events=((step, k),))
    if not 0 <= start <= end < 1:
        raise ValueError(f"gradual pruning needs 0 <= start <= end < 1, got start={start!r}, end={end!r}")
    t0 = min(round(start * total_steps), last)
    t_end = min(max(round(end * total_steps), t0), last)
    if every is None:
        every = max(1, math.ceil((t_end - t0) / GRADUAL_EVENTS))
    if not (isinstance(every, int) and every >= 1):
        raise ValueError(f"every (steps between pruning events) must be a positive integer, got {every!r}")
    steps = sorted(set(range(t0, t_end, every)) | {t_end})
    events = []
    for step in steps:
        progress = 1.0 if t_end == t0 else (step - t0) / (t_end - t0)
        events.append((step, k if progress >= 1 else
                       budget(n, density + (1 - density) * (1 - progress) ** 3)))
    return PruningSchedule(strategy, n, k, total_steps, events=tuple(events))


def select_masks(weights: list[torch.Tensor], k: int, structured: bool = False) -> list[torch.Tensor]:
    """Masks keeping at most ``k`` nonzeros: the k largest weights, or whole neurons if ``structured``."""
    if structured:
        return neuron_masks(weights, k)
    return topk_masks(weights, k)


class _MaskState:
    """The current masks and nonzero count (what gradient hooks and evaluation read)."""

    def __init__(self):
        self.masks: list[torch.Tensor] | None = None
        self.fixed = False
        self.k: int | None = None


class SparsityHook:
    """Enforces a sparsity strategy on fc1+fc2 weights; ``after_step(step)`` runs after each step.

    ``structured`` selects whole neurons (:mod:`helpers.constraints.structured`) instead of single weights.
    Gradient hooks and the evaluation wrapper hold the masks only weakly: they turn inert and
    are removed once this hook is gone (or on ``close()``), so a returned model trains freely.
    """

    def __init__(self, model, optimizer, density: float, total_steps: int, strategy: str = "projection",
                 structured: bool = False, **schedule_params):
        self.weights = constrained_weights(model)
        self.optimizer = optimizer
        self.density = check_density(density)
        self.total_steps = total_steps
        self.strategy = check_strategy(strategy)
        self.structured = structured
        self.n = sum(w.numel() for w in self.weights)
        self.schedule = pruning_schedule(strategy, self.n, self.density, total_steps, **schedule_params)
        self.state = _MaskState()
        self._handles: list = []
        self._finalizer = weakref.finalize(self.state, _remove_handles, self._handles)
        self._wrap_evaluation()

    @property
    def masks(self) -> list[torch.Tensor] | None:
        return self.state.masks

    def select(self, weights: list[torch.Tensor], k: int) -> list[torch.Tensor]:
        return select_masks(weights, k, self.structured)

    def after_step(self, step: int) -> None:
        k = self.schedule.target(step)
        if k is not None:
            self.state.masks, self.state.k = self.select(self.weights, k), k
            if self.strategy != "projection" and not self.state.fixed:
                self._mask_gradients()
        if self.state.masks is not None:
            apply_masks_(self.weights, self.state.masks)
            mask_state_(self.optimizer, self.weights, self.state.masks)

    def allowed(self, steps_done: int) -> int:
        return self.schedule.allowed(steps_done)

    def close(self) -> None:
        self._finalizer()

    def _mask_gradients(self) -> None:
        self.state.fixed = True
        state = weakref.ref(self.state)
        for i, w in enumerate(self.weights):
            self._handles.append(w.register_hook(_GradMask(state, i)))

    def _wrap_evaluation(self) -> None:
        original = getattr(self.optimizer, "evaluation_weights", None)
        if original is None:
            return
        state, weights, structured = weakref.ref(self.state), self.weights, self.structured
        owner = weakref.ref(self.optimizer)
        unbound = getattr(type(self.optimizer), "evaluation_weights", None)
        call = (lambda: unbound(owner())) if unbound is not None else original

        @contextmanager
        def feasible_evaluation_weights():
            with call():
                current = state()
                if current is None or current.k is None:
                    yield
                    return
                with torch.no_grad():
                    feasible = [w.detach().clone() for w in weights]
                    apply_masks_(feasible, select_masks(weights, current.k, structured))
                with weights_swapped(weights, feasible):
                    yield

        self.optimizer.evaluation_weights = feasible_evaluation_weights


class _GradMask:
    def __init__(self, state: weakref.ref, index: int):
        self.state, self.index = state, index

    def __call__(self, grad: torch.Tensor) -> torch.Tensor:
        current = self.state()
        if current is None or current.masks is None:
            return grad
        return grad.masked_fill(~current.masks[self.index], 0)


def _remove_handles(handles: list) -> None:
    for handle in handles:
        handle.remove()
    handles.clear()
