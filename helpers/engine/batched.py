"""Train K LeNet-5 models at once: one batched forward/backward and one stacked update per step.

Contract: ``train_many(configs, data)`` returns, for each configuration, the records that
:func:`helpers.engine.train.train` gives for it alone (same columns, same evaluation, same counts),
up to floating-point rounding (the batched kernels sum in another order). Each model k is
seeded exactly as the single-model engine seeds it (``seed_everything(seed_k)``, then
``LeNet5()``, then its own batch order from that generator), so the models differ in seed,
hyperparameters (lr, weight decay, momentum, betas, ...) or both. ``wall_s`` is the model's
share of the shared training time (elapsed / K; evaluation excluded).

How: the K parameter sets live side by side in one ``[K, 44426]`` tensor (initialised via
``torch.func.stack_module_state``). The forward pass is what ``vmap(functional_call(...))``
lowers LeNet-5 to, written out so the layout is chosen for speed: grouped convolutions
(groups=K) over channels-last inputs, then batched matmuls; max-pooling before the ReLU
(the same values, and the same gradients except at exact ties; the ReLU then touches 4x fewer
entries). ``reference_logits`` is the literal vmap form (NCHW grouped convolutions, several
times slower per step in a CPU microbenchmark), used by the tests to check the two agree.
Gradients are taken with respect to per-layer copies of the stacked tensor, then concatenated.

The optimizers are torch.optim's updates written on the stacked tensor, each model with its
own hyperparameters as ``[K, 1]`` columns (g = gradient, wd = weight decay, t = step):
  sgd / heavy_ball / nesterov (torch.optim.SGD, dampening 0): g += wd p; b <- mu b + g;
    p -= lr (g + mu b if nesterov else b).
  adam / adamw / nadam / radam: torch.optim.Adam, AdamW, NAdam (momentum_decay 4e-3), RAdam
    (non-amsgrad), including their bias corrections and RAdam's rectification switch.
  sgd_schedulefree / adamw_schedulefree: helpers/optimizers/schedulefree.py (evaluated at x).
Sparse scenarios (``projection`` strategy) project each model after every step onto its k
largest |fc1+fc2| weights (ties to the lower index, as helpers.constraints.sparsity.topk_mask) and zero
the per-entry optimizer state there, as helpers.constraints.sparsity.SparsityHook does.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap
from tqdm.auto import tqdm

from .config import RunConfig
from ..problem.data import FashionMNIST, Split, batch_indices
from ..problem.model import CONSTRAINED_LAYERS, LeNet5
from ..optimizers import get_spec
from ..runtime import seed_everything
from ..constraints.scenarios import get_scenario
from .schedules import lr_factor
from ..constraints.sparsity import budget
from .train import EVAL_CHUNK, RECORD_COLUMNS, STARTER_BATCH, RunResult, _eval_points

MAX_SAMPLES_PER_STEP = 32_768
EVAL_SAMPLES = 8_192
CHANNELS_LAST = torch.channels_last

_SGD_KEYS = {"lr", "momentum", "nesterov", "weight_decay"}
_ADAM_KEYS = {"lr", "betas", "eps", "weight_decay"}
_SF_KEYS = {"lr", "weight_decay", "warmup_steps", "weight_lr_power"}
# optimizer name -> (update rule, hyperparameters it understands)
KINDS = {
    "sgd": ("sgd", _SGD_KEYS), "sgd_basic": ("sgd", _SGD_KEYS), "gd": ("sgd", _SGD_KEYS),
    "heavy_ball": ("sgd", _SGD_KEYS), "nesterov": ("sgd", _SGD_KEYS),
    "adam": ("adam", _ADAM_KEYS), "adamw": ("adamw", _ADAM_KEYS),
    "nadam": ("nadam", _ADAM_KEYS), "radam": ("radam", _ADAM_KEYS),
    "sgd_schedulefree": ("sgd_sf", _SF_KEYS | {"momentum"}),
    "adamw_schedulefree": ("adamw_sf", _SF_KEYS | {"betas", "eps"}),
}


# ---------------------------------------------------------------- compatibility

def _why_not_alone(config: RunConfig) -> str | None:
    spec = get_spec(config.optimizer)
    if not spec.elementwise or config.optimizer not in KINDS:
        return f"optimizer {config.optimizer!r} has no batched update (batched: {', '.join(KINDS)})"
    if spec.needs:
        return f"optimizer {config.optimizer!r} needs engine services {sorted(spec.needs)}"
    unknown = set(config.effective_hparams) - KINDS[config.optimizer][1]
    if unknown:
        return f"hyperparameter(s) {sorted(unknown)} of {config.optimizer!r} have no batched update"
    scenario = get_scenario(config.scenario)
    if scenario.sparse and (getattr(scenario, "structured", False) or config.sparsity_strategy != "projection"):
        return (f"scenario {config.scenario!r} with strategy {config.sparsity_strategy!r}: only "
                f"unstructured 'projection' sparsity is batched")
    if config.effective_batch_size == "full":
        return "full-batch runs are not batched (K copies of the training set per step)"
    return None


def _shared_settings(config: RunConfig) -> tuple:
    """What must be equal for models to share steps, batches' sizes, schedule and data."""
    return (KINDS.get(config.optimizer, (config.optimizer,))[0], config.scenario,
            config.sparsity_strategy, config.epochs, config.grad_budget, config.effective_batch_size,
            config.effective_batch_growth, config.schedule,
            json.dumps(config.schedule_params, sort_keys=True), config.scaling, config.train_fraction,
            config.eval_split, config.val_size if config.eval_split == "val" else None,
            config.evals_per_epoch)


