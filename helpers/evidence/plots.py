"""Figures shared by the notebooks and the summary: curves with a band over seeds."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

X_LABELS = {"epoch": "epoch", "grad_evals": "sample-gradient evaluations",
            "oracle_evals": "oracle calls (gradients + Hessian-vector products, samples)",
            "wall_s": "training wall time (s)"}
Y_LABELS = {"test_acc": "test accuracy (%)", "test_loss": "test loss (mean cross-entropy)",
            "val_acc": "validation accuracy (%)", "val_loss": "validation loss",
            "train_loss": "training loss (mean over batches)"}


def curves(frame: pd.DataFrame, y: str = "test_acc", x: str = "epoch", hue: str = "optimizer",
           ax=None, title: str | None = None, logx: bool = False, target: float | None = None):
    """Mean over seeds with a +-1 std band, one line per ``hue``.

    Points are matched across seeds by epoch (the evaluation points), so ``x`` may be a cost that
    differs between seeds (wall time): it is averaged over seeds at each evaluation point.
    """
    ax = ax or plt.subplots(figsize=(6, 4))[1]
    data = frame[frame[y].notna()]
    points = data.groupby([hue, "epoch"]).agg(x=(x, "mean"), mean=(y, "mean"), std=(y, "std")).reset_index()
    palette = sns.color_palette(n_colors=max(points[hue].nunique(), 1))
    for color, (label, line) in zip(palette, points.groupby(hue, sort=True)):
        line = line.sort_values("x")
        ax.plot(line["x"], line["mean"], marker="o", markersize=3, color=color, label=label)
        band = line["std"].fillna(0.0)
        ax.fill_between(line["x"], line["mean"] - band, line["mean"] + band, color=color, alpha=0.2, linewidth=0)
    ax.set_xlabel(X_LABELS.get(x, x))
    ax.set_ylabel(Y_LABELS.get(y, y))
    if logx:
        ax.set_xscale("log")
    if target is not None:
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"{target}%")
    if title:
        ax.set_title(title)
    ax.legend(title=hue, fontsize=7)
    return ax


def curve_grid(frame: pd.DataFrame, y: str = "test_acc", hue: str = "optimizer",
               xs=("epoch", "grad_evals", "wall_s"), target: float | None = None, suptitle=None):
    """The same metric against epochs, gradient evaluations and wall time, side by side."""
    fig, axes = plt.subplots(1, len(xs), figsize=(5 * len(xs), 3.8), sharey=True)
    for i, (x, ax) in enumerate(zip(xs, axes)):
        curves(frame, y=y, x=x, hue=hue, ax=ax, target=target)
        if i:
            legend = ax.get_legend()
            if legend is not None:
                legend.remove()
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def density_plot(density: pd.DataFrame, ax=None):
    """Test accuracy (mean over seeds) against the fc1+fc2 density, one line per method/strategy
    (``density`` as from :func:`helpers.evidence.analysis.accuracy_vs_density`)."""
    ax = ax or plt.subplots(figsize=(5, 3))[1]
    data = density.assign(label=density["method"] + " / " + density["sparsity_strategy"])
    sns.lineplot(data=data, x="density", y="test_acc_mean", hue="label", marker="o", ax=ax)
    ax.set_xscale("log")
    ticks = sorted(data["density"].unique())
    ax.set_xticks(ticks, [f"{100 * t:g}%" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("fc1+fc2 density (share of weights nonzero)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=6)
    return ax


def profile_plot(profile: pd.DataFrame, ax=None):
    """A Dolan-More performance profile (``profile`` from :func:`helpers.evidence.analysis.performance_profile`)."""
    ax = ax or plt.subplots(figsize=(5, 3))[1]
    sns.lineplot(data=profile, x="tau", y="rho", hue="method", drawstyle="steps-post", ax=ax)
    ax.set_xscale("log", base=2)
    ax.set_xlabel(r"$\tau$ (cost relative to the best method)")
    ax.set_ylabel(r"share of problems solved, $\rho(\tau)$")
    ax.legend(fontsize=6, ncol=2)
    return ax
