"""Hessian-free Newton-CG (Martens 2010): Gauss-Newton or exact Hessian-vector products, truncated CG."""
from __future__ import annotations

import warnings

import torch
from torch.optim import Optimizer

from .model_probe import ModelProbe, samples_of
from .registry import OptimizerSpec


CURVATURES = ("gauss_newton", "hessian")


class NewtonCG(Optimizer):
    r"""Truncated Newton with conjugate gradients, Tikhonov damping and Levenberg-Marquardt.

    On each step, with f the closure's batch loss plus (wd/2)||θ||² (``weight_decay`` enters
    gradient and curvature):

        g = ∇f(θ)
        B v = Jᵀ H_L J v + wd v               (curvature="gauss_newton", Martens' choice: J = dz/dθ
                                              for the model output z, H_L = ∂²L/∂z², so B ⪰ 0 for
                                              a convex loss; J v by the double-vjp trick)
        B v = ∇_θ(∇f(θ)·v)                    (curvature="hessian": exact, by double backprop,
                                              Pearlmutter 1994; may be indefinite)
        d ≈ argmin_d g·d + ½ d·(B + λI) d     (truncated CG from d₀ = cg_warm_start · d_prev:
                                              at most ``max_cg_iters`` products, stop when
                                              ||r|| ≤ cg_tol ||g|| or on non-positive curvature,
                                              keeping the last iterate, or -g at the first)
        θ ← θ + lr d

    With ``adapt_damping`` λ follows Martens' Levenberg-Marquardt rule: ρ = (f(θ+lr d) - f(θ)) /
    q(lr d), q the damped quadratic model CG minimised; λ ← 3/2 λ if ρ < 1/4, λ ← 2/3 λ if ρ > 3/4,
    and a step that raises f on the batch is undone (the next CG then starts from 0). That costs one more closure call per step
    (counted by the engine as gradient evaluations).
    Curvature-vector products are counted in ``oracle_counts["hvp"]`` in samples (the batch
    size per product); ``oracle_guard`` (None, or a callable set by a budgeted training loop) is
    called with a product's samples before it runs and may raise to stop the step: a step's CG
    iterations vary, so its cost is only known as it goes. ``model`` (the module whose output the loss is computed from) is needed
    for Gauss-Newton products and for the sample counts. One parameter group only, like
    torch.optim.LBFGS.
    """

    def __init__(self, params, lr: float = 1.0, damping: float = 1.0, max_cg_iters: int = 10,
                 cg_tol: float = 0.1, cg_warm_start: float = 0.0, adapt_damping: bool = True,
                 curvature: str = "gauss_newton", weight_decay: float = 0.0, model=None):
        if not lr > 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not damping >= 0:
            raise ValueError(f"Invalid damping value: {damping}")
        if not (isinstance(max_cg_iters, int) and max_cg_iters >= 1):
            raise ValueError(f"Invalid max_cg_iters value: {max_cg_iters}")
        if not cg_tol > 0:
            raise ValueError(f"Invalid cg_tol value: {cg_tol}")
        if not 0 <= cg_warm_start < 1:
            raise ValueError(f"Invalid cg_warm_start value: {cg_warm_start}")
        if curvature not in CURVATURES:
            raise ValueError(f"Invalid curvature value: {curvature!r}; choose one of {CURVATURES}")
        if curvature == "gauss_newton" and model is None:
            raise ValueError("curvature='gauss_newton' needs model= (the module producing the output)")
        if not weight_decay >= 0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, damping=damping, max_cg_iters=max_cg_iters, cg_tol=cg_tol,
                        cg_warm_start=cg_warm_start, adapt_damping=adapt_damping,
                        curvature=curvature, weight_decay=weight_decay)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("NewtonCG doesn't support per-parameter options (parameter groups)")
        self._params = [p for p in self.param_groups[0]["params"] if p.requires_grad]
        self._probe = ModelProbe(model) if model is not None else None
        self.oracle_counts = {"hvp": 0}
        self.oracle_guard = None

    def _flat(self, tensors) -> torch.Tensor:
        return torch.cat([t.reshape(-1) for t in tensors])

    def _split(self, vector: torch.Tensor) -> list[torch.Tensor]:
        out, start = [], 0
        for p in self._params:
            out.append(vector[start:start + p.numel()].view_as(p))
            start += p.numel()
        return out

    def hessian_vector_product(self, grads, vector: torch.Tensor) -> torch.Tensor:
        """H v for the loss whose graph-carrying gradients are ``grads`` (weight decay included)."""
        pairs = [(g, v) for g, v in zip(grads, self._split(vector)) if g.requires_grad]
        hv = [None] * len(self._params)
        if pairs:
            hv = torch.autograd.grad([g for g, _ in pairs], self._params,
                                     grad_outputs=[v for _, v in pairs],
                                     retain_graph=True, allow_unused=True)
        flat = torch.cat([(h if h is not None else torch.zeros_like(p)).reshape(-1)
                          for h, p in zip(hv, self._params)])
        return flat + self.param_groups[0]["weight_decay"] * vector

    def gauss_newton_product(self, jtu, u, output, output_grad, vector: torch.Tensor) -> torch.Tensor:
        """Jᵀ H_L J v (+ wd v): ``jtu`` = Jᵀu with graph in the dummy ``u``, ``output_grad`` = dL/dz."""
        used = [(t, v) for t, v in zip(jtu, self._split(vector)) if t is not None]
        jv = torch.autograd.grad([t for t, _ in used], u, grad_outputs=[v for _, v in used],
                                 retain_graph=True)[0]
        if output_grad.requires_grad:
            hjv = torch.autograd.grad(output_grad, output, grad_outputs=jv, retain_graph=True)[0]
        else:
            hjv = torch.zeros_like(output)
        jt = torch.autograd.grad(output, self._params, grad_outputs=hjv, retain_graph=True,
                                 allow_unused=True)
        flat = torch.cat([(h if h is not None else torch.zeros_like(p)).reshape(-1)
                          for h, p in zip(jt, self._params)])
        return flat + self.param_groups[0]["weight_decay"] * vector

    def _cg(self, apply, b: torch.Tensor, x0: torch.Tensor | None, max_iters: int, tol: float):
        """Truncated CG on A x = b; returns x and A x."""
        if x0 is None:
            x, ax = torch.zeros_like(b), torch.zeros_like(b)
        else:
            x, ax = x0.clone(), apply(x0)
            max_iters -= 1
        r = b - ax
        direction = r.clone()
        rs = r.dot(r)
        target = tol * b.norm()
        for i in range(max_iters):
            if rs.sqrt() <= target:
                break
            a_dir = apply(direction)
            curvature = direction.dot(a_dir)
            if curvature <= 0:
                if i == 0 and x0 is None:
                    x, ax = direction, a_dir
                break
            alpha = rs / curvature
            x.add_(direction, alpha=alpha)
            ax.add_(a_dir, alpha=alpha)
            r.sub_(a_dir, alpha=alpha)
            rs_new = r.dot(r)
            direction = r + (rs_new / rs) * direction
            rs = rs_new
        return x, ax

    def step(self, closure):
        """One damped Newton-CG step; ``closure(create_graph=...)`` evaluates the batch loss."""
        if closure is None:
            raise ValueError("NewtonCG needs a closure(create_graph=...) that back-propagates the loss")
        group = self.param_groups[0]
        lr, wd = group["lr"], group["weight_decay"]
        state = self.state[self._params[0]]
        damping = state.setdefault("damping", group["damping"])
        gauss_newton = group["curvature"] == "gauss_newton"
        if gauss_newton:
            self._probe.keep_output = True
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Using backward\(\) with create_graph=True")
            loss = closure(create_graph=True)
        samples = samples_of(closure, self._probe)
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self._params]
        with torch.no_grad():
            theta = self._flat([p.detach() for p in self._params])
            g = self._flat([gr.detach() for gr in grads]) + wd * theta
        if gauss_newton:
            self._probe.keep_output = False
            output, output_grad = self._probe.output, self._probe.output_grad
            if output is None or output_grad is None:
                raise RuntimeError("Gauss-Newton products need the loss to be computed from the "
                                   "model's output; use curvature='hessian' otherwise")
            with torch.enable_grad():
                u = torch.zeros_like(output, requires_grad=True)
                jtu = torch.autograd.grad(output, self._params, grad_outputs=u, create_graph=True,
                                          allow_unused=True)

        def apply(v):
            if self.oracle_guard is not None:
                self.oracle_guard(samples)
            self.oracle_counts["hvp"] += samples
            with torch.enable_grad():
                if gauss_newton:
                    bv = self.gauss_newton_product(jtu, u, output, output_grad, v)
                else:
                    bv = self.hessian_vector_product(grads, v)
            return bv.detach() + damping * v

        previous = state.get("direction")
        x0 = group["cg_warm_start"] * previous if previous is not None and group["cg_warm_start"] else None
        d, ad = self._cg(apply, -g, x0, group["max_cg_iters"], group["cg_tol"])
        del grads
        if gauss_newton:
            del jtu, u, output, output_grad
            self._probe.release()
        for p in self._params:
            if p.grad is not None:
                p.grad = p.grad.detach()
        state["direction"] = d
        with torch.no_grad():
            for p, dp in zip(self._params, self._split(d)):
                p.add_(dp, alpha=lr)
        if group["adapt_damping"]:
            model_decrease = lr * g.dot(d) + 0.5 * lr ** 2 * d.dot(ad)
            f_old = float(loss.detach()) + 0.5 * wd * float(theta.dot(theta))
            with torch.enable_grad():
                new_loss = closure()
            with torch.no_grad():
                new_theta = self._flat([p.detach() for p in self._params])
                f_new = float(new_loss.detach()) + 0.5 * wd * float(new_theta.dot(new_theta))
            rho = (f_new - f_old) / float(model_decrease) if model_decrease < 0 else float("nan")
            if not rho >= 0.25:
                damping = damping * 1.5
            elif rho > 0.75:
                damping = damping * (2.0 / 3.0)
            state["damping"] = min(max(damping, 1e-8), 1e8)
            state["rho"] = rho
            if not f_new <= f_old:
                with torch.no_grad():
                    for p, old in zip(self._params, self._split(theta)):
                        p.copy_(old)
                state.pop("direction")
        return loss.detach()


def _newton_cg(model, **hp):
    return NewtonCG(model.parameters(), model=model, **hp)


SPECS = [
    OptimizerSpec("newton_cg", "second_order", _newton_cg,
                  {"lr": 1.0, "damping": 1.0, "max_cg_iters": 10, "cg_tol": 0.1,
                   "cg_warm_start": 0.0, "adapt_damping": True, "curvature": "gauss_newton",
                   "weight_decay": 0.0},
                  {"lr": (0.1, 1.0, "log"), "damping": [0.1, 1.0, 10.0]},
                  "Hessian-free Newton-CG: Gauss-Newton products, truncated CG, "
                  "Levenberg-Marquardt damping (Martens 2010)",
                  batch_size=512),
]
