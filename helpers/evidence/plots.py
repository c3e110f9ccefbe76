"""Figures shared by the family notebooks, the summary and the report.

One visual mapping everywhere (:func:`style_for`): a colour-blind-safe hue per optimizer family
(seaborn's "colorblind" palette) and, within a family, one shade, marker and line style per member, fixed
by the registry order, so a method looks the same in every figure. Panels hold at most about six
lines (:data:`PANELS`: families, with momentum split into SGD-type and Adam-type); legends sit
outside the data; cost axes count in k / M; y ranges cover the informative band, and a curve that
collapses out of it is shown in a small inset with the full range.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

PAGE_WIDTH = 6.85  # inches: the report's text width (A4, 1.8 cm margins), so figures print at 1:1
X_LABELS = {"epoch": "epoch", "grad_evals": "sample gradients",
            "oracle_evals": "oracle calls (gradients + HVPs)",
            "wall_s": "training wall time (s)"}
# Short enough to fit beside a panel of about an inch (the report's family figures); what each
# quantity is (mean batch loss over the steps since the last evaluation, cross-entropy) is in captions.
Y_LABELS = {"test_acc": "test accuracy (%)", "test_loss": "test loss",
            "val_acc": "validation accuracy (%)", "val_loss": "validation loss",
            "train_loss": "training loss"}
PANELS = {
    "SGD: basic, mini-batch, full batch": ("sgd_basic", "sgd", "gd"),
    "momentum, SGD-type": ("heavy_ball", "nesterov", "lookahead_sgd", "sgd_schedulefree"),
    "momentum, Adam-type": ("adam", "adamw", "nadam", "radam", "lookahead_adam", "adamw_schedulefree"),
    "noise reduction: variance-reduced gradients": ("svrg", "sarah", "saga", "sgd_growing_batch"),
    "noise reduction: iterate averaging": ("sgd_polyak", "sgd_ema", "sgd_swa"),
    "second order": ("adahessian", "kfac", "shampoo", "newton_cg", "lbfgs", "lbfgs_full"),
}
_PALETTE = sns.color_palette("colorblind")
FAMILY_COLORS = {"sgd": _PALETTE[4], "momentum": _PALETTE[0], "noise_reduction": _PALETTE[2],
                 "second_order": _PALETTE[3], None: _PALETTE[7]}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h", "<", ">")
LINESTYLES = ("-", "--", "-.", ":")
MAX_LINES = 6
COLLAPSE_POINTS = 8.0
COLLAPSE_FACTOR = 2.0
COLLAPSE_NATS = 0.25


def family_of(optimizer: str) -> str | None:
    from ..optimizers import registry
    spec = registry().get(optimizer)
    return spec.family if spec else None


def _members(family: str | None) -> list[str]:
    """The family's members in a fixed order: :data:`PANELS` order, then the rest of the registry."""
    from ..optimizers import registry
    ordered = [m for panel in PANELS.values() for m in panel if family_of(m) == family]
    return ordered + sorted(n for n, s in registry().items() if s.family == family and n not in ordered)


def base_optimizer(label: str) -> str:
    """The registry name a method label starts with (``"nesterov+onecycle [tuned]"`` -> ``"nesterov"``)."""
    return str(label).split(" ")[0].split("+")[0]


def style_for(label: str, variant: int = 0) -> dict:
    """Line properties of a method label: its family's colour, its member's marker and line style.
    A label that is not the bare optimizer name (a tagged recipe, another schedule or batch size)
    keeps the colour and marker, drawn hollow and dotted; ``variant`` shifts its marker so several
    variants of one optimizer differ. Labels outside the registry are grey."""
    optimizer = base_optimizer(label)
    family = family_of(optimizer)
    members = _members(family) if family else []
    index = members.index(optimizer) if optimizer in members else 0
    style = {"color": _shade(FAMILY_COLORS.get(family, FAMILY_COLORS[None]), index, len(members)),
             "marker": MARKERS[(index + variant) % len(MARKERS)],
             "linestyle": LINESTYLES[index % len(LINESTYLES)], "markersize": 4}
    if str(label) != optimizer:
        style.update(linestyle=":", markerfacecolor="white")
    return style


def _shade(color, index: int, count: int):
    """Member ``index`` of ``count`` in one hue: from a darker to a lighter shade of ``color``."""
    if count <= 1:
        return tuple(color)
    dark = tuple(0.55 * c for c in color)
    light = tuple(c + 0.45 * (1 - c) for c in color)
    return tuple(sns.blend_palette([dark, color, light], count)[index])


