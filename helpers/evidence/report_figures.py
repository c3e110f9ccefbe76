"""The report's figures (``report/figures/*.pdf``) and the LaTeX snippet that places each, or says which study rows are not run yet."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd

from . import analysis as A
from . import side_studies as SS
from .latex import tex
from .plots import PAGE_WIDTH, density_plot, difference_plot
from .report_tables import FAMILY_ORDER, SCENARIO_ROWS

PDF_META = {"CreationDate": None, "Producer": None}


def _lines(frame: pd.DataFrame) -> pd.DataFrame:
    """``line``: the method label, plus the sparsity strategy where it is not the projection."""
    return frame.assign(line=[m if st == "projection" else f"{m} / {st}"
                              for m, st in zip(frame["method"], frame["sparsity_strategy"])])


def _save_figure(fig, path: Path) -> Path:
    fig.savefig(path, metadata=PDF_META)
    fig.savefig(path.with_suffix(".png"), dpi=110)
    plt.close(fig)
    return path


FAMILY_PANELS = {"sgd": ("SGD: basic, mini-batch, full batch",),
                 "momentum": ("momentum, SGD-type", "momentum, Adam-type"),
                 "noise_reduction": ("noise reduction: variance-reduced gradients", "noise reduction: iterate averaging"),
                 "second_order": ("second order",)}


def _family_figure(runs: pd.DataFrame, family: str):
    from .plots import family_grid
    fig = family_grid(runs, target=A.TARGET, panels=list(FAMILY_PANELS[family]), hue="line")
    rows = len(fig.axes) // 3 if len(fig.axes) >= 3 else 1
    fig.set_size_inches(PAGE_WIDTH, 1.4 * rows + 0.15)
    fig.tight_layout()
    return fig


def _variance_table(measurements: pd.DataFrame | None) -> pd.DataFrame:
    if measurements is None or measurements.empty or "estimator" not in measurements:
        return pd.DataFrame()
    return measurements[measurements["relative"].notna()]


def variance_plot(table: pd.DataFrame):
    """Relative error of each gradient estimator to the full gradient, ||g - F||^2 / ||F||^2:
    left, along each method's trajectory at the run's own batch size (solid: the method's own
    estimator; dotted: a plain mini-batch gradient at the same point); right, against the batch
    size at the last checkpoint (exact or estimated, as measured)."""
    from .plots import styles, thousands
    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH, 3.0))
    look = styles(table["method"].unique())
    own = table[table["batch_size"] == table["run_batch"]]
    for (method, estimator), line in own.groupby(["method", "estimator"]):
        if estimator == "minibatch" and method != "sgd" and (own["method"] == method).any() and \
                (own.loc[own["method"] == method, "estimator"] != "minibatch").any():
            style = {**look[str(method)], "linestyle": ":", "markerfacecolor": "white"}
            label = f"mini-batch on {method}'s path"
        else:
            style, label = look[str(method)], (estimator if estimator != "minibatch" else "mini-batch (sgd)")
        line = line.groupby("checkpoint")["relative"].mean()
        axes[0].plot(line.index, line.values, label=label, **style)
    last = table[table["checkpoint"] == table.groupby("method")["checkpoint"].transform("max")]
    for (method, estimator, kind), line in last.groupby(["method", "estimator", "kind"]):
        if kind == "realized" or (estimator == "minibatch" and method != "sgd"):
            continue
        line = line.groupby("batch_size")["relative"].mean()
        name = "mini-batch" if estimator == "minibatch" else estimator
        axes[1].plot(line.index, line.values, label=f"{name} ({kind})", **look[str(method)])
    axes[0].set_xlabel("epochs of oracle calls (checkpoint)")
    checkpoints = sorted(table["checkpoint"].unique())
    axes[0].set_xticks(checkpoints, [f"{c:g}" for c in checkpoints])
    axes[1].set_xlabel("batch size (last checkpoint)")
    axes[1].set_xscale("log")
    axes[1].xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(thousands))
    axes[0].set_ylabel(r"$\|g - \nabla f\|^2 / \|\nabla f\|^2$")
    for ax in axes:
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    fig.tight_layout(rect=(0, 0.27, 1, 1))  # the bottom for the legends, below each panel
    for ax in axes:
        box = ax.get_position()
        ax.legend(fontsize=6, frameon=False, loc="lower center", ncol=2, bbox_transform=fig.transFigure,
                  bbox_to_anchor=(box.x0 + box.width / 2, 0.0))
    return fig


def report_figures(frame: pd.DataFrame, results: pd.DataFrame, comps: dict, out: Path, state=None,
                   all_frame: pd.DataFrame | None = None, draw: bool = True,
                   measurements: pd.DataFrame | None = None) -> dict[str, str]:
    """Every figure of the report as a LaTeX snippet (name -> text): the drawn figure where the
    records have its data, else a framed note saying which definition rows are not run yet.
    ``frame``/``results``: the main study's (:func:`main_study`; accuracy against density too);
    ``all_frame``: every final run (the side studies). ``draw=False``: the same snippets, nothing drawn."""
    from . import report_status as RS
    out.mkdir(parents=True, exist_ok=True)

    def _save(fig, path):
        if draw:
            _save_figure(fig() if callable(fig) else fig, path)

    matplotlib.rcParams.update({"font.size": 8})
    all_frame = frame if all_frame is None else all_frame
    wanted = {}

    def pend(rows):
        return RS.pending(state, rows) if state is not None else "no records"

    std = _lines(frame[frame["scenario"] == "standard"]) if len(frame) else frame
    for family in FAMILY_ORDER:
        runs = std[std["family"] == family] if len(std) else std
        name = f"family_{family}"
        if len(runs) and runs["train_loss"].notna().any():
            _save(lambda: _family_figure(runs, family), out / f"{name}.pdf")
            wanted[name] = RS.figure_tex(f"figures/{name}.pdf")
        else:
            wanted[name] = RS.pending_figure(f"no final run of this family in the standard scenario yet "
                                             f"({pend(['standard'])})")
    ready = {s: comps[s] for s in A.MAIN_SCENARIOS
             if "accuracy" in comps.get(s, {}) and len(comps[s]["accuracy"]) > 1}
    if ready:
        _save(lambda: _accuracy_differences_figure(ready), out / "differences.pdf")
        wanted["differences"] = RS.figure_tex("figures/differences.pdf")
    missing = [s for s in A.MAIN_SCENARIOS if s not in ready]
    if missing:
        note = "; ".join(f"{tex(s)}: no hold-out ranking with paired final seeds yet ({pend(SCENARIO_ROWS[s])})"
                         for s in missing)
        wanted["differences"] = wanted.get("differences", "") + RS.pending_figure(note)
    from ..study.definition import STUDY_ROWS
    study_rows = {s: [r.name for r in STUDY_ROWS if r.study == s] for s in ("batch_size", "weight_decay")}
    batch_rows = f"{pend(study_rows['batch_size'][:1])} and {len(study_rows['batch_size']) - 1} more rows"
    batch = SS.batch_size_results(all_frame)
    if len(batch) and batch["batch"].nunique() > 1:
        _save(lambda: SS.batch_size_plot(batch), out / "batch_size.pdf")
        wanted["batch_size"] = RS.figure_tex("figures/batch_size.pdf")
    else:
        wanted["batch_size"] = RS.pending_figure(f"the batch-size study has no two batch sizes finished ({batch_rows})")
    curves = SS.batch_size_curves(all_frame)
    if len(curves) and curves["batch"].nunique() > 1:
        _save(lambda: SS.batch_size_curves_plot(curves), out / "batch_size_curves.pdf")
        wanted["batch_size_curves"] = RS.figure_tex("figures/batch_size_curves.pdf")
    else:
        wanted["batch_size_curves"] = RS.pending_figure(
            f"no two batch sizes finished at the small common budget yet ({batch_rows})")
    decay = SS.weight_decay_results(all_frame)
    if len(decay) and decay["weight_decay"].nunique() > 1:
        _save(lambda: SS.weight_decay_plot(decay), out / "weight_decay.pdf")
        wanted["weight_decay"] = RS.figure_tex("figures/weight_decay.pdf")
    else:
        rows = study_rows["weight_decay"]
        wanted["weight_decay"] = RS.pending_figure(f"no two weight decays finished yet ({pend(rows[:1])} and "
                                                   f"{len(rows) - 1} more rows)")
    dens = A.accuracy_vs_density(frame) if len(frame) else pd.DataFrame()
    if len(dens) and dens["density"].nunique() > 1:
        _save(lambda: _density_figure(dens), out / "accuracy_vs_density.pdf")
        wanted["accuracy_vs_density"] = RS.figure_tex("figures/accuracy_vs_density.pdf")
    else:
        from ..study.definition import THINNER
        wanted["accuracy_vs_density"] = RS.pending_figure(
            f"no sparse run beside its standard run yet ({pend(['sparse60', *THINNER[:1]])}, ...)")
    variance = _variance_table(measurements)
    if len(variance) and variance["checkpoint"].nunique() > 0:
        _save(lambda: variance_plot(variance), out / "variance.pdf")
        wanted["variance"] = RS.figure_tex("figures/variance.pdf")
    else:
        wanted["variance"] = RS.pending_figure("no gradient-variance measurement along the tuned trajectories yet ("
                                               + (pend(["variance"]) if state is not None else "no records") + ")")
    keep = {f"{n}.pdf" for n, t in wanted.items() if "includegraphics" in t}
    for old in (list(out.glob("*.pdf")) + list(out.glob("*.png"))) if draw else ():
        if old.with_suffix(".pdf").name not in keep:
            old.unlink()
    return wanted


def _accuracy_differences_figure(comps: dict):
    """Seed-matched test-accuracy differences, one panel per scenario (each with its own methods),
    the same row spacing in every panel: a panel with fewer rows is shorter, aligned at the top."""
    counts = {scenario: len(comp["accuracy"]) for scenario, comp in comps.items()}
    rows = max(counts.values())
    fig, axes = plt.subplots(1, len(comps), figsize=(PAGE_WIDTH, 0.085 * rows + 0.9), squeeze=False)
    for ax, (scenario, comp) in zip(axes[0], comps.items()):
        difference_plot({f"{scenario}: test acc. difference (points)": comp["accuracy"]}, axes=[ax])
        legend = ax.get_title(loc="left")
        ax.set_title("", loc="left")
        ax.set_title(scenario, fontsize=7)
        ax.set_xlabel("test acc. difference (points)", fontsize=6.5)
        ax.tick_params(axis="y", labelsize=5.5)
        ax.tick_params(axis="x", labelsize=6)
        ax.set_ylim(counts[scenario] - 0.5, -0.5)
        for line in ax.get_lines():
            line.set_markersize(4)
    fig.text(0.01, 0.995, legend, fontsize=6, va="top")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    for ax, scenario in zip(axes[0], comps):
        box = ax.get_position()
        height = box.height * counts[scenario] / rows
        ax.set_position([box.x0, box.y1 - height, box.width, height])
    return fig


def _density_figure(dens: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH, 2.3))
    density_plot(dens, ax)
    fig.tight_layout()
    return fig
