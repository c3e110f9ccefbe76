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
from . import side_studies as SS
from .plots import PAGE_WIDTH, density_plot, difference_plot, family_facets, metric_row, profile_plot
from .summary import COUNTING_RULE

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


def _tabular(columns: str, header: list[str], rows: list[list[str]], raw=()) -> str:
    """A booktabs tabular; ``columns`` is the column spec, cells are LaTeX already; ``raw``: whole
    lines (e.g. a \\multicolumn note) after the rows."""
    lines = [f"\\begin{{tabular}}{{{columns}}}", r"\toprule", " & ".join(header) + r" \\", r"\midrule"]
    lines += [" & ".join(r) + r" \\" if isinstance(r, list) else r for r in rows]
    lines += list(raw)
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
    """Cost to first reach the target in epochs and oracle calls, and its wall time by the timing
    pass (the study's own wall times share the machine and mix engines); -- where not timed."""
    body = [[_tex(r["method"]), f"{int(r['reached'])}/{int(r['seeds'])}", _num(r["epoch"], 2),
             _num(r["oracle_evals"]), _timed(r)] for _, r in ttt.head(top).iterrows()]
    return _tabular("lrrrr", ["method", "seeds reaching", "epochs", "oracle calls", "s (timing)"], body)


def _timed(row) -> str:
    seconds = wall_time(A.method_optimizer(row["method"]), row["oracle_evals"])
    return "--" if seconds is None else _num(seconds)


def wall_time(method: str, oracle_calls: float) -> float | None:
    """Training seconds of ``oracle_calls`` by the timing pass: the batched figure per model where
    the engine trains several models at once (as the study does), else K = 1; None if not timed."""
    from ..study import timing as T
    for batched in (True, False):
        try:
            return T.wall_seconds(method, oracle_calls, batched=batched)
        except (KeyError, ValueError):
            continue
    return None


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
    out.update(study_macros(D, p))
    return out


def study_macros(D, p) -> dict[str, str]:
    """The other studies' settings (issue 15) and the statistics' constants as macros."""
    from ..optimizers import get_spec
    from ..study.recipe import oracle_budget
    sizes = [f"{b:,}".replace(",", "{,}") if b != "full" else "full batch" for b in D.BATCH_SIZES]
    skips = [str(b) for b in D.BATCH_FULL_BUDGET_SKIPS]
    out = {"NumRegistered": str(len(registry())), "ProtocolBatchSizes": ", ".join(sizes),
           "ProtocolBatchMethods": _tex(" and ".join(D.BATCH_METHODS)),
           "ProtocolBatchSmallEpochs": str(D.BATCH_SMALL_EPOCHS),
           "ProtocolBatchSmallBudget": _num(D.BATCH_SMALL_EPOCHS * 60_000),
           "ProtocolBatchSkips": ", ".join(skips), "ProtocolWdPoints": str(D.WD_POINTS),
           "ProtocolWdMethods": _tex(", ".join(m for ms in D.WD_METHODS.values() for m in ms)),
           "ProtocolHorizons": f"{min(p.horizons)} to {max(p.horizons)}", "ProtocolHorizonEvals": str(D.HORIZON_EVALS),
           "ProtocolHorizonSpacing": f"1/{D.HORIZON_EVALS}",
           "ProtocolVarianceMethods": _tex(", ".join(D.VARIANCE["methods"])),
           "ProtocolVarianceEpochs": ", ".join(f"{e:g}" for e in D.VARIANCE["epochs"]),
           "ProtocolVarianceBatches": ", ".join(f"{b:,}".replace(",", "{,}") for b in D.VARIANCE["batch_sizes"]),
           "ProtocolMomentumMethod": _tex(D.MOMENTUM_METHOD),
           "ProtocolBasicBudget": _num(oracle_budget("sgd_basic", p, "test")),
           "ProtocolBasicEpochs": str(get_spec("sgd_basic").max_epochs or p.epochs),
           "ProtocolStarterLr": _power(D.STARTER["hparams"]["lr"]),
           "ProtocolConfidence": f"{100 * S.CONFIDENCE:g}", "ProtocolAlpha": f"{S.ALPHA:g}",
           "CountingRule": _tex(COUNTING_RULE)}
    pixels = next(r for r in D.STUDY_ROWS if r.study == "preprocessing")
    named = ["the standard scenario's best on the hold-out" if m == "best:standard" else m for m in pixels.methods]
    out["ProtocolPixelMethods"] = _tex(" and ".join(named))
    rules = "; ".join(S.RULES.values())
    out["StatsRule"] = _tex(rules[:1].upper() + rules[1:] + ".")
    return out


