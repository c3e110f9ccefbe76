"""Figures, tables and LaTeX macros for the report, generated from the records only."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd

from . import analysis as A
from ..optimizers import registry
from .plots import curves, density_plot, profile_plot

PDF_META = {"CreationDate": None, "Producer": None}


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#",
                "$": r"\$", "{": r"\{", "}": r"\}", "^": r"\^{}", "~": r"\~{}",
                "<": r"\textless{}", ">": r"\textgreater{}"}


def _tex(text) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(text))


def _pm(mean, std, digits=2) -> str:
    if pd.isna(mean):
        return "--"
    return f"{mean:.{digits}f}" + ("" if pd.isna(std) else f" $\\pm$ {std:.{digits}f}")


def _num(value, digits=0) -> str:
    if pd.isna(value):
        return "--"
    return f"{value:,.{digits}f}".replace(",", "{,}")


def _tabular(columns: str, header: list[str], rows: list[list[str]]) -> str:
    """A booktabs tabular; ``columns`` is the column spec, cells are LaTeX already."""
    lines = [f"\\begin{{tabular}}{{{columns}}}", r"\toprule", " & ".join(header) + r" \\", r"\midrule"]
    lines += [" & ".join(r) + r" \\" for r in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def final_table_tex(results: pd.DataFrame, scenario: str, top: int | None = None) -> str:
    rows = results[results["scenario"] == scenario]
    if scenario.startswith("sparse"):
        rows = rows.sort_values("test_acc_mean", ascending=False)
    rows = rows.head(top) if top else rows
    body = []
    for _, r in rows.iterrows():
        method = _tex(r["method"]) + ("" if r["sparsity_strategy"] == "projection" or not scenario.startswith("sparse")
                                      else f" ({_tex(r['sparsity_strategy'])})")
        body.append([method, _tex(r["family"]), _pm(r["test_acc_mean"], r["test_acc_std"]),
                     _pm(r["test_loss_mean"], None, 4), _pm(r["test_starter_loss_mean"], None, 5),
                     str(int(r["seeds"])), _num(r["oracle_evals"]), _num(r["wall_s"], 1)])
    return _tabular("llrrrrrr", ["method", "family", r"test acc.\ (\%)", "test loss", "starter loss", "seeds",
                                 "oracle calls", "time (s)"], body)


def time_to_target_tex(ttt: pd.DataFrame, top: int = 12) -> str:
    body = [[_tex(r["method"]), f"{int(r['reached'])}/{int(r['seeds'])}", _num(r["epoch"], 2),
             _num(r["oracle_evals"]), _num(r["wall_s"], 1)] for _, r in ttt.head(top).iterrows()]
    return _tabular("lrrrr", ["method", "seeds reaching", "epochs", "oracle calls", "time (s)"], body)


def methods_tex() -> str:
    body = [[_tex(name), _tex(spec.family), _tex(spec.description)]
            for name, spec in sorted(registry().items(), key=lambda kv: (kv[1].family, kv[0]))]
    return _tabular("llp{10.5cm}", ["name", "family", "method"], body)


def _cells(table: pd.DataFrame) -> list[str]:
    """Test accuracy as "mean ± std (seeds)", one string per row of a results table."""
    return [_pm(m, s) + f" ({int(n)})" for m, s, n in
            zip(table["test_acc_mean"], table["test_acc_std"], table["seeds"])]


def _filled(row) -> list[str]:
    return ["--" if pd.isna(v) else v for v in row]


def families_tex(table: pd.DataFrame, scenarios=A.MAIN_SCENARIOS) -> str:
    """Best member of each family (rows) in each scenario (columns): "member: mean ± std (seeds)"."""
    if table.empty:
        return ""
    cell = table.assign(cell=[f"{_tex(m)}: {c}" for m, c in zip(table["method"], _cells(table))])
    pivot = cell.pivot_table(index="family", columns="scenario", values="cell", aggfunc="first")
    cols = [s for s in scenarios if s in pivot.columns]
    body = [[_tex(family), *_filled(row)] for family, row in pivot[cols].iterrows()]
    return _tabular("l" * (1 + len(cols)), ["family", *map(_tex, cols)], body)


def density_tex(table: pd.DataFrame) -> str:
    """Accuracy against density: one row per method and strategy, cells "mean ± std (seeds)"."""
    if table.empty:
        return ""
    pivot = table.assign(cell=_cells(table)).pivot_table(
        index=["method", "sparsity_strategy"], columns="density", values="cell",
        aggfunc="first").sort_index(axis=1, ascending=False)
    body = [[_tex(method), _tex(strategy), *_filled(row)] for (method, strategy), row in pivot.iterrows()]
    return _tabular("ll" + "r" * len(pivot.columns), ["method", "strategy", *(f"{100 * c:g}\\%" for c in pivot.columns)],
                    body)


def macros(results: pd.DataFrame, ttt: pd.DataFrame, frame: pd.DataFrame, cost: dict | None = None) -> dict[str, str]:
    """Every number the report's prose uses, by name."""
    out = {"Target": f"{A.TARGET:.2f}", "NumRuns": str(frame["run_id"].nunique()),
           "NumMethods": str(frame["method"].nunique()), "NumRegistered": str(len(registry()))}
    if cost:
        out.update(StudyRuns=_num(cost["runs"]), StudyTuningRuns=_num(cost["tuning_runs"]),
                   StudyHours=f"{cost['train_hours']:.1f}")
    out["Coverage"] = _tex(coverage(frame))
    best = A.best_per_scenario(results)
    names = {"standard": "Standard", "l2": "Ltwo", "sparse60": "Sparse"}
    for scenario, key in names.items():
        if scenario in best.index:
            row = best.loc[scenario]
            out[f"Best{key}Method"] = _tex(row["method"])
            optimizer = frame.loc[frame["method"] == row["method"], "optimizer"].iloc[0]
            out[f"Best{key}Description"] = _tex(registry()[optimizer].description)
            out[f"Best{key}Acc"] = f"{row['test_acc_mean']:.2f}"
            out[f"Best{key}Std"] = f"{row['test_acc_std']:.2f}" if pd.notna(row["test_acc_std"]) else "--"
            out[f"Best{key}Loss"] = f"{row['test_loss_mean']:.4f}"
            out[f"Best{key}StarterLoss"] = f"{row['test_starter_loss_mean']:.5f}"
            out[f"Best{key}Seeds"] = str(int(row["seeds"]))
            out[f"Best{key}Hparams"] = _tex(", ".join(f"{k}={v}" for k, v in A.hparams_of(row).items()
                                                      if v not in (0, 0.0)))
    if "standard" in best.index and "sparse60" in best.index:
        out["SparseGap"] = f"{best.loc['standard', 'test_acc_mean'] - best.loc['sparse60', 'test_acc_mean']:.2f}"
    starter = results[(results["method"].str.contains("starter")) & (results["scenario"] == "standard")]
    if len(starter):
        out["StarterAcc"] = f"{starter['test_acc_mean'].iloc[0]:.2f}"
        out["StarterSeeds"] = str(int(starter["seeds"].iloc[0]))
    reached = ttt[ttt["reached"] > 0] if len(ttt) else ttt
    if len(reached):
        fastest = reached.iloc[0]
        out.update(FastestMethod=_tex(fastest["method"]), FastestEpochs=f"{fastest['epoch']:.2f}",
                   FastestGradEvals=_num(fastest["grad_evals"]), FastestOracle=_num(fastest["oracle_evals"]),
                   FastestWall=f"{fastest['wall_s']:.1f}",
                   FastestReached=f"{int(fastest['reached'])}/{int(fastest['seeds'])}")
    return out


