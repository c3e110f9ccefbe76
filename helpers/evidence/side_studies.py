"""The studies beside the main comparison (issue 15) as tables and figures, read from the records.

- batch size: final test accuracy and loss against the batch size at both budgets
  (:func:`batch_size_results`, :func:`batch_size_plot`), and the training loss of the small
  budget's finals against oracle calls and against the timing pass's wall time
  (:func:`batch_size_curves`, :func:`batch_size_curves_plot`);
- weight decay: test accuracy, test loss and the final weights' norm against the weight decay,
  coupled (L2 in the gradient) and decoupled (AdamW) apart, and against the nominal per-step
  shrinkage (peak rate x decay), the one axis on which both kinds compare
  (:func:`weight_decay_results`, :func:`weight_decay_plot`);
- preprocessing: each method re-tuned on [0, 1] pixels beside its standardised-pixel finals, and
  the assignment's starter (:func:`preprocessing_results`, :func:`preprocessing_tex`);
- the starter's seeds: training loss and test accuracy of every seed (:func:`starter_plot`).

Runs are told apart by what their records say (scenario, method, batch size, epochs, pixel
scaling, weight decay), so the functions need no planner; a run shared by two studies (batch 64
at 10 epochs is the main study's) counts in both.
"""
from __future__ import annotations

import json
import math

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd

from . import analysis as A
from .latex import scientific
from .plots import PAGE_WIDTH, styles, thousands

N_TRAIN = 60_000
UNIT, STANDARDISED, STARTER_PIXELS = "[0, 1] (re-tuned)", "standardised", "[0, 1] (starter recipe)"
STATS = dict(test_acc_mean=("test_acc", "mean"), test_acc_std=("test_acc", "std"),
             test_loss_mean=("test_loss", "mean"), test_loss_std=("test_loss", "std"), seeds=("seed", "nunique"))


def _finals(frame: pd.DataFrame) -> pd.DataFrame:
    """Every evaluation row of the final (test-set) runs."""
    if frame is None or frame.empty:
        return pd.DataFrame()
    return frame[frame["eval_split"] == "test"]


def _last(frame: pd.DataFrame, finished: bool = True) -> pd.DataFrame:
    if frame.empty:
        return frame
    last = frame.sort_values("epoch").groupby("run_id").tail(1)
    return last[last["status"] == "finished"] if finished else last


def _batch(value) -> int:
    return N_TRAIN if value == "full" else 64 if value in ("None", "nan", None) else int(float(value))


def _hparam(frame: pd.DataFrame, key: str) -> pd.Series:
    return frame["hparams"].map(lambda h: (json.loads(h) if isinstance(h, str) else h or {}).get(key))


def _batch_runs(frame: pd.DataFrame, epochs) -> pd.DataFrame:
    from ..study.definition import BATCH_METHODS
    runs = _finals(frame)
    if runs.empty:
        return runs
    runs = runs[(runs["scenario"] == "standard") & runs["optimizer"].isin(BATCH_METHODS) &
                (runs["scaling"] != "unit") & (runs["tag"].astype(str) != "starter") &
                runs["planned_epochs"].isin(epochs)]
    return runs.assign(batch=runs["batch_size"].map(_batch))


def batch_size_results(frame: pd.DataFrame) -> pd.DataFrame:
    """Final test accuracy and loss (mean, std over finished seeds) of the batch-size study's
    methods per batch size and budget (``planned_epochs``: the small budget or the profile's)."""
    from ..study.definition import BATCH_SMALL_EPOCHS, get_profile
    last = _last(_batch_runs(frame, [BATCH_SMALL_EPOCHS, get_profile("full").epochs]))
    if last.empty:
        return pd.DataFrame()
    return last.groupby(["optimizer", "planned_epochs", "batch"]).agg(**STATS).reset_index()


