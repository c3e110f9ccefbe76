"""Figures, tables and LaTeX macros for the report, generated from the records only."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd

from . import analysis as A
from . import statistics as S
from ..optimizers import registry
from .plots import density_plot, difference_plot, family_facets, metric_row, profile_plot
from .summary import COUNTING_RULE

PDF_META = {"CreationDate": None, "Producer": None}
PAGE_WIDTH = 6.6  # inches: the report's text width (A4, 2.1 cm margins), so figures print at 1:1
PAGE_PANEL = (1.6, 2.1)


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


def final_table_tex(results: pd.DataFrame, scenario: str, top: int | None = None,
                    strategies: dict[str, str] | None = None) -> str:
    """One row per method: test accuracy and test loss (mean $\\pm$ std over finished runs), the
    starter's loss figure, runs finished/diverged/failed, mean oracle calls of finished runs.
    ``strategies`` (optimizer -> strategy, e.g. :func:`helpers.evidence.analysis.holdout_strategies`)
    keeps one strategy per method: the hold-out's choice."""
    rows = results[results["scenario"] == scenario]
    if strategies:
        chosen = [strategies.get(A.method_optimizer(m), "projection") == st
                  for m, st in zip(rows["method"], rows["sparsity_strategy"])]
        rows = rows[chosen]
    if scenario.startswith("sparse"):
        rows = rows.sort_values("test_acc_mean", ascending=False)
    rows = rows.head(top) if top else rows
    body = []
    for _, r in rows.iterrows():
        method = _tex(r["method"]) + ("" if r["sparsity_strategy"] == "projection" or not scenario.startswith("sparse")
                                      else f" ({_tex(r['sparsity_strategy'])})")
        body.append([method, _tex(r["family"]), _pm(r["test_acc_mean"], r["test_acc_std"]),
                     _pm(r["test_loss_mean"], r.get("test_loss_std"), 4), _pm(r["test_starter_loss_mean"], None, 5),
                     _counts(r), _num(r["oracle_evals"])])
    return _tabular("llrrrcr", ["method", "family", r"test acc.\ (\%)", "test loss", "starter loss",
                                "fin./div./fail.", "oracle calls"], body)


def _counts(row) -> str:
    return "/".join(str(int(row.get(k, 0) if pd.notna(row.get(k, 0)) else 0))
                    for k in ("finished", "diverged", "failed"))


def time_to_target_tex(ttt: pd.DataFrame, top: int = 12) -> str:
    """Cost to first reach the target in epochs and oracle calls; no wall time: the study's runs
    share the machine and mix engines (wall time comes from the timing pass)."""
    body = [[_tex(r["method"]), f"{int(r['reached'])}/{int(r['seeds'])}", _num(r["epoch"], 2),
             _num(r["oracle_evals"])] for _, r in ttt.head(top).iterrows()]
    return _tabular("lrrr", ["method", "seeds reaching", "epochs", "oracle calls"], body)


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


def comparisons(final: pd.DataFrame, records: pd.DataFrame, scenarios=A.MAIN_SCENARIOS, root=None,
                predictions=None) -> dict[str, dict]:
    """:func:`helpers.evidence.statistics.scenario_comparison` for each scenario with final runs."""
    present = set(final["scenario"]) if len(final) else set()
    return {s: S.scenario_comparison(final, records, s, predictions=predictions, root=root)
            for s in scenarios if s in present}


def indicated_best(results: pd.DataFrame, comps: dict[str, dict]) -> pd.DataFrame:
    """Per scenario, the results row of the method the report indicates as best: the hold-out's
    best (``chosen_on`` = "hold-out"); where a scenario has no hold-out runs, the best mean test
    accuracy (:func:`helpers.evidence.analysis.best_per_scenario`), marked as chosen on the test set."""
    rows = []
    fallback = A.best_per_scenario(results) if len(results) else pd.DataFrame()
    for scenario in dict.fromkeys(results["scenario"]) if len(results) else []:
        reference = comps.get(scenario, {}).get("reference")
        if reference is not None:
            match = results[(results["scenario"] == scenario) & (results["method"] == reference[0]) &
                            (results["sparsity_strategy"] == reference[1])]
            if len(match):
                rows.append(match.iloc[0].to_dict() | {"chosen_on": "hold-out"})
                continue
        if scenario in fallback.index:
            rows.append(fallback.loc[scenario].to_dict() | {"scenario": scenario,
                                                            "chosen_on": "test (no hold-out runs)"})
    if not rows:
        return pd.DataFrame(columns=["scenario", "method", "chosen_on"]).set_index("scenario")
    best = pd.DataFrame(rows).set_index("scenario")
    order = {s: i for i, s in enumerate(A.MAIN_SCENARIOS)}
    return best.assign(_main=[order.get(s, len(order)) for s in best.index]).sort_values(
        ["_main", "test_acc_mean"], ascending=[True, False]).drop(columns="_main")