def coverage(frame: pd.DataFrame, scenario: str = "standard", full_seeds: int = 3) -> str:
    """How many registered methods have ``full_seeds`` final runs of one configuration in
    ``scenario`` (side experiments aside), fewer, or none; ``frame`` as in :func:`write_all`."""
    own = frame[(frame["scenario"] == scenario) & ~A.is_side_experiment(frame["method"])] if len(frame) else frame
    seeds = (own.groupby(["optimizer", "config_key"])["seed"].nunique().groupby("optimizer").max()
             if len(own) else pd.Series(dtype=int))
    counts = {name: int(seeds.get(name, 0)) for name in registry()}
    short = sorted(f"{n} {c}" for n, c in counts.items() if 0 < c < full_seeds)
    none = sorted(n for n, c in counts.items() if c == 0)
    text = (f"{sum(c >= full_seeds for c in counts.values())} of the {len(counts)} registered methods have "
            f"{full_seeds} seeds on the {scenario} scenario")
    if short:
        text += f", {len(short)} fewer ({', '.join(short)})"
    if none:
        text += f", {len(none)} none ({', '.join(none)})"
    return text


TARGETS = {"standard": 91.0, "l2": 91.0}
SPARSE_GAP = 0.3
FAST_BUDGET = 180_000


def targets(results: pd.DataFrame, ttt: pd.DataFrame) -> list[str]:
    """One sentence per target of the study: met, or missed by how much."""
    best = A.best_per_scenario(results)
    lines = []
    for scenario, goal in TARGETS.items():
        if scenario not in best.index:
            lines.append(f"{scenario}: no runs, target of {goal}% not assessed.")
            continue
        acc = best.loc[scenario, "test_acc_mean"]
        verdict = "met" if acc >= goal else f"missed by {goal - acc:.2f} points"
        lines.append(f"{scenario}: best mean {acc:.2f}% against the target {goal}%: {verdict}.")
    if {"standard", "sparse60"} <= set(best.index):
        gap = best.loc["standard", "test_acc_mean"] - best.loc["sparse60", "test_acc_mean"]
        verdict = "met" if gap <= SPARSE_GAP else f"missed by {gap - SPARSE_GAP:.2f} points"
        lines.append(f"sparse60: {gap:.2f} points below standard, target at most {SPARSE_GAP}: {verdict}.")
    reached = ttt[ttt["reached"] > 0] if len(ttt) else ttt
    if len(reached):
        cheapest = reached.sort_values("grad_evals").iloc[0]
        verdict = ("met" if cheapest["grad_evals"] <= FAST_BUDGET else
                   f"missed by {cheapest['grad_evals'] - FAST_BUDGET:,.0f} sample gradients")
        lines.append(f"{A.TARGET}% first reached after {cheapest['grad_evals']:,.0f} sample gradients "
                     f"({cheapest['method']}), budget {FAST_BUDGET:,}: {verdict}.")
    return lines