def styles(labels) -> dict[str, dict]:
    """:func:`style_for` for each label, variants of one optimizer numbered in sorted order; labels
    outside the registry get other colours of the colour-blind palette."""
    out, seen = {}, {}
    unknown = [label for label in sorted(set(map(str, labels))) if family_of(base_optimizer(label)) is None]
    for label in sorted(set(map(str, labels))):
        if label in unknown:
            i = unknown.index(label)
            out[label] = {"color": _PALETTE[(i + 5) % len(_PALETTE)], "marker": MARKERS[i % len(MARKERS)],
                          "linestyle": LINESTYLES[i % len(LINESTYLES)], "markersize": 4}
            continue
        optimizer = base_optimizer(label)
        variant = seen.get(optimizer, 0) if label != optimizer else 0
        if label != optimizer:
            seen[optimizer] = variant + 1
        out[label] = style_for(label, variant + (label != optimizer))
    return out


def thousands(value, _pos=None) -> str:
    """Tick label in k / M units: 120000 -> "120k", 1500000 -> "1.5M"."""
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def format_x(ax, x: str) -> None:
    ax.set_xlabel(X_LABELS.get(x, x))
    if x == "epoch":
        ax.xaxis.set_major_locator(plt.MaxNLocator(5, integer=True))
    if x in ("grad_evals", "oracle_evals"):
        ax.xaxis.set_major_formatter(FuncFormatter(thousands))
        ax.xaxis.set_major_locator(plt.MaxNLocator(5))


def line_points(frame: pd.DataFrame, y: str, x: str = "epoch", hue: str = "method") -> pd.DataFrame:
    """Per ``hue`` value and evaluation point (epoch): mean of ``x``, mean and std of ``y`` over seeds."""
    data = frame[frame[y].notna() & np.isfinite(frame[y])]
    return data.groupby([hue, "epoch"]).agg(x=(x, "mean"), mean=(y, "mean"), std=(y, "std")).reset_index()


def informative_band(points: pd.DataFrame, y: str, hue: str = "method") -> tuple[tuple[float, float], list]:
    """The y range where the lines end, and the lines that leave it (collapses, divergences).

    A line collapses when its last mean lies more than :data:`COLLAPSE_POINTS` below the best
    line's (accuracy), or both :data:`COLLAPSE_FACTOR` times and :data:`COLLAPSE_NATS` above the
    best line's (loss). The band spans
    the other lines over the second half of their runs (accuracy: up to their highest point),
    padded by a tenth of its height."""
    if points.empty:
        return (0.0, 1.0), []
    last = points.sort_values("epoch").groupby(hue).tail(1).set_index(hue)["mean"]
    is_acc = y.endswith("acc")
    collapsed = last[(last < last.max() - COLLAPSE_POINTS) if is_acc else
                     ((last > COLLAPSE_FACTOR * last.min()) & (last > last.min() + COLLAPSE_NATS))].index.tolist()
    kept = points[~points[hue].isin(collapsed)]
    late = kept[kept["epoch"] >= kept.groupby(hue)["epoch"].transform("max") / 2]
    low, high = late["mean"].min(), late["mean"].max()
    if is_acc:
        high = max(high, kept["mean"].max())
    else:
        low = min(low, kept["mean"].min())
    pad = max((high - low) / 10, 0.05 if is_acc else 0.002)
    return (low - pad, high + pad), collapsed