def _names(group) -> str:
    return ", ".join(m if st == "projection" else f"{m} ({st})" for m, st in group)


def comparison_tex(comparison: dict) -> str:
    """Per method: seed-matched difference to the indicated best with its 95% interval and whether it
    is separable (yes/no; -- untested), on test accuracy and on test loss; per-image McNemar tests
    (Holm) against the best: seeds significantly worse / better / not significant."""
    if "accuracy" not in comparison:
        return ""
    acc = comparison["accuracy"].set_index(list(S.KEYS))
    loss = comparison["loss"].set_index(list(S.KEYS))
    images = comparison.get("per_image")
    body = []
    for key, a in acc.iterrows():
        l = loss.loc[key] if key in loss.index else None
        name = _tex(key[0]) + ("" if key[1] == "projection" else f" ({_tex(key[1])})")
        body.append([name, str(int(a["n_pairs"])), _diff(a, 2), _VERDICT[a["verdict"]],
                     _diff(l, 3) if l is not None else "--", _VERDICT[l["verdict"]] if l is not None else "--",
                     _image_cell(images, key)])
    return _tabular("lrrcrcc", ["method", "seeds", r"$\Delta$ acc.\ [95\% CI]", "sep.", r"$\Delta$ loss [95\% CI]",
                                "sep.", "McNemar w/b/n.s."], body)


_VERDICT = {"best": "best", "separable": "yes", "not separable": "no", "untested": "--"}


def _diff(row, digits: int) -> str:
    if row is None or row["verdict"] == "best":
        return "--"
    text = f"{row['difference']:+.{digits}f}"
    if pd.notna(row.get("ci_low")):
        text += f" [{row['ci_low']:+.{digits}f}, {row['ci_high']:+.{digits}f}]"
    return text


def _image_cell(images, key) -> str:
    if images is None or images.empty:
        return "--"
    rows = images[(images["method"] == key[0]) & (images["sparsity_strategy"] == key[1])]
    if rows.empty:
        return "--"
    significant = rows["p_mcnemar_holm"] < S.ALPHA
    sign = rows["right_only_method"] - rows["right_only_best"]
    return f"{int((significant & (sign < 0)).sum())}/{int((significant & (sign > 0)).sum())}/{int((~significant).sum())}"


def answer(comparison: dict, best_row) -> str:
    """The scenario's answer in two sentences, every name and number from the records."""
    scenario = comparison["scenario"]
    if comparison.get("reference") is None or best_row is None:
        return f"{scenario}: no hold-out ranking, so no method is indicated as best."
    method = comparison["reference"][0]
    group_acc = [g for g in comparison["group_accuracy"] if g != comparison["reference"]]
    group_loss = [g for g in comparison["group_loss"] if g != comparison["reference"]]
    first = (f"In the {scenario} scenario the hold-out indicates {method}, at "
             f"{best_row['test_acc_mean']:.2f}% test accuracy and test loss {best_row['test_loss_mean']:.4f} "
             f"over {int(best_row['seeds'])} finished seeds.")
    second = (f"Not separable from it on accuracy: {len(group_acc)} methods"
              + (f" ({_names(group_acc)})" if group_acc else "")
              + f"; on test loss: {len(group_loss)}" + (f" ({_names(group_loss)})" if group_loss else "") + ".")
    untested = comparison["accuracy"]["verdict"].eq("untested").sum()
    if untested:
        second += (f" {int(untested)} method{'s' if untested > 1 else ''} with fewer than 2 paired seeds "
                   f"{'are' if untested > 1 else 'is'} untested.")
    return f"{first} {second}"