def macros_tex(values: dict[str, str]) -> str:
    return "".join(f"\\newcommand{{\\{k}}}{{{v}}}\n" for k, v in sorted(values.items()))


def figures(frame: pd.DataFrame, results: pd.DataFrame, out: Path, top: int = 6) -> list[Path]:
    """Curves of the best methods (standard), the performance profile, accuracy vs density."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    matplotlib.rcParams.update({"font.size": 8})
    std = results[(results["scenario"] == "standard")].head(top)
    chosen = frame.merge(std[A.GROUP], on=A.GROUP)
    if len(chosen):
        fig, axes = plt.subplots(1, 3, figsize=(10, 3), sharey=True)
        for i, (x, ax) in enumerate(zip(("epoch", "oracle_evals", "wall_s"), axes)):
            curves(chosen, y="test_acc", x=x, hue="method", ax=ax, target=A.TARGET)
            ax.set_ylim(max(80, chosen["test_acc"].min() - 1), None)
            if i and ax.get_legend():
                ax.get_legend().remove()
        fig.tight_layout()
        paths.append(_save(fig, out / "curves_standard.pdf"))
    profile = A.performance_profile(frame)
    if len(profile):
        fig, ax = plt.subplots(figsize=(5, 3))
        profile_plot(profile, ax)
        fig.tight_layout()
        paths.append(_save(fig, out / "performance_profile.pdf"))
    dens = A.accuracy_vs_density(frame)
    if dens["density"].nunique() > 1:
        fig, ax = plt.subplots(figsize=(5, 3))
        density_plot(dens, ax)
        fig.tight_layout()
        paths.append(_save(fig, out / "accuracy_vs_density.pdf"))
    return paths


def _save(fig, path: Path) -> Path:
    fig.savefig(path, metadata=PDF_META)
    fig.savefig(path.with_suffix(".png"), dpi=110)
    plt.close(fig)
    return path


def readme_markdown(results: pd.DataFrame, ttt: pd.DataFrame, target_lines: list[str],
                    cost: dict | None = None) -> str:
    """The README's results block: best method per scenario, time to target, targets, cost."""
    lines = ["| scenario | best method | test acc. (%) | test loss | starter loss | seeds |",
             "|---|---|---|---|---|---|"]
    for scenario, r in A.best_per_scenario(results).iterrows():
        std = "" if pd.isna(r["test_acc_std"]) else f" ± {r['test_acc_std']:.2f}"
        lines.append(f"| {scenario} | {r['method']} | {r['test_acc_mean']:.2f}{std} | "
                     f"{r['test_loss_mean']:.4f} | {r['test_starter_loss_mean']:.5f} | {int(r['seeds'])} |")
    if len(ttt):
        lines += ["", f"Cheapest to first reach {A.TARGET}% test accuracy (standard scenario):", "",
                  "| method | seeds reaching | epochs | sample gradients | oracle calls | seconds |",
                  "|---|---|---|---|---|---|"]
        for _, r in ttt.head(5).iterrows():
            lines.append(f"| {r['method']} | {int(r['reached'])}/{int(r['seeds'])} | {r['epoch']:.2f} | "
                         f"{r['grad_evals']:,.0f} | {r['oracle_evals']:,.0f} | {r['wall_s']:.1f} |")
    lines += ["", "Targets:", ""] + [f"- {t}" for t in target_lines]
    if cost:
        lines += ["", f"The study behind these numbers: {cost['runs']:,} runs ({cost['tuning_runs']:,} "
                  f"tuning runs on the hold-out, {cost['final_runs']:,} final runs), "
                  f"{cost['train_hours']:.1f} hours of training wall time summed over runs."]
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, block: str, name: str = "results") -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->``."""
    text = Path(readme).read_text()
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise ValueError(f"{readme} has no {start} ... {end} block")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    Path(readme).write_text(f"{head}{start}\n{block}{end}{tail}")


def write_all(frame: pd.DataFrame, report_dir: Path, records: pd.DataFrame | None = None) -> dict:
    """Write report/tables/*.tex, report/tables/macros.tex and report/figures/*; return the pieces.
    ``frame`` is :func:`helpers.evidence.analysis.study_frame`; ``records`` (all runs, tuning included)
    adds the study's cost."""
    report_dir = Path(report_dir)
    tables = report_dir / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    results = A.final_results(frame)
    ttt = A.time_to_target(frame)
    cost = A.study_cost(records) if records is not None and len(records) else None
    values = macros(results, ttt, frame, cost)
    files = {"macros.tex": macros_tex(values), "methods.tex": methods_tex(),
             "time_to_target.tex": time_to_target_tex(ttt) if len(ttt) else "",
             "targets.tex": "\\newcommand{\\TargetsText}{" + " \\\\ ".join(
                 _tex(t) for t in targets(results, ttt)) + "}\n",
             "density.tex": density_tex(A.accuracy_vs_density(frame)) if len(frame) else ""}
    families = A.best_per_family(results).reset_index() if len(results) else results
    files["final_families.tex"] = final_table_tex(families, "standard") if len(families) else ""
    files["families_by_scenario.tex"] = families_tex(A.families_by_scenario(results)) if len(results) else ""
    for scenario in A.MAIN_SCENARIOS:
        files[f"final_{scenario}.tex"] = final_table_tex(results, scenario, top=None if scenario == "standard" else 10)
    for name, text in files.items():
        (tables / name).write_text(text)
    (tables / "readme_results.md").write_text(readme_markdown(results, ttt, targets(results, ttt), cost))
    results.to_csv(tables / "final_results.csv", index=False)
    ttt.to_csv(tables / "time_to_target.csv", index=False)
    figures(frame, results, report_dir / "figures")
    return {"results": results, "time_to_target": ttt, "macros": values, "targets": targets(results, ttt)}
