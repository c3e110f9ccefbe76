"""K LeNet-5 models as one ``[K, N_PARAMS]`` tensor: layout, batched forward, gradients, evaluation.

The forward pass is what ``vmap(functional_call(LeNet5))`` lowers to, written out so the
layout is chosen for speed: grouped convolutions (groups=K) over channels-last inputs, then
batched matmuls; max-pooling before the ReLU (the same values; the same gradients except at
exact ties; the ReLU then touches 4x fewer entries). On a CPU the slowest of these layers are
replaced by faster ones computing the same function (:func:`features`). :func:`reference_logits`
is the literal vmap form, for the tests. Rows follow :data:`LAYOUT`: fc1.weight and fc2.weight
first (the constrained block, ``[:, :N_CONSTRAINED]``), then the other parameters in module order.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from ..problem.data import Split
from ..problem.model import CONSTRAINED_LAYERS, LeNet5
from . import native, one_model_cpu, unfolded_convs

STARTER_BATCH = 64
# Evaluation chunks (images per model, and in all over the K models): on a CPU a chunk's
# activations must stay in cache (K = 7 on the 2-core CPU: 128 images per model evaluated 2.6x
# faster than 1,170; K = 1: 256 images 1.8x faster than 2,000; the same results bit for bit);
# on a GPU, large chunks.
EVAL_CHUNK = {"cpu": 256, "cuda": 2_000}
EVAL_SAMPLES = {"cpu": 1_024, "cuda": 8_192}
EVAL_MIN_CHUNK = 16
MAX_SAMPLES_PER_STEP = 32_768
CACHE_MODELS, CACHE_CHUNK = 32, 32  # from K = 32 models on, forward/backward 32 samples per model at a time
CHANNELS_LAST = torch.channels_last


def _layout() -> list[tuple[str, tuple[int, ...]]]:
    shapes = {n: tuple(p.shape) for n, p in LeNet5().to("meta").named_parameters()}
    first = [f"{layer}.weight" for layer in CONSTRAINED_LAYERS]
    return [(n, shapes[n]) for n in first] + [(n, s) for n, s in shapes.items() if n not in first]


LAYOUT = _layout()
N_CONSTRAINED = sum(math.prod(s) for n, s in LAYOUT[:len(CONSTRAINED_LAYERS)])
OFFSETS: dict[str, tuple[int, int, tuple]] = {}
_start = 0
for _name, _shape in LAYOUT:
    OFFSETS[_name] = (_start, _start + math.prod(_shape), _shape)
    _start += math.prod(_shape)
N_PARAMS = _start


def stack_models(models: list[torch.nn.Module]) -> torch.Tensor:
    """``[K, N_PARAMS]``: the models' parameters in LAYOUT order (torch.func.stack_module_state)."""
    params, _ = stack_module_state(models)
    return torch.cat([params[n].detach().reshape(len(models), -1) for n, _ in LAYOUT], dim=1)