def batch_size_figures(frame: pd.DataFrame) -> pd.DataFrame:
    """Show the report's two batch-size figures for ``frame``'s runs (each once at least two batch
    sizes finished) and return :func:`batch_size_results` (for the notebooks)."""
    table = batch_size_results(frame)
    if len(table) and table["batch"].nunique() > 1:
        batch_size_plot(table)
        plt.show()
    curves = batch_size_curves(frame)
    if len(curves) and curves["batch"].nunique() > 1:
        batch_size_curves_plot(curves)
        plt.show()
    return table


def batch_size_plot(table: pd.DataFrame):
    """Test accuracy and test loss against the batch size, one line per method and budget."""
    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH, 2.4))
    look = styles(table["optimizer"].unique())
    for (method, epochs), line in table.groupby(["optimizer", "planned_epochs"]):
        style = {**look[str(method)], "linestyle": "-" if epochs > 1 else ":"}
        for ax, y in zip(axes, ("test_acc", "test_loss")):
            ax.errorbar(line["batch"], line[f"{y}_mean"], yerr=line[f"{y}_std"].fillna(0), capsize=2,
                        label=f"{method}, {epochs} ep. budget", **style)
    for ax, label in zip(axes, ("test accuracy (%)", "test loss")):
        _log_batch_axis(ax)
        ax.set_ylabel(label)
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def _log_batch_axis(ax, label: str = "batch size") -> None:
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(thousands))
    ax.set_xlabel(label)


def batch_size_curves(frame: pd.DataFrame) -> pd.DataFrame:
    """The small budget's finals, every evaluation: mean training loss over seeds against oracle
    calls, with the wall time those calls cost by the timing pass at that batch size
    (``wall_s``; NaN where the pass has not timed the batch size)."""
    from ..study.definition import BATCH_SMALL_EPOCHS
    from ..study.timing import seconds_per_oracle_call
    runs = _batch_runs(frame, [BATCH_SMALL_EPOCHS])
    runs = runs[runs["run_id"].isin(_last(runs)["run_id"])] if len(runs) else runs
    if runs.empty:
        return pd.DataFrame()
    curves = (runs.groupby(["optimizer", "batch", "oracle_evals"])
              .agg(train_loss=("train_loss", "mean"), seeds=("seed", "nunique")).reset_index())

    def per_call(method, batch):
        try:
            return seconds_per_oracle_call(method, "full" if batch == N_TRAIN else batch)
        except (KeyError, FileNotFoundError, OSError):
            return float("nan")

    rate = {key: per_call(*key) for key in curves[["optimizer", "batch"]].drop_duplicates().itertuples(index=False)}
    return curves.assign(wall_s=[o * rate[(m, b)] for m, b, o in
                                 zip(curves["optimizer"], curves["batch"], curves["oracle_evals"])])


def batch_size_curves_plot(curves: pd.DataFrame):
    """Training loss against oracle calls (left) and the timing pass's seconds (right), one row
    per method, one line per batch size (a sequential palette: darker is larger)."""
    methods = sorted(curves["optimizer"].unique())
    sizes = sorted(curves["batch"].unique())
    colours = dict(zip(sizes, plt.get_cmap("viridis_r")([0.15 + 0.8 * i / max(1, len(sizes) - 1)
                                                         for i in range(len(sizes))])))
    fig, axes = plt.subplots(len(methods), 2, figsize=(PAGE_WIDTH, 1.5 * len(methods) + 0.3), squeeze=False,
                             sharey="row")
    for row, method in zip(axes, methods):
        for batch, line in curves[curves["optimizer"] == method].groupby("batch"):
            line = line.sort_values("oracle_evals")
            label = "full" if batch == N_TRAIN else f"{batch:,}"
            row[0].plot(line["oracle_evals"], line["train_loss"], color=colours[batch], marker=".", label=label)
            if line["wall_s"].notna().any():
                row[1].plot(line["wall_s"], line["train_loss"], color=colours[batch], marker=".")
        row[0].set_ylabel(f"{method}\ntraining loss")
        row[0].xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(thousands))
        row[1].set_xscale("log")
        for ax in row:
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        row[1].legend(*row[0].get_legend_handles_labels(), title="batch size", fontsize=6, title_fontsize=6,
                      frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1))
    axes[-1][0].set_xlabel("oracle calls")
    axes[-1][1].set_xlabel("seconds (timing pass)")
    fig.tight_layout()
    return fig


