"""K-FAC: Kronecker-factored approximate curvature for Linear and Conv2d layers."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import Optimizer

from .registry import OptimizerSpec

FISHERS = ("sampled", "empirical")


class KFAC(Optimizer):
    r"""K-FAC (Martens & Grosse 2015) with KFC factors for convolutions (Grosse & Martens 2016).

    For a layer s = W ā (ā the input with a trailing 1 when there is a bias; for Conv2d ā is a
    kernel-sized patch at each of the T output locations), the Fisher block of [W, b] is
    approximated by A ⊗ G with running averages (``stat_decay`` ε, every ``factor_interval`` steps)

        A ← ε A + (1-ε) Σ_{n,t} ā ā^T / (B T),   G ← ε G + (1-ε) Σ_{n,t} Ds Ds^T / B,

    Ds = ∂ log-loss_n / ∂s per example and location (T = 1 for Linear; the first update sets A
    and G directly). ``fisher="sampled"`` draws targets from the model's predictive softmax and
    back-propagates them in an extra pass (the true Fisher, Martens & Grosse; the output must
    be the logits of a softmax cross-entropy; its cost goes to ``oracle_counts["grad"]``);
    ``"empirical"`` uses the training loss' own gradients. Every ``inverse_interval`` steps,
    with factored Tikhonov damping γ = damping + weight_decay and π = sqrt((tr A/dim A) /
    (tr G/dim G)) (``pi_correction``, else π = 1):

        Â⁻¹ = (A + π√γ I)⁻¹,   Ĝ⁻¹ = (G + √γ/π I)⁻¹,   V = Ĝ⁻¹ ∇_{[W,b]} Â⁻¹,

    ∇ including the L2 term weight_decay·θ. With ``kl_clip`` κ > 0 all V are scaled by
    ν = min(1, sqrt(κ / (lr² Σ V·∇))) (Ba et al. 2017). Then, as torch.optim.SGD,
    buf ← momentum·buf + V, θ ← θ - lr·buf. Parameters outside Linear/Conv2d layers take
    V = ∇. Hooks record only inside ``step`` and only while the layer is in training mode,
    never during evaluation.
    """

    def __init__(self, model: nn.Module, lr: float = 0.01, momentum: float = 0.9,
                 damping: float = 1e-2, stat_decay: float = 0.95, factor_interval: int = 10,
                 inverse_interval: int = 20, pi_correction: bool = True, kl_clip: float = 1e-3,
                 fisher: str = "sampled", weight_decay: float = 0.0):
        if not lr > 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not damping > 0:
            raise ValueError(f"Invalid damping value: {damping}")
        if not 0 <= stat_decay < 1:
            raise ValueError(f"Invalid stat_decay value: {stat_decay}")
        for name, value in (("factor_interval", factor_interval), ("inverse_interval", inverse_interval)):
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"Invalid {name} value: {value}")
        if not kl_clip >= 0:
            raise ValueError(f"Invalid kl_clip value: {kl_clip}")
        if fisher not in FISHERS:
            raise ValueError(f"Invalid fisher value: {fisher!r}; choose one of {FISHERS}")
        if not weight_decay >= 0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, momentum=momentum, damping=damping, stat_decay=stat_decay,
                        factor_interval=factor_interval, inverse_interval=inverse_interval,
                        pi_correction=pi_correction, kl_clip=kl_clip, fisher=fisher,
                        weight_decay=weight_decay)
        super().__init__([p for p in model.parameters() if p.requires_grad], defaults)
        if len(self.param_groups) != 1:
            raise ValueError("KFAC doesn't support per-parameter options (parameter groups)")
        self.model = model
        self.layers = [m for m in model.modules() if _supported(m) and m.weight.requires_grad]
        self.oracle_counts = {"grad": 0}
        self._recording = self._capturing = False
        self._inputs: tuple | None = None
        self._seen: dict = {}
        self._handles = [model.register_forward_pre_hook(self._capture_inputs, with_kwargs=True)]
        for layer in self.layers:
            self._handles.append(layer.register_forward_hook(self._record_layer))

    def _capture_inputs(self, module, args, kwargs):
        if self._capturing:
            self._inputs = (args, kwargs)

    def _record_layer(self, module, args, output):
        if not (self._recording and module.training):
            return
        entry = self._seen.setdefault(module, {})
        entry["a"], entry["s"] = args[0].detach(), output
        if self.param_groups[0]["fisher"] == "empirical":
            def keep(grad):
                entry["ds"] = grad.detach() * grad.shape[0]  # mean loss -> per-example gradients
            output.register_hook(keep)

    def _sampled_pass(self) -> None:
        """Forward the captured batch again; back-propagate targets drawn from the model."""
        args, kwargs = self._inputs
        with torch.enable_grad():
            self._recording = True
            try:
                logits = self.model(*args, **kwargs)
            finally:
                self._recording = False
            if not bool(torch.isfinite(logits).all()):
                self._seen = {}
                return
            targets = torch.multinomial(torch.softmax(logits.detach().float(), dim=1), 1).squeeze(1)
            loss = F.cross_entropy(logits, targets, reduction="sum")
            layers = [m for m in self.layers if m in self._seen]
            grads = torch.autograd.grad(loss, [self._seen[m]["s"] for m in layers], allow_unused=True)
        for layer, grad in zip(layers, grads):
            if grad is not None:
                self._seen[layer]["ds"] = grad.detach()
        self.oracle_counts["grad"] += int(logits.shape[0])

    def batch_factors(self, layer: nn.Module, a: torch.Tensor, ds: torch.Tensor):
        """This batch's A and G of ``layer`` from its inputs and per-example output gradients."""
        batch = a.shape[0]
        if isinstance(layer, nn.Conv2d):
            patches = F.unfold(a, layer.kernel_size, dilation=layer.dilation, padding=layer.padding,
                               stride=layer.stride)
            patches = patches.transpose(1, 2).reshape(-1, patches.shape[1])
            ds = ds.transpose(1, -1).reshape(-1, ds.shape[1])
        else:
            patches = a.reshape(-1, a.shape[-1])
            ds = ds.reshape(-1, ds.shape[-1])
        if layer.bias is not None:
            patches = torch.cat([patches, patches.new_ones(patches.shape[0], 1)], dim=1)
        return patches.T @ patches / patches.shape[0], ds.T @ ds / batch

    def _update_factors(self) -> None:
        decay = self.param_groups[0]["stat_decay"]
        for layer, entry in self._seen.items():
            if "ds" not in entry:
                continue
            a_batch, g_batch = self.batch_factors(layer, entry["a"], entry["ds"])
            state = self.state[layer.weight]
            if "A" not in state:
                state["A"], state["G"] = a_batch, g_batch
            else:
                state["A"].mul_(decay).add_(a_batch, alpha=1 - decay)
                state["G"].mul_(decay).add_(g_batch, alpha=1 - decay)
        self._seen = {}
        self._inputs = None

    def _update_inverses(self) -> None:
        group = self.param_groups[0]
        gamma = group["damping"] + group["weight_decay"]
        for layer in self.layers:
            state = self.state[layer.weight]
            if "A" not in state:
                continue
            a, g = state["A"].double(), state["G"].double()
            pi = 1.0
            if group["pi_correction"]:
                ta, tg = float(torch.trace(a)) / a.shape[0], float(torch.trace(g)) / g.shape[0]
                if ta > 0 and tg > 0:
                    pi = math.sqrt(ta / tg)
            root = math.sqrt(gamma)
            state["A_inv"] = _spd_inverse(a, pi * root).to(state["A"].dtype)
            state["G_inv"] = _spd_inverse(g, root / pi).to(state["G"].dtype)

    def step_cost(self, batch_size: int, n: int) -> int:
        """Sample gradients the next step costs: its batch, and on a step that updates the
        factors with the sampled Fisher, the extra pass over the same batch (so the engine does
        not start a step that its budget cannot pay for)."""
        group = self.param_groups[0]
        count = self.state[group["params"][0]].get("kfac_step", 0)
        sampled_pass = bool(self.layers) and group["fisher"] == "sampled" and count % group["factor_interval"] == 0
        return batch_size * (2 if sampled_pass else 1)

    @torch.no_grad()
    def step(self, closure):
        """One K-FAC step; ``closure()`` evaluates the batch loss and back-propagates it."""
        if closure is None:
            raise ValueError("KFAC needs a closure that back-propagates the loss")
        group = self.param_groups[0]
        lr, wd = group["lr"], group["weight_decay"]
        counter = self.state[group["params"][0]]
        count = counter.get("kfac_step", 0)
        update_factors = bool(self.layers) and count % group["factor_interval"] == 0
        sampled = group["fisher"] == "sampled"
        self._recording = update_factors and not sampled
        self._capturing = update_factors and sampled
        self._seen = {}
        try:
            with torch.enable_grad():
                loss = closure()
        finally:
            self._recording = self._capturing = False
        if update_factors:
            if sampled and self._inputs is not None:
                self._sampled_pass()
            self._update_factors()
        if count % group["inverse_interval"] == 0 or update_factors and count < group["inverse_interval"]:
            self._update_inverses()
        counter["kfac_step"] = count + 1

        updates, inner = {}, 0.0
        for p in group["params"]:
            if p.grad is not None:
                updates[p] = p.grad + wd * p if wd else p.grad.clone()
        for layer in self.layers:
            state = self.state[layer.weight]
            if "A_inv" not in state or layer.weight not in updates:
                continue
            grad = updates[layer.weight].reshape(layer.weight.shape[0], -1)
            has_bias = layer.bias is not None and layer.bias in updates
            if has_bias:
                grad = torch.cat([grad, updates[layer.bias].reshape(-1, 1)], dim=1)
            if grad.shape[1] != state["A_inv"].shape[0]:
                continue
            v = state["G_inv"] @ grad @ state["A_inv"]
            inner += float((v * grad).sum())
            if has_bias:
                updates[layer.bias] = v[:, -1].clone()
                v = v[:, :-1]
            updates[layer.weight] = v.reshape(layer.weight.shape)
        scale = 1.0
        if group["kl_clip"] > 0 and inner > 0:
            scale = min(1.0, math.sqrt(group["kl_clip"] / (lr ** 2 * inner)))
        preconditioned = {p for layer in self.layers for p in (layer.weight, layer.bias) if p is not None}
        for p, v in updates.items():
            if scale != 1.0 and p in preconditioned:
                v = v * scale
            state = self.state[p]
            if group["momentum"]:
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = v.clone()
                else:
                    buf.mul_(group["momentum"]).add_(v)
                v = buf
            p.add_(v, alpha=-lr)
        return loss

    def remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()