def unstack(flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Views of ``flat`` ([K, N_PARAMS]) as a name -> ``[K, *shape]`` dict (autograd-tracked)."""
    k = flat.shape[0]
    return {n: flat[:, a:b].reshape(k, *shape) for n, (a, b, shape) in OFFSETS.items()}


def to_model(row: torch.Tensor) -> LeNet5:
    model = LeNet5().to(device=row.device, dtype=row.dtype)
    with torch.no_grad():
        for n, p in model.named_parameters():
            a, b, shape = OFFSETS[n]
            p.copy_(row[a:b].view(shape))
    return model


def constrained_views(row: torch.Tensor) -> list[torch.Tensor]:
    """fc1.weight and fc2.weight of one row, as views shaped like the module's."""
    return [row[a:b].view(shape) for a, b, shape in (OFFSETS[f"{n}.weight"] for n in CONSTRAINED_LAYERS)]


def features(p: dict[str, torch.Tensor], x: torch.Tensor, shared: bool = False, fast: bool = True) -> torch.Tensor:
    """conv1, pool, ReLU, conv2, pool, ReLU of K models, flattened as fc1 reads them: ``[K, B, 256]``.

    ``fast=False``: grouped convolutions everywhere (the reference the faster CPU layers are
    checked against). On a CPU, float32 where built: the compiled kernels of
    :mod:`~helpers.engine.native`; otherwise one model takes the layers of
    :mod:`~helpers.engine.one_model_cpu`. On CUDA, ``FMNIST_GPU_CONV`` other than ``grouped``
    picks the unfolded matmuls or Triton kernels of :func:`helpers.engine.unfolded_convs.features`."""
    k = p["fc3.bias"].shape[0]
    b = x.shape[0] if shared else x.shape[1]
    cpu = fast and x.device.type == "cpu"
    gpu_path = unfolded_convs.choice() if fast and x.device.type == "cuda" else "grouped"
    if gpu_path != "grouped":
        return unfolded_convs.features(p, x, shared, gpu_path)
    if cpu and native.applies(x):
        h = native.Conv1PoolReLU.apply(x, p["conv1.weight"], p["conv1.bias"], shared)
        return native.Conv2PoolReLU.apply(h, p["conv2.weight"], p["conv2.bias"])
    if cpu and k == 1:
        h = one_model_cpu.Conv1PoolReLU.apply(x, p["conv1.weight"].reshape(6, 5, 5), p["conv1.bias"].reshape(6))
        h = one_model_cpu.Conv2d.apply(h, p["conv2.weight"].reshape(16, 6, 5, 5), p["conv2.bias"].reshape(16))
    else:
        w1 = p["conv1.weight"].reshape(k * 6, 1, 5, 5)
        if shared:
            h = F.conv2d(x.contiguous(memory_format=CHANNELS_LAST), w1, p["conv1.bias"].reshape(-1))
        else:
            h = x.reshape(k, b, 28, 28).transpose(0, 1).contiguous(memory_format=CHANNELS_LAST)
            h = F.conv2d(h, w1, p["conv1.bias"].reshape(-1), groups=k)
        h = F.max_pool2d(h.contiguous(memory_format=CHANNELS_LAST), 2).relu()
        h = F.conv2d(h, p["conv2.weight"].reshape(k * 16, 6, 5, 5), p["conv2.bias"].reshape(-1), groups=k)
    return F.max_pool2d(h, 2).relu().reshape(b, k, 256).transpose(0, 1)


def forward(p: dict[str, torch.Tensor], x: torch.Tensor, shared: bool = False) -> torch.Tensor:
    """Logits ``[K, B, 10]`` of K models; ``x`` is ``[K, B, 1, 28, 28]`` (one batch per model)
    or, with ``shared``, ``[B, 1, 28, 28]`` seen by every model."""
    h = features(p, x, shared)
    h = torch.baddbmm(p["fc1.bias"].unsqueeze(1), h, p["fc1.weight"].transpose(1, 2)).relu()
    h = torch.baddbmm(p["fc2.bias"].unsqueeze(1), h, p["fc2.weight"].transpose(1, 2)).relu()
    return torch.baddbmm(p["fc3.bias"].unsqueeze(1), h, p["fc3.weight"].transpose(1, 2))


def reference_logits(flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The same logits by ``vmap(functional_call(LeNet5))`` (slower; for checking ``forward``)."""
    base = LeNet5().to("meta")
    return vmap(lambda params, xx: functional_call(base, params, (xx,)))(unstack(flat), x)


def per_model_loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                   shared: bool = False) -> torch.Tensor:
    """Summed cross-entropy of each model on its batch (``y``: ``[K, B]``, or ``[B]`` if shared): ``[K]``."""
    logits = forward(p, x, shared=shared)
    k, b = logits.shape[:2]
    target = y.repeat(k) if shared else y.reshape(-1)
    return F.cross_entropy(logits.reshape(k * b, 10), target, reduction="none").view(k, b).sum(1)


def losses_and_grad(flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor, shared: bool = False,
                    loss_fn=per_model_loss) -> tuple[torch.Tensor, torch.Tensor]:
    """Each model's mean batch loss ``[K]`` and its gradient laid out like ``flat`` ``[K, N_PARAMS]``.

    Batches of more than MAX_SAMPLES_PER_STEP samples (over all K) are summed chunk by chunk; so
    are batches of more than CACHE_CHUNK samples per model from CACHE_MODELS models on, on a CPU
    (the activations of 32 x 64 samples outgrow its cache: at K = 32 two chunks of 32 samples
    trained faster than one of 64 on the 2-core CPU, in every round measured; at K = 4 to 16 the
    gain was not consistent, at K = 1 chunks were slower).
    The parameters enter as contiguous per-layer leaves (copies of ``flat``): differentiating
    through slices of ``flat`` would zero-fill a full ``[K, N_PARAMS]`` gradient per layer.
    """
    k = flat.shape[0]
    b = y.shape[-1]
    leaves = {n: t.detach().clone().requires_grad_(True) for n, t in unstack(flat).items()}
    chunk = max(1, MAX_SAMPLES_PER_STEP // k)
    if k >= CACHE_MODELS and not shared and flat.device.type == "cpu":
        chunk = min(chunk, CACHE_CHUNK)
    total, grads = None, None
    for start in range(0, b, chunk):
        xs = x[start:start + chunk] if shared else x[:, start:start + chunk]
        ys = y[start:start + chunk] if shared else y[:, start:start + chunk]
        losses = loss_fn(leaves, xs, ys, shared=shared) if shared else loss_fn(leaves, xs, ys)
        g = torch.autograd.grad(losses.sum() / b, list(leaves.values()))
        total = losses.detach() if total is None else total + losses.detach()
        grads = g if grads is None else [a + c for a, c in zip(grads, g)]
    return total / b, torch.cat([g.reshape(k, -1) for g in grads], dim=1)


def full_gradient(flat: torch.Tensor, split: Split) -> torch.Tensor:
    """The mean gradient over all of ``split`` at each row of ``flat`` (every model sees every sample)."""
    return losses_and_grad(flat, split.x, split.y, shared=True)[1]


def starter_loss(per_sample: torch.Tensor) -> torch.Tensor:
    """The starter's "Average loss": sum of batch-64 mean losses / N (last dim: samples)."""
    n = per_sample.shape[-1]
    return sum(c.mean(-1) for c in per_sample.split(STARTER_BATCH, dim=-1)) / n


def eval_chunk(k: int, device: torch.device | str) -> int:
    """Images per model in one evaluation chunk of K models on ``device``."""
    kind = "cuda" if torch.device(device).type == "cuda" else "cpu"
    return max(EVAL_MIN_CHUNK, min(EVAL_CHUNK[kind], EVAL_SAMPLES[kind] // k))


@torch.no_grad()
def evaluate_many(flat: torch.Tensor, split: Split, per_sample: bool = False) -> list[dict]:
    """For each of the K models in ``flat``: mean cross-entropy per sample, the starter's
    batch-64 "Average loss", accuracy (%) and, with ``per_sample``, ``{"pred": uint8[n],
    "loss": float32[n]}`` under ``"predictions"``."""
    k = flat.shape[0]
    p = unstack(flat)
    chunk = eval_chunk(k, flat.device)
    losses, preds = [], []
    for start in range(0, len(split), chunk):
        logits = forward(p, split.x[start:start + chunk], shared=True)
        target = split.y[start:start + chunk]
        n = len(target)
        losses.append(F.cross_entropy(logits.reshape(k * n, 10), target.repeat(k),
                                      reduction="none").view(k, n))
        preds.append(logits.argmax(2))
    per = torch.cat(losses, dim=1).double()
    pred = torch.cat(preds, dim=1)
    correct = (pred == split.y).sum(1)
    starter, mean = starter_loss(per), per.mean(1)
    out = []
    for i in range(k):
        row = {"loss": float(mean[i]), "starter_loss": float(starter[i]),
               "acc": 100.0 * int(correct[i]) / len(split)}
        if per_sample:
            row["predictions"] = {"pred": pred[i].to(torch.uint8).cpu().numpy(),
                                  "loss": per[i].float().cpu().numpy()}
        out.append(row)
    return out