def weight_decay_results(frame: pd.DataFrame) -> pd.DataFrame:
    """The weight-decay study's finals (scenario l2, its methods, each decay of the definition's
    range for the method's kind): test accuracy, test loss and the final weights' norm per
    method and decay (mean, std over finished seeds), and ``shrinkage``: the peak learning rate
    x the decay, the fraction a step at the peak rate takes off the weights (decoupled decay
    exactly; coupled L2 before SGD's momentum or Adam's preconditioner rescale it)."""
    from ..study.definition import WD_METHODS, weight_decays
    runs = _finals(frame)
    if runs.empty:
        return pd.DataFrame()
    last = _last(runs[runs["scenario"] == "l2"])
    if last.empty:
        return pd.DataFrame()
    last = last.assign(weight_decay=_hparam(last, "weight_decay").astype(float))
    last = last.assign(shrinkage=_hparam(last, "lr").astype(float) * last["weight_decay"])
    keep = pd.Series(False, index=last.index)
    for kind, methods in WD_METHODS.items():
        keep |= last["optimizer"].isin(methods) & last["weight_decay"].isin(weight_decays(kind))
    last = last[keep]
    if last.empty:
        return pd.DataFrame()
    return (last.assign(kind=last["optimizer"].map(lambda m: next(k for k, ms in WD_METHODS.items() if m in ms)))
            .groupby(["kind", "optimizer", "weight_decay"])
            .agg(**STATS, weight_norm=("weight_norm", "mean"), shrinkage=("shrinkage", "mean")).reset_index())


def weight_decay_plot(table: pd.DataFrame):
    """Test accuracy, test loss and weight norm (columns) against the weight decay (top row) and
    against the per-step shrinkage, rate x decay (bottom row); one line per method (solid:
    coupled L2, dashed: decoupled)."""
    fig, axes = plt.subplots(2, 3, figsize=(PAGE_WIDTH, 2.9))
    methods = sorted(table["optimizer"].unique())
    look = styles(methods)
    for (kind, method), line in table.groupby(["kind", "optimizer"]):
        style = {**look[str(method)], "linestyle": "-" if kind == "coupled" else "--",
                 "marker": "os^DvP"[methods.index(method) % 6]}  # members of one family: shades alike
        for row, x in zip(axes, ("weight_decay", "shrinkage")):
            row[0].errorbar(line[x], line["test_acc_mean"], yerr=line["test_acc_std"].fillna(0), capsize=2,
                            label=f"{method} ({kind})", **style)
            row[1].errorbar(line[x], line["test_loss_mean"], yerr=line["test_loss_std"].fillna(0), capsize=2,
                            **style)
            row[2].plot(line[x], line["weight_norm"], **style)
    for row, xlabel in zip(axes, ("weight decay", r"rate $\times$ decay")):
        for ax, label in zip(row, ("test accuracy (%)", "test loss", "final weight norm")):
            ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(label)
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def preprocessing_results(frame: pd.DataFrame) -> pd.DataFrame:
    """Standard scenario, the methods re-tuned on [0, 1] pixels: each beside its standardised-pixel
    finals at the study's own recipe (main study rows), and the starter (unit pixels, its fixed
    recipe). One row per (method, pixels)."""
    runs = _finals(frame)
    if runs.empty:
        return pd.DataFrame()
    runs = runs[runs["scenario"] == "standard"]
    from ..study.definition import get_profile
    epochs = get_profile("full").epochs
    unit = runs[(runs["scaling"] == "unit") & (runs["tag"].astype(str) != "starter")]
    methods = set(unit["optimizer"])
    if not methods:
        return pd.DataFrame()
    standard = runs[(runs["scaling"] != "unit") & runs["optimizer"].isin(methods) &
                    (runs["planned_epochs"] == epochs) & (runs["batch_size"].map(_batch) == 64)]
    starter = runs[runs["tag"].astype(str) == "starter"]
    parts = [(unit, UNIT), (standard, STANDARDISED), (starter, STARTER_PIXELS)]
    rows = []
    for part, pixels in parts:
        last = _last(part, finished=False)
        if last.empty:
            continue
        label = last["optimizer"].where(last["tag"].astype(str) != "starter", "starter")
        for method, group in last.assign(method=label).groupby("method"):
            done = group[group["status"] == "finished"]
            rows.append(dict(method=method, pixels=pixels, runs=len(group), finished=len(done),
                             test_acc_mean=done["test_acc"].mean(), test_acc_std=done["test_acc"].std(),
                             test_loss_mean=done["test_loss"].mean(), test_loss_std=done["test_loss"].std()))
    return pd.DataFrame(rows)


