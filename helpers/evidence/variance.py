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


# ---------------------------------------------------------------- along a study run's trajectory
# Per-sample gradients (torch.func) at a point give the mini-batch error at every batch size from
# one pass: drawing b of the N samples without replacement (as the engine's shuffled epochs do),
# E||g_B - F||^2 = sigma^2 (N - b) / (b (N - 1)), sigma^2 = mean_i ||g_i - F||^2. SVRG's error is
# the same expression over the differences d_i = g_i(w) - g_i(snapshot).

def _order(names) -> list[str]:
    """Parameter names in the engine's flat layout (fc1/fc2 weights first), the order of every
    flat tensor here and in the stacked rules' state."""
    from ..engine.stacked_model import LAYOUT
    return [n for n, _ in LAYOUT] if set(names) == {n for n, _ in LAYOUT} else list(names)


def per_sample_gradients(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``[len(x), n_params]``: the gradient of each sample's cross-entropy (torch.func.vmap), flat
    in the engine's layout."""
    from torch.func import functional_call, grad, vmap
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss_one(p, xi, yi):
        return F.cross_entropy(functional_call(model, p, (xi.unsqueeze(0),)), yi.unsqueeze(0))

    per = vmap(grad(loss_one), in_dims=(None, 0, 0))(params, x, y)
    return torch.cat([per[k].reshape(len(x), -1) for k in _order(params)], dim=1)


def flat_gradient(model) -> torch.Tensor:
    """The model's ``.grad`` as one vector in the engine's layout."""
    grads = dict((k, p.grad) for k, p in model.named_parameters())
    return torch.cat([grads[k].reshape(-1) for k in _order(grads)])


def sample_moments(models, split: Split, chunk: int = 500) -> dict:
    """One pass of per-sample gradients at each of ``models`` (1 or 2: w, then a reference point r).

    Returns ``n``, ``mean`` (the full gradient F at w), ``spread`` (sigma^2 = mean_i ||g_i - F||^2)
    and ``loss`` (mean cross-entropy at w); with two models also ``diff_mean`` (F(w) - F(r)) and
    ``diff_spread`` (mean_i ||d_i - mean d||^2, d_i = g_i(w) - g_i(r)). Sums in float64."""
    models = list(models)
    n = len(split)
    total = [torch.zeros(sum(p.numel() for p in models[0].parameters()), dtype=torch.float64,
                         device=split.x.device) for _ in range(2)]
    squares, loss = [0.0, 0.0], 0.0
    for start in range(0, n, chunk):
        x, y = split.x[start:start + chunk], split.y[start:start + chunk]
        g = per_sample_gradients(models[0], x, y).double()
        with torch.no_grad():
            loss += float(F.cross_entropy(models[0](x), y, reduction="sum"))
        rows = [g] if len(models) == 1 else [g, g - per_sample_gradients(models[1], x, y).double()]
        for i, r in enumerate(rows):
            total[i] += r.sum(0)
            squares[i] += float(r.pow(2).sum())
    out = {"n": n, "loss": loss / n}
    for i, key in enumerate(["", "diff_"][:len(models)]):
        mean = total[i] / n
        out[f"{key}mean"] = mean
        out[f"{key}spread"] = max(squares[i] / n - float(mean.pow(2).sum()), 0.0)
    return out


def minibatch_mse(spread: float, n: int, b: int) -> float:
    """E||mean of b of n vectors drawn without replacement - their mean||^2, from their spread."""
    if not 1 <= b <= n:
        raise ValueError(f"batch size must be in [1, {n}], got {b}")
    return spread * (n - b) / (b * (n - 1)) if n > 1 else 0.0


class _StopMeasuring(Exception):
    pass


def _module(flat: torch.Tensor):
    from ..engine.stacked_model import to_model
    return to_model(flat.detach())


def trajectory_variance(config, data, epochs, batch_sizes, progress: bool = False) -> pd.DataFrame:
    """Estimator errors along the trajectory of ``config`` (trained again, the run stopped after
    the last checkpoint), at the first step after each of ``epochs`` epochs of oracle calls
    (sample gradients / N, so SVRG's and SARAH's checkpoints fall at the same cost as SGD's), on
    the training split of ``data``; checkpoints past the run's budget are not reached.

    Rows (``estimator``, ``batch_size``, ``mse``, ``kind``): ``minibatch`` at every batch size
    (exact); on SVRG's trajectory ``svrg`` at every batch size (exact, its own snapshot; age in
    ``age_steps``); on SAGA's, ``saga`` at the run's batch size (exact over its fixed batches and
    its own table; ``age_steps`` the mean steps since each batch's entry); on SARAH's, ``sarah``
    at the run's batch size (``realized``: ||v - F||^2 of its own estimate, one draw) and
    ``sarah`` at every batch size (``estimate``: steps since the snapshot x the variance of the
    next step's increment, which the recursion adds once per step); on a momentum method's,
    ``momentum`` at the run's batch size (``realized``: ||(1 - mu) buf - F||^2 at the point the
    buffer was formed) and at every batch size (``estimate``: the stationary variance of the
    averaged direction, (1 - mu) / (1 + mu) x the mini-batch error). Also ``grad_sq`` = ||F||^2,
    ``relative`` = mse / grad_sq, ``loss`` (training loss at the point).
    """
    from ..engine.train import run
    from ..optimizers import get_spec
    from ..problem.data import batch_indices
    if get_spec(config.optimizer).rule is None:
        raise ValueError(f"{config.optimizer!r} has no stacked rule: its trajectory state cannot be read")
    from ..runtime import seed_everything
    split = data.train
    n = len(split)
    run_batch = n if config.effective_batch_size == "full" else min(int(config.effective_batch_size), n)
    steps_per_epoch = math.ceil(n / run_batch)
    pending = sorted(epochs)
    method = config.optimizer
    momentum = float(config.effective_hparams.get("momentum", 0.0) or 0.0)
    fixed = batch_indices(n, run_batch, seed_everything(config.seed)) if method == "saga" else None
    visits: dict[int, int] = {}
    rows: list[dict] = []
    previous: list[torch.Tensor | None] = [None, None]  # the weights before the last step, after it

    def add(step, epoch, estimator, b, mse, kind, grad_sq, loss, age=math.nan):
        rows.append(dict(method=method, run_id=config.run_id, seed=config.seed, checkpoint=epoch,
                         step=step, epoch=step / steps_per_epoch, oracle_epochs=spent[0] / n, estimator=estimator,
                         batch_size=b, mse=mse, kind=kind, grad_sq=grad_sq,
                         relative=mse / grad_sq if grad_sq else math.nan, loss=loss, age_steps=age,
                         age_epochs=age / steps_per_epoch, run_batch=run_batch))

    spent = [0]

    def observe(step, stepper):
        rule = getattr(stepper, "rule", None)
        if fixed is not None and stepper.oracle.batch_ids is not None:
            visits[int(stepper.oracle.batch_ids[0])] = step
        if momentum > 0:
            previous[0], previous[1] = previous[1], stepper.p[0].detach().clone()
        spent[0] = sum(stepper.counts())
        if not pending or spent[0] < pending[0] * n:
            return
        epoch = pending.pop(0)
        while pending and spent[0] >= pending[0] * n:
            pending.pop(0)  # one step passed several checkpoints (full batch): measured once
        w = stepper.p[0].detach().clone()
        here = _module(w)
        if method == "svrg":
            m = sample_moments([here, _module(rule.anchor[0])], split)
        elif method == "sarah":
            m = sample_moments([here, _module(rule.previous[0])], split)
        else:
            m = sample_moments([here], split)
        grad_sq = float(m["mean"].pow(2).sum())
        for b in batch_sizes:
            if b <= n:
                add(step, epoch, "minibatch", b, minibatch_mse(m["spread"], n, b), "exact", grad_sq, m["loss"])
        if method == "svrg":
            for b in batch_sizes:
                if b <= n:
                    add(step, epoch, "svrg", b, minibatch_mse(m["diff_spread"], n, b), "exact", grad_sq, m["loss"],
                        rule.since)
        elif method == "sarah":
            at_previous = sample_moments([_module(rule.previous[0])], split)
            realized = float((rule.v[0].double() - at_previous["mean"]).pow(2).sum())
            add(step, epoch, "sarah", run_batch, realized, "realized", grad_sq, m["loss"], rule.since)
            for b in batch_sizes:
                if b <= n:
                    add(step, epoch, "sarah", b, rule.since * minibatch_mse(m["diff_spread"], n, b), "estimate",
                        grad_sq, m["loss"], rule.since)
        elif method == "saga":
            sizes = torch.tensor([len(b) for b in fixed], dtype=rule.sizes.dtype, device=rule.sizes.device)
            if len(fixed) != rule.table.shape[1] or not torch.equal(rule.sizes[0][rule.seen[0]], sizes[rule.seen[0]]):
                raise RuntimeError("SAGA's table does not match batch_indices(n, batch, seed_everything(seed)): "
                                   "the engine's fixed partition changed; update trajectory_variance")
            add(step, epoch, "saga", run_batch, saga_mse(here, rule, fixed, split, m["mean"]), "exact", grad_sq,
                m["loss"], float(sum(step - v for v in visits.values()) / max(len(visits), 1)))
        elif momentum > 0 and getattr(rule, "buf", None) is not None and previous[0] is not None:
            at_point = sample_moments([_module(previous[0])], split)
            realized = float(((1 - momentum) * rule.buf[0].double() - at_point["mean"]).pow(2).sum())
            add(step, epoch, "momentum", run_batch, realized, "realized", grad_sq, m["loss"])
            for b in batch_sizes:
                if b <= n:
                    add(step, epoch, "momentum", b, (1 - momentum) / (1 + momentum) * minibatch_mse(m["spread"], n, b),
                        "estimate", grad_sq, m["loss"])
        if not pending:
            raise _StopMeasuring

    try:
        run([config], data, progress, observer=observe)
    except _StopMeasuring:
        pass
    return pd.DataFrame(rows)


def saga_mse(model, rule, batches, split: Split, full: torch.Tensor) -> float:
    """Exact E_j||v_j - F||^2 of SAGA's estimator over its fixed batches j (uniform), with the
    rule's own table T and batch sizes n_j: v_j = (g_j - T_j) n_b n_j / N + sum_k n_k T_k / N."""
    from torch.func import functional_call
    table = rule.table[0].double()
    sizes = torch.tensor([len(b) for b in batches], dtype=torch.float64, device=table.device)
    total = (table * sizes[:, None]).sum(0) / sizes.sum()
    params = dict(model.named_parameters())
    out = 0.0
    for j, index in enumerate(batches):
        model.zero_grad(set_to_none=False)
        loss = F.cross_entropy(functional_call(model, params, (split.x[index],)), split.y[index])
        loss.backward()
        g = flat_gradient(model).double()
        v = (g - table[j]) * len(batches) * sizes[j] / sizes.sum() + total
        out += float((v - full).pow(2).sum())
    model.zero_grad(set_to_none=True)
    return out / len(batches)
