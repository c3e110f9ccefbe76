"""Variance of gradient estimators at the same iterates: SGD against SVRG, SARAH, SAGA, momentum.

One trajectory is run (any registered optimizer, engine hooks included) on a subset S of
``n_samples`` training images, split once into n_b equal fixed batches of size b that are
visited in a fresh random order each epoch. At every iterate w_k *all* batch gradients
G_k[j] = g_j(w_k) are computed (one pass over S per step), so each expectation over the batch
drawn (uniform over the n_b batches) is an exact mean, not a sample. With the full gradient
on S, F_k = mean_j G_k[j], and s the last snapshot (each epoch start, or every
``snapshot_every`` steps), the mean squared error E||v - F_k||^2 of each estimator v is:

- ``sgd``: E||G_k[j] - F_k||^2.
- ``svrg``: E||G_k[j] - G_s[j] - (F_k - F_s)||^2 (Johnson & Zhang 2013).
- ``sarah``: sum over i = s+1..k of E||G_i[j] - G_{i-1}[j] - (F_i - F_{i-1})||^2, with batches
  drawn independently per step (the increments are then uncorrelated; Nguyen et al. 2017,
  Lemma 2); 0 at the snapshot, where v_s = F_s.
- ``saga``: E||G_k[j] - T[j] - (F_k - mean T)||^2 with T[j] the gradient of batch j at its
  last visit along the trajectory; reported once every batch has been visited.
- ``momentum``: the heavy-ball direction normalised, d_k = beta d_{k-1} + (1 - beta) g_{j_k}(w_k)
  (d_0 = g_{j_0}(w_0)), what the averaging methods step along; its error has a bias part
  ||E d_k - F_k||^2 and a variance part sum beta^(2(k-i)) (1 - beta)^2 Var_sgd(w_i).
- ``sgd_b<B>`` for each B in ``larger_batches``: the mini-batch variance at batch B derived
  from the batch-b one for sampling without replacement,
  var_B = var_b * b (n - B) / (B (n - b)) (what growing batches buy).

Rows: trajectory step and epoch, estimator, ``mse``, ``grad_sq`` = ||F_k||^2,
``relative`` = mse / grad_sq, ``loss`` (mean cross-entropy on S at w_k).
"""
from __future__ import annotations

import math

import pandas as pd
import torch
import torch.nn.functional as F

from ..problem.data import Split
from ..problem.model import LeNet5
from ..optimizers import build_optimizer

ESTIMATORS = ("sgd", "svrg", "sarah", "saga", "momentum")


def _flat_grads(model) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), device=p.device)
                      for p in model.parameters()])


def batch_gradients(model, xs: torch.Tensor, ys: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(n_b x d) matrix of the mean gradients of each batch xs[j], ys[j]; and the mean loss."""
    rows, total = [], 0.0
    for xb, yb in zip(xs, ys):
        model.zero_grad(set_to_none=False)
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        rows.append(_flat_grads(model).clone())
        total += float(loss.detach())
    model.zero_grad(set_to_none=False)
    return torch.stack(rows), total / len(xs)


def _mean_sq(deviations: torch.Tensor) -> float:
    return float(deviations.double().pow(2).sum(1).mean())


def estimator_variance(split: Split, optimizer: str = "sgd", hparams: dict | None = None,
                       n_samples: int = 1024, batch_size: int = 64, epochs: int = 3,
                       snapshot_every: int | None = None, beta: float = 0.9,
                       larger_batches=(), seed: int = 0, model: torch.nn.Module | None = None,
                       every: int = 1) -> pd.DataFrame:
    """Exact estimator errors at every ``every``-th iterate of one trajectory (see module doc).

    ``split``: the images to draw S from (the first ``n_samples`` of a seeded permutation,
    rounded down to whole batches). ``model``: the starting weights (copied; default a fresh
    LeNet-5 seeded by ``seed``), e.g. a model trained for a while, to measure near a solution.
    """
    if batch_size < 1 or n_samples < 2 * batch_size:
        raise ValueError(f"need at least two batches: n_samples={n_samples}, batch_size={batch_size}")
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    device = split.x.device
    n_b = min(n_samples, len(split)) // batch_size
    n = n_b * batch_size
    index = torch.randperm(len(split), generator=generator)[:n].to(device)
    xs = split.x[index].reshape(n_b, batch_size, *split.x.shape[1:])
    ys = split.y[index].reshape(n_b, batch_size)
    net = LeNet5().to(device)
    if model is not None:
        net.load_state_dict(model.state_dict())
    opt = build_optimizer(optimizer, net, **(hparams or {}))
    period = snapshot_every or n_b

    def full_closure(create_graph=False):
        net.zero_grad(set_to_none=False)
        total = 0.0
        for xb, yb in zip(xs, ys):
            loss = F.cross_entropy(net(xb), yb) / n_b
            loss.backward()
            total += float(loss.detach())
        return torch.tensor(total)

    def closure_for(j):
        def closure(create_graph=False):
            net.zero_grad(set_to_none=False)
            loss = F.cross_entropy(net(xs[j]), ys[j])
            loss.backward(create_graph=create_graph)
            return loss
        return closure

    rows = []
    table = torch.zeros(n_b, sum(p.numel() for p in net.parameters()), device=device)
    seen = torch.zeros(n_b, dtype=torch.bool)
    snap_g = snap_f = prev_g = prev_f = None
    sarah = 0.0
    mom_mean = mom_var = None
    step = 0
    for epoch in range(epochs):
        if hasattr(opt, "on_epoch_start"):
            opt.on_epoch_start(full_closure)
        for j in torch.randperm(n_b, generator=generator).tolist():
            g, loss = batch_gradients(net, xs, ys)
            f = g.mean(0)
            sgd = _mean_sq(g - f)
            if step % period == 0:
                snap_g, snap_f, sarah = g, f, 0.0
            elif prev_g is not None:
                sarah += _mean_sq((g - prev_g) - (f - prev_f))
            if mom_mean is None:
                mom_mean, mom_var = f.clone(), sgd
            else:
                mom_mean = beta * mom_mean + (1 - beta) * f
                mom_var = beta ** 2 * mom_var + (1 - beta) ** 2 * sgd
            values = {
                "sgd": sgd,
                "svrg": _mean_sq((g - snap_g) - (f - snap_f)),
                "sarah": sarah,
                "saga": _mean_sq((g - table) - (f - table.mean(0))) if bool(seen.all()) else math.nan,
                "momentum": float((mom_mean - f).double().pow(2).sum()) + mom_var,
            }
            for size in larger_batches:
                if size < n:
                    values[f"sgd_b{size}"] = sgd * batch_size * (n - size) / (size * (n - batch_size))
            if step % every == 0:
                grad_sq = float(f.double().pow(2).sum())
                for name, mse in values.items():
                    rows.append({"step": step, "epoch": step / n_b, "estimator": name, "mse": mse,
                                 "grad_sq": grad_sq, "relative": mse / grad_sq, "loss": loss,
                                 "trajectory": optimizer, "batch_size": batch_size, "n_samples": n})
            table[j] = g[j]
            seen[j] = True
            prev_g, prev_f = g, f
            if hasattr(opt, "on_batch"):
                opt.on_batch(j, n_b)
            opt.step(closure_for(j))
            step += 1
    return pd.DataFrame(rows)


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per estimator: median relative error and median MSE over the measured iterates."""
    valid = frame.dropna(subset=["mse"])
    return (valid.groupby("estimator")[["relative", "mse"]].median()
            .rename(columns={"relative": "median_relative", "mse": "median_mse"})
            .sort_values("median_relative"))