def preprocessing_tex(table: pd.DataFrame) -> str:
    """The preprocessing ablation as a LaTeX tabular."""
    lines = [r"\begin{tabular}{llrll}", r"\toprule",
             r"method & pixels & finished/runs & test acc. (\%) & test loss \\", r"\midrule"]
    for r in table.itertuples():
        acc = f"{r.test_acc_mean:.2f} $\\pm$ {r.test_acc_std:.2f}" if pd.notna(r.test_acc_std) else f"{r.test_acc_mean:.2f}"
        loss = f"{r.test_loss_mean:.3f} $\\pm$ {r.test_loss_std:.3f}" if pd.notna(r.test_loss_std) else f"{r.test_loss_mean:.3f}"
        lines.append(f"{r.method.replace('_', chr(92) + '_')} & {r.pixels} & {r.finished}/{r.runs} & {acc} & {loss} \\\\")
    return "\n".join([*lines, r"\bottomrule", r"\end{tabular}", ""])


def starter_runs(frame: pd.DataFrame) -> pd.DataFrame:
    runs = _finals(frame)
    return runs[runs["tag"].astype(str) == "starter"] if len(runs) else runs


def starter_plot(runs: pd.DataFrame):
    """Training loss and test accuracy of each starter seed against epochs (one line per seed)."""
    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH, 1.9))
    colours = plt.get_cmap("tab10")
    for i, (seed, line) in enumerate(runs.sort_values("epoch").groupby("seed")):
        axes[0].plot(line["epoch"], line["train_loss"], color=colours(i), marker=".", label=f"seed {seed}")
        axes[1].plot(line["epoch"], line["test_acc"], color=colours(i), marker=".")
    axes[0].axhline(math.log(10), color="grey", linestyle=":", linewidth=0.8, label="ln 10 (uniform)")
    axes[0].set_ylabel("training loss")
    axes[1].set_ylabel("test accuracy (%)")
    axes[1].axhline(A.TARGET, color="grey", linestyle="--", linewidth=0.8, label=f"{A.TARGET}%")
    for ax in axes:
        ax.set_xlabel("epoch")
    handles, labels = axes[0].get_legend_handles_labels()
    extra = axes[1].get_legend_handles_labels()
    axes[1].legend(handles + extra[0], labels + extra[1], fontsize=6, frameon=False, loc="upper left",
                   bbox_to_anchor=(1.02, 1))
    fig.tight_layout()
    return fig


def _acc(mean: float, std: float) -> str:
    return f"{mean:.2f}\\%" + (f" $\\pm$ {std:.2f}" if pd.notna(std) else "")


def _name(method: str) -> str:
    return method.replace("_", "\\_")


def _size(batch: int) -> str:
    return "full" if batch == N_TRAIN else f"{batch:,}".replace(",", "{,}")