def curves(frame: pd.DataFrame, y: str = "test_acc", x: str = "epoch", hue: str = "method",
           ax=None, title: str | None = None, logx: bool = False, target: float | None = None,
           legend: str | None = "outside", band: bool = True, inset: bool = True):
    """Mean over seeds with a +-1 std band, one line per ``hue`` value, in the shared style.

    Points are matched across seeds by epoch (the evaluation points), so ``x`` may be a cost that
    differs between seeds (wall time): it is averaged over seeds at each evaluation point. The y
    axis covers :func:`informative_band`; lines leaving it appear in an inset with the full range.
    ``legend``: "outside" (right of the axes), "below", "inside" or None.
    """
    ax = ax or plt.subplots(figsize=(6, 4))[1]
    points = line_points(frame, y, x, hue)
    look = styles(points[hue].unique())
    (low, high), collapsed = informative_band(points, y, hue)
    for label, line in points.groupby(hue, sort=True):
        line = line.sort_values("x")
        style = look[str(label)]
        ax.plot(line["x"], line["mean"], label=label, linewidth=1.3, markevery=max(1, len(line) // 10), **style)
        if band and label not in collapsed:
            spread = line["std"].fillna(0.0)
            ax.fill_between(line["x"], line["mean"] - spread, line["mean"] + spread, color=style["color"],
                            alpha=0.12, linewidth=0)
    if len(points) and band:
        ax.set_ylim(low, high)
    if target is not None and (not len(points) or low <= target <= high):
        ax.axhline(target, color="grey", linestyle="--", linewidth=0.8, label=f"{target}%")
    format_x(ax, x)
    ax.set_ylabel(Y_LABELS.get(y, y))
    if logx:
        ax.set_xscale("log")
    if title:
        ax.set_title(title, fontsize="medium")
    if collapsed and inset:
        _inset(ax, points, collapsed, look, hue, y)
    _legend(ax, legend)
    return ax


# Where an inset may go, in axes coordinates (x0, y0, width, height), in order of preference;
# the top corners leave room for the inset's title inside the axes.
INSET_CORNERS = ([0.58, 0.08, 0.38, 0.32], [0.58, 0.52, 0.38, 0.32], [0.12, 0.08, 0.38, 0.32],
                 [0.12, 0.52, 0.38, 0.32])


def free_corner(ax, lines: list[tuple[np.ndarray, np.ndarray]], corners=INSET_CORNERS) -> list[float]:
    """The corner of ``corners`` that the drawn ``lines`` ((x, y) in data coordinates, each
    sampled along its segments) cross least, with the axes' current limits; ties go to the
    earlier corner. A corner counts with the room for its y tick labels (left) and title (top)."""
    ax.get_xlim(), ax.get_ylim()  # applies pending autoscaling to the limits
    to_axes = ax.transLimits
    scale_x = ax.xaxis.get_transform()
    scale_y = ax.yaxis.get_transform()
    samples = []
    for x, y in lines:
        if len(x) == 0:
            continue
        xy = np.column_stack([scale_x.transform(np.asarray(x, float)), scale_y.transform(np.asarray(y, float))])
        if len(xy) > 1:
            t = np.linspace(0, 1, 20)[:, None, None]
            xy = (xy[:-1][None] * (1 - t) + xy[1:][None] * t).reshape(-1, 2)
        samples.append(to_axes.transform(xy))
    if not samples:
        return list(corners[0])
    points = np.concatenate(samples)

    def crossed(c):
        x0, y0, w, h = c
        inside = (points[:, 0] >= x0 - 0.1) & (points[:, 0] <= x0 + w + 0.02) & \
                 (points[:, 1] >= y0 - 0.02) & (points[:, 1] <= y0 + h + 0.1)  # its tick labels, its title
        return int(inside.sum())
    return list(min(corners, key=crossed))


def _inset(ax, points, collapsed, look, hue, y):
    """A small full-range view of the lines that leave the band, in the corner the curves leave free."""
    kept = points[~points[hue].isin(collapsed)]
    corner = free_corner(ax, [(line.sort_values("x")["x"].to_numpy(), line.sort_values("x")["mean"].to_numpy())
                              for _, line in kept.groupby(hue)])
    sub = ax.inset_axes(corner)
    for label, line in points.groupby(hue, sort=True):
        line = line.sort_values("x")
        style = look[str(label)]
        alpha = 1.0 if label in collapsed else 0.35
        sub.plot(line["x"], line["mean"], linewidth=0.9, alpha=alpha,
                 **{**style, "markersize": 2})
    if not y.endswith("acc") and points["mean"].max() > 20 * points["mean"].min():
        sub.set_yscale("log")
    sub.set_title("full range", fontsize=6)
    sub.tick_params(labelsize=6, labelbottom=False)  # the x range is the main axes'
    sub.xaxis.set_major_locator(plt.MaxNLocator(3))


def _legend(ax, where, ncol: int | None = None):
    if where is None:
        if ax.get_legend():
            ax.get_legend().remove()
        return
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    if where == "outside":
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    elif where == "below":
        width = ax.get_position().width * ax.figure.get_figwidth()
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=7 if width > 2 else 6,
                  frameon=False, ncol=ncol or (2 if width > 2.2 else 1))
    else:
        ax.legend(handles, labels, fontsize=7)


def curve_grid(frame: pd.DataFrame, y: str = "test_acc", hue: str = "method",
               xs=("epoch", "oracle_evals"), target: float | None = None, suptitle=None):
    """The same metric against epochs and oracle calls (or any ``xs``), one legend right of the row."""
    hue = hue if hue in frame else "optimizer"
    fig, axes = plt.subplots(1, len(xs), figsize=(4.2 * len(xs) + 1.8, 3.4), sharey=True, squeeze=False)
    for i, (x, ax) in enumerate(zip(xs, axes[0])):
        curves(frame, y=y, x=x, hue=hue, ax=ax, target=target, legend="outside" if i == len(xs) - 1 else None)
        if i:
            ax.set_ylabel("")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def metric_row(frame: pd.DataFrame, ys=("train_loss", "test_loss", "test_acc"), x: str = "epoch",
               hue: str = "method", target: float | None = None, suptitle=None, panel: tuple = (3.6, 3.2)):
    """Training loss, test loss and test accuracy side by side against ``x``; one legend right.
    ``panel``: (width, height) of one panel in inches."""
    hue = hue if hue in frame else "optimizer"
    ys = [y for y in ys if y in frame and frame[y].notna().any()]
    fig, axes = plt.subplots(1, len(ys), figsize=(panel[0] * len(ys) + 1.8, panel[1]), squeeze=False)
    for i, (y, ax) in enumerate(zip(ys, axes[0])):
        curves(frame, y=y, x=x, hue=hue, ax=ax, target=target if y.endswith("acc") else None,
               legend="outside" if i == len(ys) - 1 else None)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def panel_of(optimizer: str) -> str:
    for name, members in PANELS.items():
        if optimizer in members:
            return name
    return str(family_of(optimizer))


def family_grid(frame: pd.DataFrame, ys=("train_loss", "test_loss", "test_acc"), x: str = "epoch",
                hue: str = "method", target: float | None = None, panels=None, max_lines: int = MAX_LINES):
    """One row per panel of :data:`PANELS` present in ``frame`` (at most ``max_lines`` lines each, the
    best by final mean of the last of ``ys`` kept), one column per metric; a legend right of each row."""
    hue = hue if hue in frame else "optimizer"
    frame = frame.assign(_panel=[panel_of(base_optimizer(m)) for m in frame[hue]])
    names = [p for p in (panels or [*PANELS, *sorted(set(frame["_panel"]) - set(PANELS))])
             if (frame["_panel"] == p).any()]
    ys = [y for y in ys if y in frame and frame[y].notna().any()]
    fig, axes = plt.subplots(len(names), len(ys), figsize=(3.4 * len(ys) + 2.2, 2.7 * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        part = _top_lines(frame[frame["_panel"] == name], ys[-1], hue, max_lines)
        for i, (y, ax) in enumerate(zip(ys, row)):
            curves(part, y=y, x=x, hue=hue, ax=ax, target=target if y.endswith("acc") else None,
                   legend="outside" if i == len(ys) - 1 else None)
            if i == 0:
                ax.set_title(name, loc="left", fontsize="medium")
    fig.tight_layout()
    return fig


def family_facets(frame: pd.DataFrame, y: str = "test_acc", x: str = "epoch", hue: str = "method",
                  target: float | None = None, ncols: int = 3, max_lines: int = MAX_LINES, panels=None,
                  panel: tuple = (3.3, 3.5)):
    """One metric, one panel per :data:`PANELS` entry present (``ncols`` per row, at most
    ``max_lines`` lines each), each panel's legend below it: the compact page figure.
    ``panel``: (width, height) of one panel in inches, legend included."""
    hue = hue if hue in frame else "optimizer"
    frame = frame.assign(_panel=[panel_of(base_optimizer(m)) for m in frame[hue]])
    names = [p for p in (panels or [*PANELS, *sorted(set(frame["_panel"]) - set(PANELS))])
             if (frame["_panel"] == p).any()]
    nrows = max(1, math.ceil(len(names) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel[0] * ncols, panel[1] * nrows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        part = _top_lines(frame[frame["_panel"] == name], y, hue, max_lines)
        curves(part, y=y, x=x, hue=hue, ax=ax, target=target if y.endswith("acc") else None, legend="below")
        ax.set_title(name.replace(": ", ":\n") if panel[0] < 3 else name, fontsize="medium")
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def _top_lines(frame: pd.DataFrame, y: str, hue: str, limit: int) -> pd.DataFrame:
    last = frame.sort_values("epoch").groupby([hue, "run_id"]).tail(1).groupby(hue)[y].mean()
    keep = (last.sort_values(ascending=y.endswith("loss")).index[:limit]
            if frame[hue].nunique() > limit else last.index)
    return frame[frame[hue].isin(keep)]


def density_plot(density: pd.DataFrame, ax=None):
    """Test accuracy (mean +- std over seeds) against the fc1+fc2 density (``density`` as from
    :func:`helpers.evidence.analysis.accuracy_vs_density`): one line per method for the projection
    (its colour), the other strategies as unconnected markers of the same colour, one marker shape
    per strategy; one legend outside, methods in its first column and strategies in its second. The y axis covers the points within
    :data:`COLLAPSE_POINTS` of the best at their density, at the densities whose best is within
    :data:`COLLAPSE_POINTS` of the best overall; an inset shows the full range when some points fall
    outside."""
    from matplotlib.lines import Line2D
    ax = ax or plt.subplots(figsize=(6, 3))[1]
    others = sorted(set(density["sparsity_strategy"]) - {"projection"})
    shapes = {"projection": "o", **{st: m for st, m in zip(others, ("^", "s", "X", "D", "v"))}}
    look = styles(density["method"].unique())

    def draw(target, small=False):
        for (method, strategy), line in density.groupby(["method", "sparsity_strategy"]):
            line = line.sort_values("density")
            if strategy != "projection":  # its dense point is the projection line's
                line = line[line["density"] < 1.0]
            style = {"color": look[str(method)]["color"], "marker": shapes[strategy],
                     "linestyle": "-" if strategy == "projection" else "none"}
            if small:
                target.plot(line["density"], line["test_acc_mean"], linewidth=0.8, markersize=2, **style)
            else:
                target.errorbar(line["density"], line["test_acc_mean"], yerr=line["test_acc_std"].fillna(0),
                                capsize=2, linewidth=1.2, markersize=4, **style)
        target.set_xscale("log")
        target.minorticks_off()

    draw(ax)
    ticks = sorted(density["density"].unique())
    ax.set_xticks(ticks, [f"{100 * t:g}%" for t in ticks])
    best = density.groupby("density")["test_acc_mean"].transform("max")
    kept = density[(density["test_acc_mean"] >= best - COLLAPSE_POINTS) &
                   (best >= density["test_acc_mean"].max() - COLLAPSE_POINTS)]
    if len(kept) < len(density):
        low = (kept["test_acc_mean"] - kept["test_acc_std"].fillna(0)).min()
        high = (kept["test_acc_mean"] + kept["test_acc_std"].fillna(0)).max()
        pad = max((high - low) / 10, 0.1)
        ax.set_ylim(low - pad, high + pad)
        sub = ax.inset_axes(free_corner(ax, [(line.sort_values("density")["density"].to_numpy(),
                                               line.sort_values("density")["test_acc_mean"].to_numpy())
                                              for _, line in kept.groupby(["method", "sparsity_strategy"])]))
        draw(sub, small=True)
        spaced = []
        for t in sorted(ticks, reverse=True):  # 100 first; none closer than 0.3 decades on the small axis
            if not spaced or math.log10(spaced[-1] / t) >= 0.3:
                spaced.append(t)
        sub.set_xticks(spaced, [f"{100 * t:g}" for t in spaced])
        sub.set_title("full range", fontsize=6)
        sub.tick_params(labelsize=6)
    methods = [Line2D([], [], color=look[str(m)]["color"], label=str(m)) for m in sorted(density["method"].unique())]
    kinds = [Line2D([], [], color="grey", marker=shapes[st], linestyle="-" if st == "projection" else "none",
                    label=st) for st in ["projection", *others] if st in set(density["sparsity_strategy"])]
    rows = max(len(methods), len(kinds))
    blank = Line2D([], [], linestyle="none", label=" ")
    ax.legend(handles=methods + [blank] * (rows - len(methods)) + kinds + [blank] * (rows - len(kinds)),
              ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False,
              title="method      strategy", title_fontsize=7, alignment="left", columnspacing=1.0)
    ax.set_xlabel("fc1+fc2 density (share of weights nonzero)")
    ax.set_ylabel("test accuracy (%)")
    return ax


def profile_plot(profile: pd.DataFrame, ax=None, max_lines: int = 8):
    """A Dolan-More performance profile (``profile`` from :func:`helpers.evidence.analysis.performance_profile`):
    the ``max_lines`` solvers with the largest area under rho, legend outside."""
    ax = ax or plt.subplots(figsize=(6, 3))[1]
    profile = profile.assign(label=[m if s in ("projection", None) or pd.isna(s) else f"{m} / {s}"
                                    for m, s in zip(profile["method"], profile.get("sparsity_strategy",
                                                                                   [None] * len(profile)))])
    area = profile.groupby("label")["rho"].mean().sort_values(ascending=False)
    look = styles(area.index)
    for label in area.index[:max_lines]:
        line = profile[profile["label"] == label].sort_values("tau")
        ax.step(line["tau"], line["rho"], where="post", label=label, linewidth=1.3,
                **{k: v for k, v in look[label].items() if k not in ("marker", "markersize")})
    ax.set_xscale("log", base=2)
    ax.set_ylim(-0.02, 1.02)
    settled = profile.groupby("label")["rho"].transform("max")
    reached = profile.loc[profile["rho"] >= settled, ["label", "tau"]].groupby("label")["tau"].min()
    if len(reached):
        ax.set_xlim(1, max(2.0, 2 * reached.max()))
    ax.xaxis.set_major_locator(LogLocator(base=2, subs=(1.0, 1.5)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(r"$\tau$ (cost relative to the best method)")
    ax.set_ylabel(r"share of problems solved, $\rho(\tau)$")
    _legend(ax, "outside")
    return ax


def difference_plot(tables: dict[str, pd.DataFrame], axes=None, limits: dict | None = None, width: float = 6.6):
    """Seed-matched differences to the indicated best with their 95% intervals, one panel per metric
    (``tables``: {"test accuracy (points)": :func:`helpers.evidence.statistics.separability` table, ...}):
    one row per method in the shared style, filled markers for "separable", hollow for "not
    separable", grey for "untested". The x axis keeps ``limits[name]`` (default: +-3 accuracy points,
    +-0.1 loss); methods beyond it are drawn at the edge with their value written beside."""
    limits = limits or {}
    names = list(tables)
    if axes is None:
        rows = max(len(t) for t in tables.values())
        _, axes = plt.subplots(1, len(names), figsize=(width, 0.17 * rows + 1.0), sharey=True, squeeze=False)
        axes = axes[0]
    order = list(tables[names[0]].sort_values("difference", ascending=False)["method"] + " / " +
                 tables[names[0]].sort_values("difference", ascending=False)["sparsity_strategy"])
    for ax, name in zip(axes, names):
        table = tables[name].assign(key=lambda t: t["method"] + " / " + t["sparsity_strategy"])
        low, high = limits.get(name, (-3.0, 3.0) if "acc" in name else (-0.1, 0.1))
        look = styles(table["method"])
        for _, r in table.iterrows():
            y = order.index(r["key"]) if r["key"] in order else len(order)
            style = {**look[str(r["method"])], "linestyle": "none"}
            if r["verdict"] == "untested":
                style["color"] = FAMILY_COLORS[None]
            if r["verdict"] == "not separable":
                style["markerfacecolor"] = "white"
            value = float(r["difference"]) if pd.notna(r["difference"]) else 0.0
            shown = min(max(value, low), high)
            if pd.notna(r.get("ci_low")):
                ax.plot([max(r["ci_low"], low), min(r["ci_high"], high)], [y, y], color=style["color"], linewidth=1)
            ax.plot([shown], [y], **style)
            if shown != value:
                ax.annotate(f"{value:+.3g}", (shown, y), xytext=(-7 if value > high else 7, 0),
                            textcoords="offset points", fontsize=6, va="center",
                            ha="right" if value > high else "left",
                            bbox=dict(facecolor="white", edgecolor="none", pad=0.2))
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.set_xlim(low, high)
        ax.set_xlabel(name)
        best = set(table.loc[table["verdict"] == "best", "key"])
        ax.set_yticks(range(len(order)), [o.replace(" / projection", "") + (" (best)" if o in best else "")
                                          for o in order])
        ax.tick_params(axis="y", labelsize=7)
    axes[0].set_ylim(len(order) - 0.5, -0.5)
    axes[0].set_title("filled: separable; hollow: not separable; grey: untested", fontsize=7, loc="left")
    return axes


def legend_inside_data(ax) -> bool:
    """True when the axes' legend box overlaps its plotting area (a check for tests)."""
    legend = ax.get_legend()
    if legend is None:
        return False
    ax.figure.canvas.draw()
    box, area = legend.get_window_extent(), ax.get_window_extent()
    return box.overlaps(area) and not math.isclose(box.x0, area.x1)