def macros(results: pd.DataFrame, ttt: pd.DataFrame, frame: pd.DataFrame, cost: dict | None = None,
           comps: dict[str, dict] | None = None) -> dict[str, str]:
    """Every number and every ranking word the report's prose uses, by name. ``Best<Scenario>*``
    describe the indicated best (:func:`indicated_best`); ``Group<Scenario>Acc``/``Loss`` name the
    methods not separable from it; ``Answer<Scenario>`` is the scenario's answer (:func:`answer`)."""
    comps = comps or {}
    out = {"Target": f"{A.TARGET:.2f}", "NumRuns": str(frame["run_id"].nunique()),
           "NumMethods": str(frame["method"].nunique()), "NumRegistered": str(len(registry()))}
    if cost:
        out.update(StudyRuns=_num(cost["runs"]), StudyTuningRuns=_num(cost["tuning_runs"]),
                   StudyHours=f"{cost['train_hours']:.1f}")
    out["Coverage"] = _tex(coverage(frame))
    out["CountingRule"] = _tex(COUNTING_RULE)
    rules = "; ".join(S.RULES.values())
    out["StatsRule"] = _tex(rules[:1].upper() + rules[1:] + ".")
    best = indicated_best(results, comps)
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
            out[f"Best{key}ChosenOn"] = _tex(row["chosen_on"])
            out[f"Best{key}Runs"] = _counts(row)
        comp = comps.get(scenario, {})
        if comp.get("reference") is not None:
            others = lambda g: [m for m in g if m != comp["reference"]]  # noqa: E731
            out[f"Group{key}Acc"] = _tex(_names(others(comp["group_accuracy"])) or "none")
            out[f"Group{key}Loss"] = _tex(_names(others(comp["group_loss"])) or "none")
            out[f"Group{key}AccCount"] = str(len(others(comp["group_accuracy"])))
            out[f"Group{key}LossCount"] = str(len(others(comp["group_loss"])))
            out[f"Answer{key}"] = _tex(answer(comp, best.loc[scenario] if scenario in best.index else None))
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


def targets(results: pd.DataFrame, ttt: pd.DataFrame, best: pd.DataFrame | None = None) -> list[str]:
    """One sentence per target of the study: met, or missed by how much (``best``: :func:`indicated_best`)."""
    best = indicated_best(results, {}) if best is None else best
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


def _power(value: float) -> str:
    """1e-06 -> "$10^{-6}$", 0.5 -> "0.5"."""
    exponent = math.log10(value) if value > 0 else float("nan")
    if exponent == round(exponent):
        return "$1$" if exponent == 0 else f"$10^{{{int(exponent)}}}$"
    return f"{value:g}"


def protocol_macros(profile: str = "full") -> dict[str, str]:
    """The study definition's constants (helpers.study.definition) as macros, so the report's
    protocol section types none of them; empty where the definition is not there."""
    try:
        from ..study import definition as D
        from ..constraints.scenarios import get_scenario
        from ..problem.data import N_TEST, N_TRAIN
        p = D.get_profile(profile)
    except (ImportError, AttributeError, ValueError):
        return {}
    rows = {r.name: r for r in p.rows_in()}
    out = {"ProtocolEpochs": str(p.epochs), "ProtocolValSize": _num(p.val_size),
           "ProtocolTuneImages": _num(N_TRAIN - p.val_size), "ProtocolTrainImages": _num(N_TRAIN),
           "ProtocolTestImages": _num(N_TEST), "ProtocolBudget": _num(p.epochs * N_TRAIN),
           "ProtocolTuneBudget": _num(p.epochs * (N_TRAIN - p.val_size)),
           "ProtocolGridPoints": str(p.grid_points), "ProtocolGridExtension": str(p.grid_extension),
           "ProtocolQmcTrials": str(p.qmc_trials), "ProtocolLtwoTrials": str(p.l2_trials),
           "ProtocolSparseRates": str(p.sparse_rates), "ProtocolTopK": str(p.top_k),
           "ProtocolEvalsPerEpoch": str(p.evals_per_epoch)}
    if "standard" in rows:
        out.update(ProtocolSeeds=str(rows["standard"].seeds), ProtocolTopSeeds=str(rows["standard"].top_seeds))
    if "starter" in rows:
        out["ProtocolStarterSeeds"] = str(rows["starter"].seeds)
    for kind, (low, high) in getattr(D, "WEIGHT_DECAY", {}).items():
        out[f"ProtocolWd{kind.capitalize()}"] = f"{_power(low)} to {_power(high)}"
    thinner = [get_scenario(n) for n in getattr(D, "THINNER", ())]
    if thinner:
        out["ProtocolThinner"] = ", ".join(f"{_tex(sc.name)} ({100 * sc.density:g}\\%)" for sc in thinner)
    for name, text in (D.strategy_settings().items() if hasattr(D, "strategy_settings") else ()):
        out[f"ProtocolStrategy{name.capitalize()}"] = _tex(text)
    return out