def batch_size_sentence(table: pd.DataFrame) -> str:
    """Per budget, each method's batch size with the best mean final test accuracy (LaTeX)."""
    parts = []
    for epochs, rows in table.groupby("planned_epochs"):
        best = rows.loc[rows.groupby("optimizer")["test_acc_mean"].idxmax()].sort_values("optimizer")
        items = [f"{_name(r.optimizer)} at batch {_size(r.batch)} ({_acc(r.test_acc_mean, r.test_acc_std)})"
                 for r in best.itertuples()]
        calls = f"{int(epochs) * N_TRAIN:,}".replace(",", "{,}")
        parts.append(f"at {calls} oracle calls, the highest mean test accuracy of " + " and of ".join(items))
    return ("Among the batch sizes run, " + "; ".join(parts) + ".") if parts else ""


def weight_decay_sentence(table: pd.DataFrame) -> str:
    """Per method: the decay with the best mean test accuracy, its per-step shrinkage, and the
    largest decay whose mean stays within one standard deviation (over seeds) of that best (LaTeX)."""
    parts = []
    for method, rows in table.groupby("optimizer"):
        best = rows.loc[rows["test_acc_mean"].idxmax()]
        band = best["test_acc_std"] if pd.notna(best["test_acc_std"]) else 0.0
        kept = rows.loc[rows["test_acc_mean"] >= best["test_acc_mean"] - band, "weight_decay"].max()
        shrink = f"; shrinkage {scientific(best['shrinkage'])} per step" if pd.notna(best.get("shrinkage")) else ""
        if kept > best["weight_decay"]:
            tail = f" and within one standard deviation of that up to {kept:g}"
        elif kept < rows["weight_decay"].max():
            tail = " and every larger decay more than one standard deviation below it"
        else:
            tail = ", the largest decay run"
        parts.append(f"{_name(method)} ({best['kind']}) is most accurate at decay {best['weight_decay']:g} "
                     f"({_acc(best['test_acc_mean'], best['test_acc_std'])}{shrink}){tail}")
    return ("In the weight-decay study, " + "; ".join(parts) + ".") if parts else ""


def preprocessing_sentence(table: pd.DataFrame) -> str:
    """Each re-tuned method on [0, 1] against standardised pixels, and the starter (LaTeX)."""
    by = {(r.method, r.pixels): r for r in table.itertuples()}
    parts = []
    for method in sorted(m for m, p in by if p == UNIT):
        unit, std = by[(method, UNIT)], by.get((method, STANDARDISED))
        versus = (f" against {_acc(std.test_acc_mean, std.test_acc_std)} on standardised pixels"
                  if std is not None and pd.notna(std.test_acc_mean) else "")
        parts.append(f"{_name(method)} reaches {_acc(unit.test_acc_mean, unit.test_acc_std)} on $[0, 1]$ pixels{versus}")
    starter = by.get(("starter", STARTER_PIXELS))
    if parts and starter is not None:
        parts.append(f"the starter's recipe {_acc(starter.test_acc_mean, starter.test_acc_std)}")
    return ("Re-tuned by the protocol, " + "; ".join(parts) + ".") if parts else ""


def variance_ratios(table: pd.DataFrame) -> pd.DataFrame:
    """Along each measured trajectory, at the run's own batch size: each method's own estimator's
    relative error over the plain mini-batch gradient's at the same point (``ratio`` < 1: the
    estimator has less variance). The exact measurement where there is one, else the realized
    draw (SARAH, momentum); estimates are left out. Mean over seeds per (method, estimator, checkpoint),
    with the steps since the estimator's snapshot or table refresh (``age_steps``, NaN for momentum)."""
    if table is None or table.empty:
        return pd.DataFrame()
    at_run = table[table["batch_size"] == table["run_batch"]]
    mini = at_run[at_run["estimator"] == "minibatch"][["run_id", "checkpoint", "relative"]]
    own = at_run[(at_run["estimator"] != "minibatch") & (at_run["kind"] != "estimate")]
    own = own.sort_values("kind").drop_duplicates(["run_id", "checkpoint", "estimator"])  # "exact" before "realized"
    pairs = own.merge(mini, on=["run_id", "checkpoint"], suffixes=("", "_minibatch"))
    if pairs.empty:
        return pd.DataFrame()
    pairs = pairs.assign(ratio=pairs["relative"] / pairs["relative_minibatch"])
    if "age_steps" not in pairs:
        pairs = pairs.assign(age_steps=float("nan"))
    return (pairs.groupby(["method", "estimator", "checkpoint"])
            .agg(ratio=("ratio", "mean"), kind=("kind", "first"), run_batch=("run_batch", "first"),
                 age_steps=("age_steps", "mean")).reset_index())