def _supported(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return (isinstance(module, nn.Conv2d) and module.groups == 1
            and module.padding_mode == "zeros" and isinstance(module.padding, tuple))


def _spd_inverse(matrix: torch.Tensor, shift: float) -> torch.Tensor:
    eye = torch.eye(matrix.shape[0], dtype=matrix.dtype, device=matrix.device)
    damped = matrix + shift * eye
    factor, info = torch.linalg.cholesky_ex(damped)
    if int(info) == 0:
        return torch.cholesky_inverse(factor)
    return torch.linalg.pinv(damped, hermitian=True)


def _kfac(model, **hp):
    return KFAC(model, **hp)


SPECS = [
    OptimizerSpec("kfac", "second_order", _kfac,
                  {"lr": 0.01, "momentum": 0.9, "damping": 1e-2, "stat_decay": 0.95,
                   "factor_interval": 10, "inverse_interval": 20, "pi_correction": True,
                   "kl_clip": 1e-3, "fisher": "sampled", "weight_decay": 0.0},
                  {"lr": (3e-3, 0.3, "log"), "damping": [1e-3, 1e-2, 1e-1]},
                  "K-FAC: Kronecker-factored natural gradient for Linear and Conv2d layers "
                  "(Martens & Grosse 2015; Grosse & Martens 2016)",
                  batch_size=128),
]