def macros_tex(values: dict[str, str]) -> str:
    return "".join(f"\\newcommand{{\\{k}}}{{{v}}}\n" for k, v in sorted(values.items()))


def _lines(frame: pd.DataFrame) -> pd.DataFrame:
    """``line``: the method label, plus the sparsity strategy where it is not the projection."""
    return frame.assign(line=[m if st == "projection" else f"{m} / {st}"
                              for m, st in zip(frame["method"], frame["sparsity_strategy"])])


def _save_figure(fig, path: Path) -> Path:
    fig.savefig(path, metadata=PDF_META)
    fig.savefig(path.with_suffix(".png"), dpi=110)
    plt.close(fig)
    return path


def readme_markdown(results: pd.DataFrame, ttt: pd.DataFrame, cost: dict | None = None,
                    best: pd.DataFrame | None = None, answers: list[str] | None = None,
                    status: str | None = None) -> str:
    """The README's results block: the study's progress (``status``, LaTeX thousands separators
    undone), the indicated best per scenario (with how it was chosen and its runs
    finished/diverged/failed), the answers, time to target, cost."""
    best = indicated_best(results, {}) if best is None else best
    lines = [f"Progress: {status.replace('{,}', ',')}.", ""] if status else []
    if best.empty:
        lines.append("No scenario has final runs yet: the indicated method of each scenario is not yet run.")
    else:
        lines += ["| scenario | indicated best | chosen on | test acc. (%) | test loss | starter loss | "
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


def family_sentence(rows: pd.DataFrame, family: str, comparison: dict | None = None) -> str:
    """What a family's members did in the standard scenario, from the records: the members in order
    of mean test accuracy (the numbers are in the scenario table), the runs that did not finish,
    and which members the test set does not separate from the indicated method."""
    part = rows[rows["family"] == family].sort_values("test_acc_mean", ascending=False) if len(rows) else rows
    if part is None or part.empty:
        return "Standard scenario: \\NotRun{} for this family."
    text = ("Standard scenario, members in order of mean test accuracy (Table~\\ref{tab:standard}): "
            + ", ".join(_tex(m) for m in part["method"]) + ".")
    lost = part[(part["diverged"].fillna(0) + part["failed"].fillna(0)) > 0]
    if len(lost):
        text += " Not finished: " + "; ".join(f"{_tex(r['method'])} {int(r['diverged'])} diverged, {int(r['failed'])} failed"
                                             for _, r in lost.iterrows()) + "."
    if comparison and comparison.get("reference") is not None:
        group = {m for m, _ in comparison.get("group_accuracy", [])}
        inside = [m for m in part["method"] if m in group]
        text += (f" Not separable from the indicated method on accuracy: {len(inside)} of {len(part)}"
                 + (f" ({_tex(', '.join(inside))})." if inside else "."))
    return text


def failures_sentence(rows: pd.DataFrame, scenario: str) -> str:
    """Which methods lost final runs in ``scenario`` (diverged/failed of all), or that none did."""
    if rows is None or rows.empty:
        return f"{_tex(scenario)}: \\NotRun{{}}."
    lost = rows[(rows["diverged"].fillna(0) + rows["failed"].fillna(0)) > 0]
    total = int(rows[["finished", "diverged", "failed"]].fillna(0).to_numpy().sum())
    if lost.empty:
        return f"{_tex(scenario)}: all {total} final runs of the {len(rows)} methods finished."
    parts = [f"{_tex(r['method'])} {int(r['diverged'])} diverged/{int(r['failed'])} failed" for _, r in lost.iterrows()]
    return (f"{_tex(scenario)}: {int(lost['diverged'].sum() + lost['failed'].sum())} of {total} final runs did not "
            f"finish ({'; '.join(parts)}).")


def default_macros(state=None) -> dict[str, str]:
    """The macros the report's prose uses, each a visible "not yet run" (with the pending
    definition rows for a scenario's answer) until the records fill it."""
    from . import report_status as RS
    out = {"NotRun": r"\textit{not yet run}"}
    for scenario, key in SCENARIO_KEYS.items():
        for part in ("Method", "Description", "Acc", "Std", "Loss", "StarterLoss", "Seeds", "ChosenOn", "Runs",
                     "Hparams"):
            out[f"Best{key}{part}"] = RS.NOT_RUN
        for part in ("Acc", "Loss", "AccCount", "LossCount"):
            out[f"Group{key}{part}"] = RS.NOT_RUN
        rows = SCENARIO_ROWS[scenario]
        out[f"Answer{key}"] = (f"{_tex(scenario)}: {RS.NOT_RUN}"
                               + (f" ({RS.pending(state, rows)})" if state is not None else "") + ".")
    for name in (*PROTOCOL_NAMES, "CountingRule", "StatsRule", "StatusDone", "StatusPlanned", "StatusRunnable",
                 "StatusBlocked", "StatusFailed", "StatusLine", "StarterAcc", "StarterStd", "StarterSeeds",
                 "StarterSeedAccs", "SparseGap", "FastestMethod", "FastestEpochs", "FastestGradEvals", "FastestOracle", "FastestReached", "FastestWall",
                 "StudyRuns", "StudyTuningRuns", "StudyHours", "TimingMachine", "TimingThreads", "TimingIdle"):
        out[name] = RS.NOT_RUN
    return out


SCENARIO_KEYS = {"standard": "Standard", "l2": "Ltwo", "sparse60": "Sparse"}
# The protocol macros the report uses (protocol_macros), each "not yet run" if the definition cannot be read.
PROTOCOL_NAMES = ("ProtocolAlpha", "ProtocolBasicBudget", "ProtocolBasicEpochs", "ProtocolBatchMethods",
                  "ProtocolBatchSizes", "ProtocolBatchSkips", "ProtocolBatchSmallBudget",
                  "ProtocolBatchSmallEpochs", "ProtocolBudget", "ProtocolConfidence", "ProtocolEpochs",
                  "ProtocolEvalsPerEpoch", "ProtocolGridExtension", "ProtocolGridPoints", "ProtocolHorizonEvals",
                  "ProtocolHorizonSpacing", "ProtocolHorizons", "ProtocolLtwoTrials", "ProtocolMomentumMethod",
                  "ProtocolQmcTrials", "ProtocolSeeds", "ProtocolSparseRates", "ProtocolStarterLr",
                  "ProtocolStarterSeeds", "ProtocolStrategyFinetune", "ProtocolStrategyGradual",
                  "ProtocolStrategyProjection", "ProtocolTestImages", "ProtocolThinner", "ProtocolTopK",
                  "ProtocolTopSeeds", "ProtocolTrainImages", "ProtocolTuneBudget", "ProtocolTuneImages",
                  "ProtocolValSize", "ProtocolVarianceBatches", "ProtocolVarianceEpochs",
                  "ProtocolVarianceMethods", "ProtocolWdCoupled", "ProtocolWdDecoupled", "ProtocolWdMethods",
                  "ProtocolWdPoints", "ProtocolPixelMethods")


def sentence_macros(values: dict[str, str], state=None) -> dict[str, str]:
    """Whole sentences from the macros, so a sentence reads right both before and after its records
    exist: ``IndicatedStandard`` (the method and what it is), ``StarterSentence`` (the starter
    reproduction, each seed), ``FastestSentence`` (first to 89.38%)."""
    from . import report_status as RS

    def ready(*names):
        return all(values.get(n, RS.NOT_RUN) != RS.NOT_RUN for n in names)

    def why(rows):
        return f" ({RS.pending(state, rows)})" if state is not None else ""
    out = {}
    if ready("BestStandardMethod", "BestStandardDescription", "BestStandardStarterLoss"):
        out["IndicatedStandard"] = (f"The indicated method for the standard scenario is {values['BestStandardMethod']}: "
                                    f"{values['BestStandardDescription']}. Its test loss in the starter's units is "
                                    f"{values['BestStandardStarterLoss']}.")
    else:
        out["IndicatedStandard"] = f"The standard scenario has no indicated method yet{why(['standard'])}."
    if ready("StarterAcc", "StarterSeeds"):
        out["StarterSentence"] = (f"The starter reproduction reaches {values['StarterAcc']}\\% $\\pm$ "
                                  f"{values['StarterStd']} test accuracy over {values['StarterSeeds']} seeds "
                                  f"(per seed: {values['StarterSeedAccs']}).")
    else:
        out["StarterSentence"] = f"The starter reproduction is {RS.NOT_RUN}{why(['starter'])}."
    if ready("FastestMethod", "FastestEpochs", "FastestOracle"):
        wall = (f", {values['FastestWall']}~s by the timing pass" if ready("FastestWall") else
                ", wall time not yet timed")
        out["FastestSentence"] = (f"The method first to reach it on the test set is {values['FastestMethod']}: "
                                  f"{values['FastestEpochs']} epochs, {values['FastestOracle']} oracle calls{wall} "
                                  f"({values['FastestReached']} seeds reached it).")
    else:
        out["FastestSentence"] = f"No final run has reached it yet{why(['horizon'])}."
    return out


def side_study_sentences(frame: pd.DataFrame, pixels: pd.DataFrame, state=None) -> dict[str, str]:
    """``BatchSizeSentence``, ``WeightDecaySentence``, ``PixelSentence`` from the side studies'
    records (:mod:`helpers.evidence.side_studies`), else what is not run yet."""
    from . import report_status as RS
    from ..study.definition import STUDY_ROWS

    def pending(study):
        rows = [r.name for r in STUDY_ROWS if r.study == study]
        return f"The {study.replace('_', '-')} study is {RS.NOT_RUN}" + (
            f" ({RS.pending(state, rows[:1])}" + (f", {len(rows)} rows in all)." if len(rows) > 1 else ").")
            if state is not None else ".")
    batch = SS.batch_size_results(frame)
    decay = SS.weight_decay_results(frame)
    return {"BatchSizeSentence": SS.batch_size_sentence(batch) if len(batch) else pending("batch_size"),
            "WeightDecaySentence": SS.weight_decay_sentence(decay) if len(decay) else pending("weight_decay"),
            "PixelSentence": SS.preprocessing_sentence(pixels) if len(pixels) else pending("preprocessing")}


def _measurements(root) -> pd.DataFrame:
    from ..study.records import load_measurements
    try:
        return load_measurements(root, kind="variance")
    except (OSError, ValueError, KeyError):
        return pd.DataFrame()


def _plan_state(root, profile):
    from . import report_status as RS
    try:
        return RS.plan_state(root, profile)
    except Exception as error:  # noqa: BLE001 - the report still builds, and says why the counts are missing
        print(f"report: no plan counts ({error})")
        return None


def _starter_macros(results_all: pd.DataFrame, final_all: pd.DataFrame) -> dict[str, str]:
    starter = results_all[results_all["method"].str.contains(r"\[starter\]", regex=True) &
                          (results_all["scenario"] == "standard")] if len(results_all) else results_all
    if not len(starter):
        return {}
    row = starter.iloc[0]
    runs = final_all[(final_all["method"] == row["method"]) & (final_all["scenario"] == "standard")]
    last = runs.sort_values("epoch").groupby("run_id").tail(1).sort_values("seed")
    accs = ", ".join(f"{a:.2f}" for a in last["test_acc"].dropna())
    return {"StarterAcc": f"{row['test_acc_mean']:.2f}", "StarterSeeds": str(int(row["seeds"])),
            "StarterStd": f"{row['test_acc_std']:.2f}" if pd.notna(row["test_acc_std"]) else "--",
            "StarterSeedAccs": accs or "--"}


def _fastest_wall(ttt: pd.DataFrame) -> dict[str, str]:
    reached = ttt[ttt["reached"] > 0] if len(ttt) else ttt
    if not len(reached):
        return {}
    fastest = reached.iloc[0]
    seconds = wall_time(A.method_optimizer(fastest["method"]), fastest["oracle_evals"])
    return {} if seconds is None else {"FastestWall": f"{seconds:.0f}"}


def write_all(frame: pd.DataFrame, report_dir: Path, records: pd.DataFrame | None = None, root=None,
              predictions=None, draw: bool = True, profile: str = "full") -> dict:
    """Write report/tables/*.tex, report/tables/macros.tex and report/figures/*; return the pieces.
    ``frame`` is :func:`helpers.evidence.analysis.study_frame` (may be empty: the study not run
    yet); ``records`` (all runs, tuning included) adds the failed runs to the counts, the hold-out
    choice of the best, the statistics and the study's cost; ``root`` locates the runs (the
    planner's counts, the stored per-image predictions); ``draw=False`` skips drawing (the figure
    snippets still say what they would show). Every table and macro without records says what is
    not run yet (the planner's counts against the study definition)."""
    from . import report_status as RS
    report_dir = Path(report_dir)
    tables = report_dir / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    has_records = records is not None and len(records) > 0
    state = _plan_state(root, profile)
    final_all = A.final_frame(frame=records) if has_records else frame
    results_all = A.final_results(final_all) if len(final_all) else pd.DataFrame()
    main_records = main_study(records, profile) if has_records else records
    final = main_study(final_all, profile) if len(final_all) else final_all
    frame_main = main_study(frame, profile) if len(frame) else frame
    results = A.final_results(final) if len(final) else pd.DataFrame()
    ttt = A.time_to_target(frame) if len(frame) else pd.DataFrame()
    cost = A.study_cost(records) if has_records else None
    comps = comparisons(final, main_records, root=root, predictions=predictions) if cost and len(final) else {}
    best = indicated_best(results, comps) if len(results) else indicated_best(pd.DataFrame(), {})
    values = default_macros(state)
    if len(frame) and len(results):
        values.update(macros(results, ttt, frame, cost, comps))
    values.update(_starter_macros(results_all, final_all))
    values.update(_fastest_wall(ttt))
    values.update(protocol_macros(profile))
    timing, timing_macros = RS.timing_tex()
    values.update(timing_macros)
    values.update(RS.notebook_macros(profile))
    if state is not None:
        values.update(RS.status_macros(state))
    values.update(sentence_macros(values, state))
    files = {"macros.tex": macros_tex(values), "timing.tex": timing,
             "time_to_target.tex": time_to_target_tex(ttt) if len(ttt) else _tabular(
                 "lrrrr", ["method", "seeds reaching", "epochs", "oracle calls", "s (timing)"], [],
                 raw=[r"\multicolumn{5}{p{7cm}}{\NotRun{}: no final run in the standard scenario yet} \\"]),
             "density.tex": density_tex(A.accuracy_vs_density(frame)) if len(frame) else ""}
    pixels = SS.preprocessing_results(final_all)
    values.update(side_study_sentences(frame, pixels, state))
    files["preprocessing.tex"] = SS.preprocessing_tex(pixels) if len(pixels) else _tabular(
        "l", ["preprocessing ablation"], [], raw=[rf"\NotRun{{}}: {RS.pending(state, ['unit-pixels']) if state is not None else 'no records'} \\"])
    files["definition.tex"] = RS.rows_tex(state, profile) if state is not None else _tabular(
        "l", ["study definition"], [], raw=[r"\NotRun{}: the planner could not read the study \\"])
    for family in FAMILY_ORDER:
        files[f"members_{family}.tex"] = RS.members_tex(family, profile)
    for scenario in A.MAIN_SCENARIOS:
        chosen = A.holdout_strategies(main_records, scenario) if cost and scenario.startswith("sparse") else None
        files[f"scenario_{scenario}.tex"] = scenario_tex(results, comps.get(scenario, {}), scenario, state, chosen)
        values[f"Failures{SCENARIO_KEYS[scenario]}"] = failures_sentence(main_rows(results, scenario, chosen), scenario)
    standard_rows = main_rows(results, "standard")
    for family in FAMILY_ORDER:
        key = "".join(part.capitalize() for part in family.split("_"))
        values[f"Family{key}"] = family_sentence(standard_rows, family, comps.get("standard"))
    files["macros.tex"] = macros_tex(values)
    snippets = report_figures(frame_main, results, comps, report_dir / "figures", state, frame, draw=draw,
                              measurements=_measurements(root))
    for name, text in snippets.items():
        files[f"fig_{name}.tex"] = text
    for name, text in files.items():
        (tables / name).write_text(text)
    for stale in ("final_standard.tex", "final_l2.tex", "final_sparse60.tex", "final_families.tex",
                  "families_by_scenario.tex", "comparison_standard.tex", "comparison_l2.tex", "comparison_sparse60.tex",
                  "methods.tex", "targets.tex", "bench_macros.tex", "fig_differences_l2.tex", "fig_differences_sparse60.tex",
                  "fig_differences_standard.tex", "fig_differences_l2_sparse60.tex"):
        (tables / stale).unlink(missing_ok=True)
    answers = [answer(c, best.loc[s] if s in best.index else None) for s, c in comps.items()]
    (tables / "readme_results.md").write_text(readme_markdown(results, ttt, cost, best, answers,
                                                              status=values.get("StatusLine")))
    results.to_csv(tables / "final_results.csv", index=False)
    ttt.to_csv(tables / "time_to_target.csv", index=False)
    for scenario, comp in comps.items():
        for part in ("accuracy", "loss", "per_image"):
            if isinstance(comp.get(part), pd.DataFrame) and len(comp[part]):
                comp[part].to_csv(tables / f"statistics_{scenario}_{part}.csv", index=False)
    return {"results": results, "time_to_target": ttt, "macros": values, "comparisons": comps, "best": best,
            "state": state}

SCENARIO_ROWS = {"standard": ("standard",), "l2": ("l2",), "sparse60": ("sparse60", "sparse60-pruned")}
FAMILY_ORDER = ("sgd", "momentum", "noise_reduction", "second_order")


def _kilo(value) -> str:
    return "--" if pd.isna(value) else f"{value / 1000:,.0f}k".replace(",", "{,}")


def main_rows(results: pd.DataFrame, scenario: str, strategies: dict[str, str] | None = None) -> pd.DataFrame:
    """The scenario's rows of the main comparison: one per registered method at the study's own
    recipe (labels with a batch size, schedule or tag, i.e. the other studies' runs, left out;
    the starter apart), for sparse scenarios the hold-out's strategy per method."""
    if results.empty:
        return results
    rows = results[(results["scenario"] == scenario) & (results["method"] == results["method"].map(A.method_optimizer))]
    if "scaling" in rows:
        rows = rows[rows["scaling"] != "unit"]
    if strategies:
        rows = rows[[strategies.get(m, "projection") == st for m, st in zip(rows["method"], rows["sparsity_strategy"])]]
    elif scenario.startswith("sparse"):
        rows = rows[rows["sparsity_strategy"] == "projection"]
    return rows


def scenario_tex(results: pd.DataFrame, comparison: dict, scenario: str, state=None,
                 strategies: dict[str, str] | None = None) -> str:
    """One scenario's compact table: per method (grouped by family) runs finished/diverged/failed,
    test accuracy and test loss (mean $\\pm$ std over finished seeds) each beside its seed-matched
    difference to the indicated best [95% CI] and whether it is separable, and the mean oracle
    calls; a last line names the methods and definition rows not run yet."""
    from ..optimizers import registry
    from . import report_status as RS
    rows = main_rows(results, scenario, strategies)
    stats = {m: comparison[m].set_index(list(S.KEYS)) for m in ("accuracy", "loss") if m in comparison}
    body = []
    for family in FAMILY_ORDER if len(rows) else ():
        part = rows[rows["family"] == family].sort_values("test_acc_mean", ascending=False)
        if part.empty:
            continue
        body.append(f"\\multicolumn{{9}}{{l}}{{\\textit{{{_tex(family.replace('_', ' '))}}}}} \\\\")
        for _, r in part.iterrows():
            key = (r["method"], r["sparsity_strategy"])
            cells = []
            for metric, digits in (("accuracy", 2), ("loss", 3)):
                table = stats.get(metric)
                s = table.loc[key] if table is not None and key in table.index else None
                cells.append((_diff(s, digits) if s is not None else "--",
                              _VERDICT[s["verdict"]] if s is not None else "--"))
            name = _tex(r["method"]) + ("" if r["sparsity_strategy"] == "projection" else
                                        f" ({_tex(r['sparsity_strategy'])})")
            body.append([name, _counts(r), _pm(r["test_acc_mean"], r["test_acc_std"]), *cells[0],
                         _pm(r["test_loss_mean"], r.get("test_loss_std"), 3), *cells[1], _kilo(r["oracle_evals"])])
    missing = sorted(set(registry()) - set(rows["method"] if len(rows) else ()))
    raw = []
    if missing:
        what = f"{len(missing)} of {len(registry())} methods" if len(missing) < len(registry()) else "every method"
        note = f"\\NotRun{{}} ({what})"
        if state is not None:
            note += ": " + RS.pending(state, SCENARIO_ROWS.get(scenario, (scenario,)))
        raw.append(f"\\multicolumn{{9}}{{l}}{{{note}}} \\\\")
    return _tabular("lcrrcrrcr", ["method", "fin./div./fail.", r"test acc.\ (\%)", r"$\Delta$ acc.\ [95\% CI]", "sep.",
                                  "test loss", r"$\Delta$ loss [95\% CI]", "sep.", "oracle calls"], body, raw)


def main_study(records: pd.DataFrame, profile: str = "full") -> pd.DataFrame:
    """The records of the main comparison: runs at the study's own recipe for their method (its
    schedule, batch size and epochs, standardised pixels, tuning or final tags only), so the other
    studies' runs (batch sizes, unit pixels, horizons) neither enter its tables nor its hold-out."""
    if records is None or records.empty:
        return records
    from ..study.definition import get_profile
    from ..study.recipe import epochs_of
    p = get_profile(profile)
    runs = records.drop_duplicates("run_id")
    keep = []
    for _, r in runs.iterrows():
        try:
            label = A.method_label(r.to_dict() | {"tag": "" if r.get("tag") in ("tune", "final") else r.get("tag")})
            epochs = epochs_of(r["optimizer"], p)
        except (KeyError, ValueError):
            continue
        if label == r["optimizer"] and r.get("scaling") != "unit" and int(r["planned_epochs"]) == epochs:
            keep.append(r["run_id"])
    return records[records["run_id"].isin(keep)]


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
    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH, 3.3))
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
        axes[1].plot(line.index, line.values, label=f"{estimator} ({kind})", **look[str(method)])
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
        ax.legend(fontsize=6, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2)
    fig.tight_layout()
    return fig