_SHARED_NAMES = ("update rule", "scenario", "sparsity_strategy", "epochs", "grad_budget", "batch_size",
                 "batch_growth", "schedule", "schedule_params", "scaling", "train_fraction",
                 "eval_split", "val_size", "evals_per_epoch")


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


# ---------------------------------------------------------------- stacked parameters

def _layout() -> list[tuple[str, tuple[int, ...]]]:
    """Parameter names and shapes, fc1.weight and fc2.weight first (the constrained block)."""
    shapes = {n: tuple(p.shape) for n, p in LeNet5().to("meta").named_parameters()}
    first = [f"{layer}.weight" for layer in CONSTRAINED_LAYERS]
    return [(n, shapes[n]) for n in first] + [(n, s) for n, s in shapes.items() if n not in first]


LAYOUT = _layout()
N_CONSTRAINED = sum(math.prod(s) for n, s in LAYOUT[:len(CONSTRAINED_LAYERS)])
_OFFSETS = {}
_start = 0
for _name, _shape in LAYOUT:
    _OFFSETS[_name] = (_start, _start + math.prod(_shape), _shape)
    _start += math.prod(_shape)
N_PARAMS = _start


def stack_models(models: list[torch.nn.Module]) -> torch.Tensor:
    """``[K, N_PARAMS]``: the models' parameters in LAYOUT order (torch.func.stack_module_state)."""
    params, _ = stack_module_state(models)
    return torch.cat([params[n].detach().reshape(len(models), -1) for n, _ in LAYOUT], dim=1)