def _ratio(value: float) -> str:
    """A ratio for the report: two decimals from 0.1 up, three from 0.001, else m x 10^e (LaTeX)."""
    if value >= 0.1:
        return f"{value:.2f}"
    if value >= 1e-3:
        return f"{value:.3f}"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"${mantissa}\\times 10^{{{int(exponent)}}}$"


def _age(row) -> str:
    """", N steps after its snapshot" for SVRG's and SARAH's estimators (SAGA's table entries
    have many ages: the table gives their mean)."""
    if pd.isna(row["age_steps"]) or row["estimator"] == "saga":
        return ""
    steps = int(round(row["age_steps"]))
    count = f"{steps:,}".replace(",", "{,}")
    return f", {count} step{'s' if steps != 1 else ''} after its snapshot"


def variance_tex(ratios: pd.DataFrame) -> str:
    """:func:`variance_ratios` as a table: one row per path and estimator, one column per
    checkpoint; each cell the ratio to the mini-batch gradient's error, with the steps since the
    estimator's snapshot (SAGA: its table entries' mean age) in parentheses where it has one (LaTeX)."""
    from .latex import tabular
    checkpoints = sorted(ratios["checkpoint"].unique())
    body = []
    for (method, estimator), rows in ratios.groupby(["method", "estimator"]):
        at = rows.set_index("checkpoint")
        cells = []
        for c in checkpoints:
            if c not in at.index:
                cells.append("--")
                continue
            age = at.loc[c, "age_steps"]
            cells.append(_ratio(at.loc[c, "ratio"]) + (f" ({age:,.0f})".replace(",", "{,}") if pd.notna(age) else ""))
        body.append([_name(method), f"{_name(estimator)} ({rows['kind'].iloc[0]})", *cells])
    return tabular("ll" + "r" * len(checkpoints), ["path", "estimator", *(f"epoch {c:g}" for c in checkpoints)], body)


def variance_sentence(ratios: pd.DataFrame) -> str:
    """Per estimator: at which checkpoints its error is below the mini-batch gradient's on its
    own path, and its smallest and largest ratio, with the steps since its snapshot (LaTeX)."""
    parts = []
    for (method, estimator), rows in ratios.groupby(["method", "estimator"]):
        rows = rows.sort_values("checkpoint")
        below = rows.loc[rows["ratio"] < 1, "checkpoint"]
        if below.empty:
            where = "above it at every checkpoint"
        elif len(below) == len(rows):
            where = "below it at every checkpoint"
        elif (rows.loc[rows["checkpoint"] >= below.iloc[0], "ratio"] < 1).all():
            where = f"below it from epoch {below.iloc[0]:g} on"
        else:
            where = f"below it at epochs {', '.join(f'{c:g}' for c in below)} only"
        low, high = rows.loc[rows["ratio"].idxmin()], rows.loc[rows["ratio"].idxmax()]
        own = f"{_name(estimator)}'s" + ("" if estimator == method else f" (on {_name(method)}'s path)")
        span = f"{_ratio(low['ratio'])} at epoch {low['checkpoint']:g}{_age(low)}"
        if len(rows) > 1:
            span += f", up to {_ratio(high['ratio'])} at epoch {high['checkpoint']:g}{_age(high)}"
        parts.append(f"{own} is {where} ({span})")
    return ("Relative to the mini-batch gradient's error at the same point (Table~\\ref{tab:variance}), "
            + "; ".join(parts) + ".") if parts else ""