def report_figures(frame: pd.DataFrame, results: pd.DataFrame, comps: dict, out: Path, state=None,
                   all_frame: pd.DataFrame | None = None, draw: bool = True,
                   measurements: pd.DataFrame | None = None) -> dict[str, str]:
    """Every figure of the report as a LaTeX snippet (name -> text): the drawn figure where the
    records have its data, else a framed note saying which definition rows are not run yet.
    ``frame``/``results``: the main study's (:func:`main_study`); ``all_frame``: every final run
    (the batch-size study, accuracy against density). ``draw=False``: the same snippets, nothing drawn."""
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
        note = "; ".join(f"{_tex(s)}: no hold-out ranking with paired final seeds yet ({pend(SCENARIO_ROWS[s])})"
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
    starter = SS.starter_runs(all_frame)
    if len(starter):
        _save(lambda: SS.starter_plot(starter), out / "starter.pdf")
        wanted["starter"] = RS.figure_tex("figures/starter.pdf")
    else:
        wanted["starter"] = RS.pending_figure(f"no starter run yet ({pend(['starter'])})")
    dens = A.accuracy_vs_density(all_frame) if len(all_frame) else pd.DataFrame()
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
    """Seed-matched test-accuracy differences, one panel per scenario (each with its own methods)."""
    rows = max(len(c["accuracy"]) for c in comps.values())
    fig, axes = plt.subplots(1, len(comps), figsize=(PAGE_WIDTH, 0.1 * rows + 0.9), squeeze=False)
    for ax, (scenario, comp) in zip(axes[0], comps.items()):
        difference_plot({f"{scenario}: test acc. difference (points)": comp["accuracy"]}, axes=[ax])
        ax.tick_params(axis="y", labelsize=5.5)
        ax.tick_params(axis="x", labelsize=6)
        ax.set_title(ax.get_title(loc="left") if ax is axes[0][0] else "", fontsize=6, loc="left")
        ax.set_ylim(rows - 0.5, -0.5)
        for line in ax.get_lines():
            line.set_markersize(4)
    fig.tight_layout()
    return fig


def _density_figure(dens: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH, 2.6))
    density_plot(dens, ax)
    fig.tight_layout()
    return fig
