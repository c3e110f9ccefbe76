"""AdaHessian: Adam-like steps scaled by a Hutchinson estimate of the Hessian diagonal."""
from __future__ import annotations

import warnings

import torch
from torch.optim import Optimizer

from .model_probe import ModelProbe, samples_of
from .registry import OptimizerSpec


class AdaHessian(Optimizer):
    r"""AdaHessian (Yao et al. 2021).

    Each step, with g = ∇f(θ) from ``closure(create_graph=True)`` and a Rademacher z:

        D = z ⊙ (H z)                          (Hutchinson: E[D] = diag H; one Hessian-vector
                                                product by double backprop per step)
        D ← mean_{kh,kw} |D|  for conv kernels (spatial averaging over each kh×kw filter,
                                                absolute values as in the authors' code)
        m ← β₁ m + (1-β₁) g,   v ← β₂ v + (1-β₂) D ⊙ D
        θ ← θ - lr [ (m / (1-β₁ᵗ)) / ((v / (1-β₂ᵗ))^{k/2} + eps) + weight_decay·θ ]

    with k = ``hessian_power``. Weight decay is decoupled, as in the paper's code (AdamW-like).
    Hessian-vector products are counted in ``oracle_counts["hvp"]`` in samples; pass ``model``
    (the module the closure runs) to know the batch size, else each product counts 1.
    """

    def __init__(self, params, lr: float = 0.15, betas=(0.9, 0.999), eps: float = 1e-4,
                 hessian_power: float = 1.0, weight_decay: float = 0.0, model=None):
        if not lr > 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not eps >= 0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0 <= betas[0] < 1:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0 <= betas[1] < 1:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        if not 0 <= hessian_power <= 1:
            raise ValueError(f"Invalid hessian_power value: {hessian_power}")
        if not weight_decay >= 0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, hessian_power=hessian_power,
                        weight_decay=weight_decay)
        super().__init__(params, defaults)
        self._probe = ModelProbe(model) if model is not None else None
        self.oracle_counts = {"hvp": 0}

    @staticmethod
    def hutchinson(params, grads, probes=None) -> list[torch.Tensor]:
        """z ⊙ (H z) per parameter for Rademacher ``probes`` z (drawn when None)."""
        if probes is None:
            probes = [torch.randint_like(p, 2) * 2 - 1 for p in params]
        pairs = [(i, g) for i, g in enumerate(grads) if g.requires_grad]
        hz = [None] * len(params)
        if pairs:
            hz = torch.autograd.grad([g for _, g in pairs], params,
                                     grad_outputs=[probes[i] for i, _ in pairs], allow_unused=True,
                                     retain_graph=True)
        return [z * h if h is not None else torch.zeros_like(z) for z, h in zip(probes, hz)]

    @staticmethod
    def spatial_average(diagonal: torch.Tensor) -> torch.Tensor:
        if diagonal.dim() == 4:
            return diagonal.abs().mean(dim=(2, 3), keepdim=True).expand_as(diagonal)
        return diagonal

    @torch.no_grad()
    def step(self, closure):
        """One AdaHessian step; ``closure(create_graph=True)`` must back-propagate the loss."""
        if closure is None:
            raise ValueError("AdaHessian needs a closure(create_graph=...) that back-propagates the loss")
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Using backward\(\) with create_graph=True")
            loss = closure(create_graph=True)
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        grads = [p.grad for p in params]
        with torch.enable_grad():
            diagonals = self.hutchinson(params, grads)
        self.oracle_counts["hvp"] += samples_of(closure, self._probe)
        for p in params:
            p.grad = p.grad.detach()
        diagonal_of = dict(zip(params, diagonals))
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p not in diagonal_of:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_hessian_diag_sq"] = torch.zeros_like(p)
                state["step"] += 1
                d = self.spatial_average(diagonal_of[p].detach())
                state["exp_avg"].mul_(beta1).add_(p.grad, alpha=1 - beta1)
                state["exp_hessian_diag_sq"].mul_(beta2).addcmul_(d, d, value=1 - beta2)
                bias1 = 1 - beta1 ** state["step"]
                bias2 = 1 - beta2 ** state["step"]
                k = group["hessian_power"]
                denom = (state["exp_hessian_diag_sq"] / bias2).pow(k / 2).add_(group["eps"])
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.addcdiv_(state["exp_avg"], denom, value=-group["lr"] / bias1)
        return loss.detach() if torch.is_tensor(loss) else loss


def _adahessian(model, **hp):
    return AdaHessian(model.parameters(), model=model, **hp)


SPECS = [
    OptimizerSpec("adahessian", "second_order", _adahessian,
                  {"lr": 0.15, "betas": (0.9, 0.999), "eps": 1e-4, "hessian_power": 1.0,
                   "weight_decay": 0.0},
                  {"lr": (1e-2, 0.5, "log")},
                  "AdaHessian: Adam with a Hutchinson Hessian-diagonal second moment, spatial "
                  "averaging for conv kernels (Yao et al. 2021); decoupled weight decay",
                  batch_size=128),
]