def unstack(flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Views/copies of ``flat`` ([K, N_PARAMS]) as a name -> ``[K, *shape]`` dict (autograd-tracked)."""
    k = flat.shape[0]
    return {n: flat[:, a:b].reshape(k, *shape) for n, (a, b, shape) in _OFFSETS.items()}


def to_model(row: torch.Tensor) -> LeNet5:
    model = LeNet5().to(row.device)
    with torch.no_grad():
        for n, p in model.named_parameters():
            a, b, shape = _OFFSETS[n]
            p.copy_(row[a:b].view(shape))
    return model


def forward(p: dict[str, torch.Tensor], x: torch.Tensor, shared: bool = False) -> torch.Tensor:
    """Logits ``[K, B, 10]`` of K models; ``x`` is ``[K, B, 1, 28, 28]`` (one batch per model)
    or, with ``shared``, ``[B, 1, 28, 28]`` seen by every model."""
    k = p["fc3.bias"].shape[0]
    w1 = p["conv1.weight"].reshape(k * 6, 1, 5, 5)
    if shared:
        b = x.shape[0]
        h = F.conv2d(x.contiguous(memory_format=CHANNELS_LAST), w1, p["conv1.bias"].reshape(-1))
    else:
        b = x.shape[1]
        h = x.reshape(k, b, 28, 28).transpose(0, 1).contiguous(memory_format=CHANNELS_LAST)
        h = F.conv2d(h, w1, p["conv1.bias"].reshape(-1), groups=k)
    h = F.max_pool2d(h, 2).relu()
    h = F.conv2d(h, p["conv2.weight"].reshape(k * 16, 6, 5, 5), p["conv2.bias"].reshape(-1), groups=k)
    h = F.max_pool2d(h, 2).relu()
    h = h.reshape(b, k, 256).transpose(0, 1)
    h = torch.baddbmm(p["fc1.bias"].unsqueeze(1), h, p["fc1.weight"].transpose(1, 2)).relu()
    h = torch.baddbmm(p["fc2.bias"].unsqueeze(1), h, p["fc2.weight"].transpose(1, 2)).relu()
    return torch.baddbmm(p["fc3.bias"].unsqueeze(1), h, p["fc3.weight"].transpose(1, 2))


def reference_logits(flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The same logits by ``vmap(functional_call(LeNet5))`` (slower; for checking ``forward``)."""
    base = LeNet5().to("meta")
    return vmap(lambda params, xx: functional_call(base, params, (xx,)))(unstack(flat), x)


def per_model_loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each model on its own batch: ``[K]``."""
    logits = forward(p, x)
    k, b = y.shape
    return F.cross_entropy(logits.reshape(k * b, 10), y.reshape(-1), reduction="none").view(k, b).mean(1)


def losses_and_grad(flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor, loss_fn=per_model_loss
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each model's batch loss ``[K]`` and its gradient laid out like ``flat`` ``[K, N_PARAMS]``.

    The parameters enter as contiguous per-layer leaves (copies of ``flat``): differentiating
    through slices of ``flat`` would zero-fill a full ``[K, N_PARAMS]`` gradient per layer.
    """
    k = flat.shape[0]
    leaves = {n: t.detach().clone().requires_grad_(True) for n, t in unstack(flat).items()}
    losses = loss_fn(leaves, x, y)
    grads = torch.autograd.grad(losses.sum(), list(leaves.values()))
    return losses.detach(), torch.cat([g.reshape(k, -1) for g in grads], dim=1)


@torch.no_grad()
def evaluate_many(flat: torch.Tensor, split: Split) -> list[dict]:
    """:func:`helpers.engine.train.evaluate` for each of the K models in ``flat``."""
    k = flat.shape[0]
    p = unstack(flat)
    chunk = max(STARTER_BATCH, min(EVAL_CHUNK, EVAL_SAMPLES // k))
    losses, correct = [], torch.zeros(k, dtype=torch.long, device=flat.device)
    for start in range(0, len(split), chunk):
        logits = forward(p, split.x[start:start + chunk], shared=True)
        target = split.y[start:start + chunk]
        n = len(target)
        losses.append(F.cross_entropy(logits.reshape(k * n, 10), target.repeat(k),
                                      reduction="none").view(k, n))
        correct += (logits.argmax(2) == target).sum(1)
    per_sample = torch.cat(losses, dim=1).double()
    starter = sum(c.mean(1) for c in per_sample.split(STARTER_BATCH, dim=1)) / len(split)
    mean = per_sample.mean(1)
    return [{"loss": float(mean[i]), "starter_loss": float(starter[i]),
             "acc": 100.0 * int(correct[i]) / len(split)} for i in range(k)]


# ---------------------------------------------------------------- stacked updates

def _column(values, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor([float(v) for v in values], dtype=torch.float64).to(like).view(-1, 1)


class _Update:
    """A torch.optim update applied to all K rows at once; ``states`` are the per-entry tensors."""

    def __init__(self, hparams: list[dict], flat: torch.Tensor):
        self.hp = hparams
        self.k = len(hparams)
        self.t = 0
        self.states: list[torch.Tensor] = []
        self.wd = _column([h.get("weight_decay", 0.0) for h in hparams], flat)
        self.decay = any(h.get("weight_decay", 0.0) for h in hparams)

    def col(self, values) -> torch.Tensor:
        return _column(values, self.wd)

    def evaluation_weights(self, p: torch.Tensor) -> torch.Tensor:
        return p

    def kill(self, i: int) -> None:
        for s in self.states:
            s[i].zero_()


class _SGD(_Update):
    def __init__(self, hparams, flat):
        super().__init__(hparams, flat)
        self.mu = self.col([h.get("momentum", 0.0) for h in hparams])
        self.nesterov = self.col([bool(h.get("nesterov", False)) for h in hparams]).bool()
        self.momentum = any(h.get("momentum", 0.0) for h in hparams)
        if self.momentum:
            self.buf = torch.zeros_like(flat)
            self.states = [self.buf]

    def step(self, p, g, lr):
        if self.decay:
            g = g + p * self.wd
        if self.momentum:
            self.buf.mul_(self.mu).add_(g)
            g = torch.where(self.nesterov, g + self.mu * self.buf, self.buf)
        p.sub_(lr * g)


class _Adam(_Update):
    """Adam, AdamW (``decoupled``), NAdam and RAdam (``variant``)."""

    def __init__(self, hparams, flat, variant: str = "adam", decoupled: bool = False):
        super().__init__(hparams, flat)
        self.variant, self.decoupled = variant, decoupled
        self.b1 = [h["betas"][0] for h in hparams]
        self.b2 = [h["betas"][1] for h in hparams]
        self.one_minus_b1 = self.col([1 - b for b in self.b1])
        self.b2_col = self.col(self.b2)
        self.one_minus_b2 = self.col([1 - b for b in self.b2])
        self.eps = self.col([h["eps"] for h in hparams])
        self.m, self.v = torch.zeros_like(flat), torch.zeros_like(flat)
        self.states = [self.m, self.v]
        self.mu_product = [1.0] * self.k

    def step(self, p, g, lr):
        self.t += 1
        t = self.t
        if self.decay:
            if self.decoupled:
                p.mul_(1 - lr * self.wd)
            else:
                g = g + p * self.wd
        self.m.lerp_(g, self.one_minus_b1)
        self.v.mul_(self.b2_col).addcmul_(g, g * self.one_minus_b2)
        bc1 = [1 - b ** t for b in self.b1]
        bc2 = [1 - b ** t for b in self.b2]
        if self.variant == "adam":
            denom = self.v.sqrt() / self.col([math.sqrt(b) for b in bc2]) + self.eps
            p.sub_(lr / self.col(bc1) * self.m / denom)
        elif self.variant == "nadam":
            mu = [b * (1 - 0.5 * 0.96 ** (t * 4e-3)) for b in self.b1]
            mu_next = [b * (1 - 0.5 * 0.96 ** ((t + 1) * 4e-3)) for b in self.b1]
            self.mu_product = [a * b for a, b in zip(self.mu_product, mu)]
            denom = (self.v / self.col(bc2)).sqrt() + self.eps
            p.sub_(lr * self.col([(1 - a) / (1 - b) for a, b in zip(mu, self.mu_product)]) * g / denom)
            p.sub_(lr * self.col([a / (1 - b * a) for a, b in zip(mu_next, self.mu_product)])
                   * self.m / denom)
        else:  # radam
            rho_inf = [2 / (1 - b) - 1 for b in self.b2]
            rho = [ri - 2 * t * b ** t / c for ri, b, c in zip(rho_inf, self.b2, bc2)]
            rect = [math.sqrt((r - 4) * (r - 2) * ri / ((ri - 4) * (ri - 2) * r)) if r > 5 else 0.0
                    for r, ri in zip(rho, rho_inf)]
            adaptive = self.col([math.sqrt(c) for c in bc2]) / (self.v.sqrt() + self.eps)
            on = self.col([r > 5 for r in rho]).bool()
            factor = torch.where(on, adaptive * self.col(rect), torch.ones_like(adaptive))
            p.sub_(self.m / self.col(bc1) * lr * factor)


class _ScheduleFree(_Update):
    """Schedule-free SGD / AdamW as helpers/optimizers/schedulefree.py (z, x, and y in p)."""

    def __init__(self, hparams, flat, adam: bool):
        super().__init__(hparams, flat)
        self.adam = adam
        self.beta = self.col([h["betas"][0] if adam else h["momentum"] for h in hparams])
        self.z, self.x = flat.detach().clone(), flat.detach().clone()
        self.states = [self.z, self.x]
        if adam:
            self.b2 = [h["betas"][1] for h in hparams]
            self.b2_col, self.one_minus_b2 = self.col(self.b2), self.col([1 - b for b in self.b2])
            self.eps = self.col([h["eps"] for h in hparams])
            self.v = torch.zeros_like(flat)
            self.states.append(self.v)
        self.lr_max = [0.0] * self.k
        self.weight_sum = [0.0] * self.k

    def start(self, p):
        self.z.copy_(p)
        self.x.copy_(p)

    def step(self, p, g, lr_values: list[float]):
        k = self.t
        gammas, cs = [], []
        for i, h in enumerate(self.hp):
            warm = (k + 1) / h["warmup_steps"] if k < h["warmup_steps"] else 1.0
            extra = math.sqrt(1 - self.b2[i] ** (k + 1)) if self.adam else 1.0
            gamma = lr_values[i] * warm * extra
            self.lr_max[i] = max(self.lr_max[i], gamma)
            weight = self.lr_max[i] ** h["weight_lr_power"]
            self.weight_sum[i] += weight
            gammas.append(gamma)
            cs.append(weight / self.weight_sum[i] if self.weight_sum[i] > 0 else 1.0)
        self.t = k + 1
        gamma, c = self.col(gammas), self.col(cs)
        if self.adam:
            self.v.mul_(self.b2_col).addcmul_(g, g * self.one_minus_b2)
            if self.decay:
                self.z.sub_(gamma * self.wd * p)
            self.z.sub_(gamma * g / (self.v.sqrt() + self.eps))
        else:
            if self.decay:
                g = g + p * self.wd
            self.z.sub_(gamma * g)
        self.x.lerp_(self.z, c)
        p.copy_(torch.lerp(self.z, self.x, self.beta))

    def evaluation_weights(self, p):
        return self.x if self.t > 0 else p


def _make_update(kind: str, hparams: list[dict], flat: torch.Tensor) -> _Update:
    if kind == "sgd":
        return _SGD(hparams, flat)
    if kind in ("adam", "adamw", "nadam", "radam"):
        return _Adam(hparams, flat, variant="adam" if kind == "adamw" else kind,
                     decoupled=kind == "adamw")
    return _ScheduleFree(hparams, flat, adam=kind == "adamw_sf")


# ---------------------------------------------------------------- sparsity

def topk_rows(flat: torch.Tensor, k: int) -> torch.Tensor:
    """Per row, the mask of the k largest |entries| (NaN largest; ties to the lower index)."""
    n = flat.shape[1]
    if k >= n:
        return torch.ones_like(flat, dtype=torch.bool)
    magnitude = torch.nan_to_num(flat.abs(), nan=math.inf)
    threshold = torch.kthvalue(magnitude, n - k + 1, dim=1, keepdim=True).values
    above = magnitude > threshold
    tied = magnitude == threshold
    room = k - above.sum(1, keepdim=True)
    return above | (tied & (torch.cumsum(tied, 1) <= room))


class _Projection:
    def __init__(self, density: float):
        self.k = budget(N_CONSTRAINED, density)

    @torch.no_grad()
    def __call__(self, p: torch.Tensor, states: list[torch.Tensor]) -> None:
        off = ~topk_rows(p[:, :N_CONSTRAINED], self.k)
        for t in [p, *states]:
            t[:, :N_CONSTRAINED].masked_fill_(off, 0)

    def restrict(self, weights: torch.Tensor) -> torch.Tensor:
        """Evaluation weights restricted to k nonzeros (as SparsityHook's evaluation wrapper)."""
        out = weights.clone()
        out[:, :N_CONSTRAINED].masked_fill_(~topk_rows(out[:, :N_CONSTRAINED], self.k), 0)
        return out


# ---------------------------------------------------------------- the engine

@dataclass
class _Model:
    config: RunConfig
    generator: torch.Generator
    records: list
    alive: bool = True
    snapshot: torch.Tensor | None = None


def train_many(configs, data: FashionMNIST, progress: bool = True, compile: bool = False
               ) -> list[RunResult]:
    """Train every configuration in one batched run; see the module docstring.

    Raises ValueError naming the difference if the configurations cannot share a run
    (:func:`why_not_batch`). ``compile`` wraps the loss in ``torch.compile``.
    """
    configs = list(configs)
    reason = why_not_batch(configs)
    if reason:
        raise ValueError(f"these configurations cannot train as one batch: {reason}")
    first = configs[0]
    eval_split = data.test if first.eval_split == "test" else data.val
    if eval_split is None:
        raise ValueError("eval_split='val' needs data loaded with val_size > 0")
    device = data.device
    models, nets = [], []
    for c in configs:
        generator = seed_everything(c.seed)
        nets.append(LeNet5())
        models.append(_Model(c, generator, []))
    flat = stack_models(nets).to(device)
    k_models = len(configs)
    hparams = [c.effective_hparams for c in configs]
    base_lr = [h["lr"] for h in hparams]
    update = _make_update(KINDS[first.optimizer][0], hparams, flat)
    scenario = get_scenario(first.scenario)
    project = _Projection(scenario.density) if scenario.sparse else None
    if project is not None:
        project(flat, [])
    if isinstance(update, _ScheduleFree):
        update.start(flat)
    loss_fn = torch.compile(per_model_loss) if compile else per_model_loss

    train_split, n = data.train, len(data.train)
    sizes = first.epoch_batch_sizes(n)
    total_steps = sum(math.ceil(n / b) for b in sizes)
    alive = torch.ones(k_models, 1, dtype=flat.dtype, device=device)
    grad_evals, step, wall, stop = 0, 0, 0.0, False
    loss_sum = torch.zeros(k_models, dtype=torch.float64, device=device)
    loss_count = 0
    bar = tqdm(total=total_steps, desc=f"{k_models} models", file=sys.stderr, disable=not progress,
               leave=False, mininterval=1.0)
    for epoch in range(first.epochs):
        t0 = time.perf_counter()
        orders = [batch_indices(n, sizes[epoch], m.generator) for m in models]
        eval_points = _eval_points(len(orders[0]), first.evals_per_epoch)
        for position in range(len(orders[0])):
            index = torch.stack([o[position] for o in orders]).to(device)
            x, y = train_split.x[index], train_split.y[index]
            factor = lr_factor(first.schedule, step / total_steps, **first.schedule_params)
            lr_values = [lr * factor for lr in base_lr]
            losses, grad = losses_and_grad(flat, x, y, loss_fn)
            grad_evals += y.shape[1]
            with torch.no_grad():
                if isinstance(update, _ScheduleFree):
                    update.step(flat, grad * alive, [v if m.alive else 0.0 for v, m in zip(lr_values, models)])
                else:
                    update.step(flat, grad, _column(lr_values, flat) * alive)
                if project is not None:
                    project(flat, update.states)
            step += 1
            loss_sum += losses.double()
            loss_count += 1
            bar.update(1)
            last_in_epoch = position == len(orders[0]) - 1
            if position + 1 in eval_points or last_in_epoch:
                over_budget = first.grad_budget is not None and grad_evals >= first.grad_budget
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                wall += time.perf_counter() - t0
                train_loss = (loss_sum / max(loss_count, 1)).tolist()
                _record_all(models, flat, update, project, eval_split, first.eval_split,
                            epoch + (position + 1) / len(orders[0]), step, train_loss,
                            wall / k_models, grad_evals, lr_values, alive)
                loss_sum.zero_()
                loss_count = 0
                t0 = time.perf_counter()
                if over_budget or not any(m.alive for m in models):
                    stop = True
                    break
        if stop:
            break
    bar.close()
    results = []
    for i, m in enumerate(models):
        row = m.snapshot if m.snapshot is not None else flat[i].detach()
        results.append(RunResult(m.config, m.records, to_model(row), not m.alive))
    return results


@torch.no_grad()
def _record_all(models, flat, update, project, split, split_name, epoch, step, train_loss, wall,
                grad_evals, lr_values, alive) -> None:
    p = flat.detach()
    finite = torch.isfinite(p).all(1).tolist()
    evaluated = update.evaluation_weights(p)
    if project is not None and evaluated is not p:
        evaluated = project.restrict(evaluated)
    nonzero = torch.count_nonzero(evaluated[:, :N_CONSTRAINED], dim=1).tolist()
    live = [i for i, m in enumerate(models) if m.alive]
    healthy = [i for i in live if math.isfinite(train_loss[i]) and finite[i]]
    metrics = dict(zip(healthy, evaluate_many(evaluated[healthy], split))) if healthy else {}
    for i in live:
        m = models[i]
        diverged = i not in metrics
        row = {"epoch": round(epoch, 6), "step": step, "train_loss": train_loss[i],
               "test_loss": math.nan, "test_starter_loss": math.nan, "test_acc": math.nan,
               "val_loss": math.nan, "val_acc": math.nan, "wall_s": wall, "grad_evals": grad_evals,
               "hvp_evals": 0, "oracle_evals": grad_evals, "lr": lr_values[i],
               "density": nonzero[i] / N_CONSTRAINED, "diverged": diverged}
        if not diverged:
            got = metrics[i]
            if split_name == "test":
                row.update(test_loss=got["loss"], test_starter_loss=got["starter_loss"], test_acc=got["acc"])
            else:
                row.update(val_loss=got["loss"], val_acc=got["acc"])
        else:  # stop this model; keep its weights, let it idle at zero (cheap, finite)
            m.alive = False
            m.snapshot = p[i].clone()
            flat[i].zero_()
            update.kill(i)
            alive[i] = 0
        m.records.append({c: row[c] for c in RECORD_COLUMNS})


# ---------------------------------------------------------------- the sweep layer

def compute_batch(configs, device: str | None = None, progress: bool = False) -> list[tuple]:
    """Train one batchable group; return ``(config, records, meta)`` per configuration, the
    metadata built as :func:`helpers.study.records.run_and_record` builds it, plus ``batched``."""
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
            out.append((config, [], failed_meta(meta, exc)))
            continue
        out.append((config, result.records, finished_meta(meta, result)))
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
        for config, records, meta in rows:
            write_run(config, records, meta, root)
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
