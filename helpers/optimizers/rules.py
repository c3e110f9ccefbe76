"""torch.optim's SGD, Adam, AdamW, NAdam and RAdam as stacked rules (one row per model).

The updates follow torch.optim's single-tensor code (non-amsgrad, no maximize, SGD with
dampening 0); per-model step counts and bias corrections are float64 ``[K, 1]`` columns.
torch.optim's classes stay the independent reference in the tests.
"""
from __future__ import annotations

import torch

from .stacked import StackedRule, check_betas, check_eps


class SGDRule(StackedRule):
    """torch.optim.SGD: g <- g + wd p; b <- mu b + g (b_1 = g); p <- p - lr (g + mu b if nesterov else b)."""
    hyperparameters = {"lr": 0.01, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0}
    capturable = True

    def __init__(self, hparams, p):
        super().__init__(hparams, p)
        self.mu, self.wd = self.column("momentum"), self.weight_decay
        self.nesterov = self.column("nesterov").bool()
        self.decay = self.any("weight_decay")
        self.buf = self.add_state("momentum_buffer", p) if self.any("momentum") else None

    @classmethod
    def check(cls, h):
        super().check(h)
        if not 0.0 <= h["momentum"] < 1.0:
            raise ValueError(f"Invalid momentum value: {h['momentum']!r}")
        if h["nesterov"] and h["momentum"] <= 0:
            raise ValueError("Nesterov momentum requires a momentum > 0")

    def step(self, p, g, lr, oracle=None):
        if self.decay:
            g = g + self.wd * p
        if self.buf is not None:
            self.buf.mul_(self.mu).add_(g)
            g = torch.where(self.nesterov, g + self.mu * self.buf, self.buf)
        p.sub_(lr.to(p.dtype) * g)


class AdamRule(StackedRule):
    """torch.optim.Adam: g <- g + wd p; m <- b1 m + (1-b1) g; v <- b2 v + (1-b2) g^2;
    p <- p - lr / (1-b1^t) m / (sqrt(v) / sqrt(1-b2^t) + eps)."""
    hyperparameters = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}
    decoupled = False
    capturable = True

    def __init__(self, hparams, p):
        super().__init__(hparams, p)
        self.b1 = self.column([h["betas"][0] for h in self.hp], torch.float64)
        self.b2 = self.column([h["betas"][1] for h in self.hp], torch.float64)
        self.eps, self.wd = self.column("eps"), self.weight_decay
        self.decay = self.any("weight_decay")
        self.m = self.add_state("exp_avg", p)
        self.v = self.add_state("exp_avg_sq", p)

    @classmethod
    def check(cls, h):
        super().check(h)
        check_betas(h["betas"])
        check_eps(h["eps"])

    def step(self, p, g, lr, oracle=None):
        self.steps += 1
        if self.decay:
            if self.decoupled:
                p.mul_(1 - (lr * self.wd.double()).to(p.dtype))
            else:
                g = g + self.wd * p
        self.m.lerp_(g, (1 - self.b1).to(p.dtype))
        self.v.mul_(self.b2.to(p.dtype)).addcmul_(g, g * (1 - self.b2).to(p.dtype))
        self.update(p, g, lr)

    def update(self, p, g, lr):
        t = self.steps
        bc1, bc2 = 1 - self.b1 ** t, 1 - self.b2 ** t
        denom = self.v.sqrt() / bc2.sqrt().to(p.dtype) + self.eps
        p.sub_((lr / bc1).to(p.dtype) * self.m / denom)


class AdamWRule(AdamRule):
    """torch.optim.AdamW: Adam with decoupled decay p <- p (1 - lr wd) before the step."""
    hyperparameters = {**AdamRule.hyperparameters, "weight_decay": 1e-2}
    decoupled = True


class NAdamRule(AdamRule):
    """torch.optim.NAdam: mu_t = b1 (1 - 0.5 * 0.96^(t psi)), psi = momentum_decay; with
    d = sqrt(v / (1-b2^t)) + eps: p <- p - lr (1-mu_t) / (1 - prod_{i<=t} mu_i) g / d
    - lr mu_{t+1} / (1 - prod_{i<=t+1} mu_i) m / d. L2 coupled."""
    hyperparameters = {**AdamRule.hyperparameters, "lr": 2e-3, "momentum_decay": 4e-3}

    def __init__(self, hparams, p):
        super().__init__(hparams, p)
        self.psi = self.column("momentum_decay", torch.float64)
        self.mu_product = self.add_counter("mu_product", 1.0)

    def update(self, p, g, lr):
        t = self.steps
        mu = self.b1 * (1 - 0.5 * 0.96 ** (t * self.psi))
        mu_next = self.b1 * (1 - 0.5 * 0.96 ** ((t + 1) * self.psi))
        self.mu_product *= mu
        denom = (self.v / (1 - self.b2 ** t).to(p.dtype)).sqrt() + self.eps
        p.sub_((lr * (1 - mu) / (1 - self.mu_product)).to(p.dtype) * g / denom)
        p.sub_((lr * mu_next / (1 - self.mu_product * mu_next)).to(p.dtype) * self.m / denom)


class RAdamRule(AdamRule):
    """torch.optim.RAdam: rho_inf = 2/(1-b2) - 1, rho_t = rho_inf - 2 t b2^t / (1-b2^t);
    m^ = m / (1-b1^t); if rho_t > 5: p <- p - lr m^ r_t sqrt(1-b2^t) / (sqrt(v) + eps) with
    r_t = sqrt((rho_t-4)(rho_t-2) rho_inf / ((rho_inf-4)(rho_inf-2) rho_t)); else p <- p - lr m^."""

    def update(self, p, g, lr):
        t = self.steps
        bc1, bc2 = 1 - self.b1 ** t, 1 - self.b2 ** t
        rho_inf = 2 / (1 - self.b2) - 1
        rho = rho_inf - 2 * t * self.b2 ** t / bc2
        on = rho > 5
        safe = torch.where(on, rho, torch.full_like(rho, 6.0))
        rect = ((safe - 4) * (safe - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * safe)).sqrt()
        adaptive = (bc2.sqrt() * rect).to(p.dtype) / (self.v.sqrt() + self.eps)
        factor = torch.where(on, adaptive, torch.ones_like(adaptive))
        p.sub_(self.m / bc1.to(p.dtype) * lr.to(p.dtype) * factor)