def macros_tex(values: dict[str, str]) -> str:
    return "".join(f"\\newcommand{{\\{k}}}{{{v}}}\n" for k, v in sorted(values.items()))


def figures(frame: pd.DataFrame, results: pd.DataFrame, out: Path, top: int = 6,
            best: pd.DataFrame | None = None, comps: dict | None = None) -> list[Path]:
    """Training loss, test loss and test accuracy of the indicated best and the methods with the
    highest mean test accuracy (standard, ``top`` lines); per main scenario the family panels of
    test accuracy and test loss and the seed-matched differences to the best; the performance
    profile; accuracy against density."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    matplotlib.rcParams.update({"font.size": 8})
    std = results[(results["scenario"] == "standard")].sort_values("test_acc_mean", ascending=False)
    if best is not None and "standard" in best.index:
        lead = std[std["method"] == best.loc["standard", "method"]]
        std = pd.concat([lead, std.drop(lead.index)])
    chosen = _lines(frame.merge(std.head(top)[A.GROUP], on=A.GROUP))
    if len(chosen):
        fig = metric_row(chosen, hue="line", target=A.TARGET, panel=PAGE_PANEL)
        paths.append(_save(fig, out / "curves_standard.pdf"))
    for scenario in A.MAIN_SCENARIOS:
        runs = _lines(frame.merge(results[results["scenario"] == scenario][A.GROUP], on=A.GROUP))
        for y in ("test_acc", "test_loss"):
            if len(runs):
                fig = family_facets(runs, y, hue="line", target=A.TARGET, panel=(PAGE_WIDTH / 3, 3.4))
                paths.append(_save(fig, out / f"families_{scenario}_{y}.pdf"))
    for scenario, comp in (comps or {}).items():
        if "accuracy" in comp and len(comp["accuracy"]) > 1:
            axes = difference_plot({"test accuracy difference (points)": comp["accuracy"],
                                    "test loss difference": comp["loss"]})
            axes[0].figure.tight_layout()
            paths.append(_save(axes[0].figure, out / f"differences_{scenario}.pdf"))
    profile = A.performance_profile(frame)
    if len(profile):
        fig, ax = plt.subplots(figsize=(6, 3))
        profile_plot(profile, ax)
        fig.tight_layout()
        paths.append(_save(fig, out / "performance_profile.pdf"))
    dens = A.accuracy_vs_density(frame)
    if dens["density"].nunique() > 1:
        fig, ax = plt.subplots(figsize=(PAGE_WIDTH, 2.8))
        density_plot(dens, ax)
        fig.tight_layout()
        paths.append(_save(fig, out / "accuracy_vs_density.pdf"))
    return paths


def _lines(frame: pd.DataFrame) -> pd.DataFrame:
    """``line``: the method label, plus the sparsity strategy where it is not the projection."""
    return frame.assign(line=[m if st == "projection" else f"{m} / {st}"
                              for m, st in zip(frame["method"], frame["sparsity_strategy"])])


def _save(fig, path: Path) -> Path:
    fig.savefig(path, metadata=PDF_META)
    fig.savefig(path.with_suffix(".png"), dpi=110)
    plt.close(fig)
    return path


def readme_markdown(results: pd.DataFrame, ttt: pd.DataFrame, target_lines: list[str],
                    cost: dict | None = None, best: pd.DataFrame | None = None,
                    answers: list[str] | None = None) -> str:
    """The README's results block: the indicated best per scenario (with how it was chosen and its
    runs finished/diverged/failed), the answers, time to target, targets, cost."""
    best = indicated_best(results, {}) if best is None else best
    lines = ["| scenario | indicated best | chosen on | test acc. (%) | test loss | starter loss | "
             "runs fin./div./fail. |", "|---|---|---|---|---|---|---|"]
    for scenario, r in best.iterrows():
        std = "" if pd.isna(r["test_acc_std"]) else f" ± {r['test_acc_std']:.2f}"
        lines.append(f"| {scenario} | {r['method']} | {r['chosen_on']} | {r['test_acc_mean']:.2f}{std} | "
                     f"{r['test_loss_mean']:.4f} | {r['test_starter_loss_mean']:.5f} | {_counts(r)} |")
    if answers:
        lines += [""] + answers
    lines += ["", f"How to read it: {COUNTING_RULE} Separability: {S.RULES['group']}."]
    if len(ttt):
        lines += ["", f"Cheapest to first reach {A.TARGET}% test accuracy (standard scenario):", "",
                  "| method | seeds reaching | epochs | sample gradients | oracle calls |",
                  "|---|---|---|---|---|"]
        for _, r in ttt.head(5).iterrows():
            lines.append(f"| {r['method']} | {int(r['reached'])}/{int(r['seeds'])} | {r['epoch']:.2f} | "
                         f"{r['grad_evals']:,.0f} | {r['oracle_evals']:,.0f} |")
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


def write_all(frame: pd.DataFrame, report_dir: Path, records: pd.DataFrame | None = None, root=None,
              predictions=None, draw: bool = True) -> dict:
    """Write report/tables/*.tex, report/tables/macros.tex and report/figures/*; return the pieces.
    ``frame`` is :func:`helpers.evidence.analysis.study_frame`; ``records`` (all runs, tuning included)
    adds the failed runs to the counts, the hold-out choice of the best, the statistics and the
    study's cost; ``root``/``predictions`` locate the stored per-image predictions; ``draw=False``
    skips the figures."""
    report_dir = Path(report_dir)
    tables = report_dir / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    final = A.final_frame(frame=records) if records is not None and len(records) else frame
    results = A.final_results(final)
    ttt = A.time_to_target(frame)
    cost = A.study_cost(records) if records is not None and len(records) else None
    comps = comparisons(final, records, root=root, predictions=predictions) if cost else {}
    best = indicated_best(results, comps)
    values = macros(results, ttt, frame, cost, comps)
    target_lines = targets(results, ttt, best)
    values.update(protocol_macros())
    files = {"macros.tex": macros_tex(values), "methods.tex": methods_tex(),
             "time_to_target.tex": time_to_target_tex(ttt) if len(ttt) else "",
             "targets.tex": "\\newcommand{\\TargetsText}{" + " \\\\ ".join(_tex(t) for t in target_lines) + "}\n",
             "density.tex": density_tex(A.accuracy_vs_density(frame)) if len(frame) else ""}
    families = A.best_per_family(results).reset_index() if len(results) else results
    files["final_families.tex"] = final_table_tex(families, "standard") if len(families) else ""
    files["families_by_scenario.tex"] = families_tex(A.families_by_scenario(results)) if len(results) else ""
    for scenario in A.MAIN_SCENARIOS:
        chosen = A.holdout_strategies(records, scenario) if cost and scenario.startswith("sparse") else None
        files[f"final_{scenario}.tex"] = final_table_tex(results, scenario, top=None if scenario == "standard" else 10,
                                                         strategies=chosen)
        files[f"comparison_{scenario}.tex"] = comparison_tex(comps.get(scenario, {}))
    for name, text in files.items():
        (tables / name).write_text(text)
    answers = [answer(c, best.loc[s] if s in best.index else None) for s, c in comps.items()]
    (tables / "readme_results.md").write_text(readme_markdown(results, ttt, target_lines, cost, best, answers))
    results.to_csv(tables / "final_results.csv", index=False)
    ttt.to_csv(tables / "time_to_target.csv", index=False)
    for scenario, comp in comps.items():
        for part in ("accuracy", "loss", "per_image"):
            if isinstance(comp.get(part), pd.DataFrame) and len(comp[part]):
                comp[part].to_csv(tables / f"statistics_{scenario}_{part}.csv", index=False)
    if draw:
        figures(frame, results, report_dir / "figures", best=best, comps=comps)
    return {"results": results, "time_to_target": ttt, "macros": values, "targets": target_lines,
            "comparisons": comps, "best": best}
