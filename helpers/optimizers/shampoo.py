"""Shampoo: Kronecker-factored full-matrix AdaGrad preconditioning per parameter."""
from __future__ import annotations

import torch
from torch.optim import Optimizer

from .registry import OptimizerSpec

GRAFTS = ("none", "sgd", "adam")


class Shampoo(Optimizer):
    r"""Shampoo (Gupta, Koren & Singer 2018) with optional grafting (Agarwal et al. 2020).

    With G = ∇f(θ) + weight_decay·θ viewed as an m×n matrix (dim 0 by the rest; a conv
    kernel is out × in·kh·kw):

        L ← β L + c G Gᵀ,   R ← β R + c Gᵀ G      (β = ``beta2``; β = 1, c = 1: the paper's sums;
                                                  β < 1: c = 1 - β, running averages)
        P = (L + εI)^{-1/4} G (R + εI)^{-1/4}

    and for a 1-D parameter (bias) g: H ← β H + c g gᵀ, P = (H + εI)^{-1/2} g (the order-1 case
    of the paper). The inverse roots come from eigendecompositions (float64, eigenvalues clamped
    at 0) refreshed every ``update_interval`` steps; between refreshes the stored roots are
    used (also when a decomposition fails). A side longer than ``max_preconditioner_dim`` is left unpreconditioned.

    Grafting takes the direction from Shampoo and the per-parameter step length from another
    method: ``graft="sgd"``: P ← ||G|| P/||P||; ``"adam"``: P ← ||G/(√v̂ + 1e-8)|| P/||P|| with
    v ← 0.999 v + 0.001 G² bias-corrected (Adam's second moment, no first moment);
    ``"none"``: P as is (the paper). Then, as torch.optim.SGD: buf ← momentum·buf + P,
    θ ← θ - lr·buf.
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.9, beta2: float = 1.0,
                 epsilon: float = 1e-6, update_interval: int = 10, graft: str = "adam",
                 max_preconditioner_dim: int = 2048, weight_decay: float = 0.0):
        if not lr > 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not 0 < beta2 <= 1:
            raise ValueError(f"Invalid beta2 value: {beta2}")
        if not epsilon > 0:
            raise ValueError(f"Invalid epsilon value: {epsilon}")
        if not (isinstance(update_interval, int) and update_interval >= 1):
            raise ValueError(f"Invalid update_interval value: {update_interval}")
        if graft not in GRAFTS:
            raise ValueError(f"Invalid graft value: {graft!r}; choose one of {GRAFTS}")
        if not (isinstance(max_preconditioner_dim, int) and max_preconditioner_dim >= 1):
            raise ValueError(f"Invalid max_preconditioner_dim value: {max_preconditioner_dim}")
        if not weight_decay >= 0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, momentum=momentum, beta2=beta2, epsilon=epsilon,
                        update_interval=update_interval, graft=graft,
                        max_preconditioner_dim=max_preconditioner_dim, weight_decay=weight_decay)
        super().__init__(params, defaults)

    @staticmethod
    def inverse_root(matrix: torch.Tensor, exponent: float, epsilon: float) -> torch.Tensor:
        """(matrix + εI)^(-1/exponent) for a symmetric PSD matrix, via eigh in float64."""
        values, vectors = torch.linalg.eigh(matrix.double())
        scale = (values.clamp(min=0) + epsilon).pow(-1.0 / exponent)
        return ((vectors * scale) @ vectors.T).to(matrix.dtype)

    def _init_state(self, p, matrix, group):
        state = self.state[p]
        state["step"] = 0
        limit = group["max_preconditioner_dim"]
        sides = [matrix.shape[0]] if p.dim() <= 1 else list(matrix.shape)
        state["stats"] = [torch.zeros(d, d, dtype=p.dtype, device=p.device) if d <= limit else None
                          for d in sides]
        state["roots"] = [None] * len(sides)
        if group["graft"] == "adam":
            state["graft_v"] = torch.zeros_like(p)
        return state

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta, eps = group["beta2"], group["epsilon"]
            weight = 1.0 if beta == 1 else 1 - beta
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad + group["weight_decay"] * p if group["weight_decay"] else p.grad
                matrix = grad.reshape(-1, 1) if p.dim() <= 1 else grad.reshape(grad.shape[0], -1)
                state = self.state[p] if self.state[p] else self._init_state(p, matrix, group)
                refresh = state["step"] % group["update_interval"] == 0
                state["step"] += 1
                products = [matrix @ matrix.T] if p.dim() <= 1 else [matrix @ matrix.T, matrix.T @ matrix]
                exponent = 2 if p.dim() <= 1 else 4
                for i, (stat, product) in enumerate(zip(state["stats"], products)):
                    if stat is None:
                        continue
                    stat.mul_(beta).add_(product, alpha=weight)
                    if refresh and bool(torch.isfinite(stat).all()):
                        try:
                            state["roots"][i] = self.inverse_root(stat, exponent, eps)
                        except torch.linalg.LinAlgError:
                            pass
                left = state["roots"][0]
                direction = left @ matrix if left is not None else matrix.clone()
                if p.dim() > 1 and state["roots"][1] is not None:
                    direction = direction @ state["roots"][1]
                direction = direction.reshape(p.shape)
                direction = self._graft(direction, grad, state, group)
                if group["momentum"]:
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = direction.clone()
                    else:
                        buf.mul_(group["momentum"]).add_(direction)
                    direction = buf
                p.add_(direction, alpha=-group["lr"])
        return loss

    @staticmethod
    def _graft(direction, grad, state, group):
        if group["graft"] == "none":
            return direction
        if group["graft"] == "sgd":
            length = grad.norm()
        else:
            v = state["graft_v"].mul_(0.999).addcmul_(grad, grad, value=0.001)
            v_hat = v / (1 - 0.999 ** state["step"])
            length = (grad / (v_hat.sqrt() + 1e-8)).norm()
        norm = direction.norm()
        return direction * (length / norm) if norm > 0 else direction


def _shampoo(model, **hp):
    return Shampoo(model.parameters(), **hp)


SPECS = [
    OptimizerSpec("shampoo", "second_order", _shampoo,
                  {"lr": 1e-3, "momentum": 0.9, "beta2": 1.0, "epsilon": 1e-6, "update_interval": 10,
                   "graft": "adam", "max_preconditioner_dim": 2048, "weight_decay": 0.0},
                  {"lr": (3e-4, 1e-2, "log")},
                  "Shampoo: L^-1/4 G R^-1/4 per layer, Adam-grafted step length, momentum "
                  "(Gupta et al. 2018)",
                  batch_size=128),
]
