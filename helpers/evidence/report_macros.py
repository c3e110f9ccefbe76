"""The report's macros (``report/tables/macros.tex``): protocol constants from the study definition, results and whole sentences from the records."""
from __future__ import annotations

import pandas as pd

from . import analysis as A
from . import side_studies as SS
from . import statistics as S
from ..optimizers import registry
from .latex import num, power, scientific, tex
from .report_tables import SCENARIO_ROWS, coverage, indicated_best, method_names, run_counts, wall_time
from .summary import COUNTING_RULE

def answer(comparison: dict, best_row) -> str:
    """The scenario's answer in two sentences, every name and number from the records: the
    indicated method, then the methods not separable from it on both metrics, on accuracy only
    and on test loss only (each name once)."""
    scenario = comparison["scenario"]
    if comparison.get("reference") is None or best_row is None:
        if comparison.get("holdout_best") is not None:
            return (f"{scenario}: the hold-out indicates {comparison['holdout_best']}; "
                    "its final runs are not done yet.")
        return f"{scenario}: no hold-out ranking, so no method is indicated as best."
    method = comparison["reference"][0]
    group_acc = [g for g in comparison["group_accuracy"] if g != comparison["reference"]]
    group_loss = [g for g in comparison["group_loss"] if g != comparison["reference"]]
    first = (f"In the {scenario} scenario the hold-out indicates {method}, at "
             f"{best_row['test_acc_mean']:.2f}% test accuracy and test loss {best_row['test_loss_mean']:.4f} "
             f"over {int(best_row['seeds'])} finished seeds.")
    both = [g for g in group_acc if g in group_loss]
    parts = [(label, [g for g in group if g not in both])
             for label, group in (("on accuracy only", group_acc), ("on test loss only", group_loss))]
    second = (f"Not separable from it on accuracy and on test loss: {len(both)} method{'s' * (len(both) != 1)}"
              + (f" ({method_names(both)})" if both else "")
              + "".join(f"; {label}: {len(group)}" + (f" ({method_names(group)})" if group else "")
                        for label, group in parts) + ".")
    untested = comparison["accuracy"]["verdict"].eq("untested").sum()
    if untested:
        second += (f" {int(untested)} method{'s' if untested > 1 else ''} with fewer than 2 paired seeds "
                   f"{'are' if untested > 1 else 'is'} untested.")
    return f"{first} {second}"


def better_on_test(comparison: dict) -> str:
    """Which methods the test set separates from the indicated one *in their favour* (higher
    accuracy, lower loss), with the seed-matched differences: where the hold-out's choice is not
    the test set's best, the report says so."""
    if comparison.get("reference") is None:
        return ""
    parts = []
    for name, column, sign, unit in (("accuracy", "higher test accuracy", 1, "points"), ("loss", "lower test loss", -1, "")):
        table = comparison.get(name)
        if table is None or table.empty:
            continue
        ahead = table[(table["verdict"] == "separable") & (sign * table["difference"] > 0)]
        ahead = ahead.sort_values("difference", ascending=sign < 0)
        digits = 2 if name == "accuracy" else 3
        names = ", ".join(f"{r['method']} ({r['difference']:+.{digits}f}{' ' + unit if unit else ''})"
                          for _, r in ahead.iterrows())
        parts.append(f"with {column}, {len(ahead)}" + (f": {names}" if len(ahead) else ""))
    if not parts:
        return ""
    return (f"Separable from {comparison['reference'][0]} on the test set in their favour: "
            + "; ".join(parts) + ".")


def macros(results: pd.DataFrame, ttt: pd.DataFrame, frame: pd.DataFrame, cost: dict | None = None,
           comps: dict[str, dict] | None = None) -> dict[str, str]:
    """Every number and every ranking word the report's prose uses, by name. ``Best<Scenario>*``
    describe the indicated best (:func:`indicated_best`); ``Group<Scenario>Acc``/``Loss`` name the
    methods not separable from it; ``Answer<Scenario>`` is the scenario's answer (:func:`answer`)."""
    comps = comps or {}
    out = {"Target": f"{A.TARGET:.2f}", "NumRuns": str(frame["run_id"].nunique()),
           "NumMethods": str(frame["method"].nunique()), "NumRegistered": str(len(registry()))}
    if cost:
        out.update(StudyRuns=num(cost["runs"]), StudyTuningRuns=num(cost["tuning_runs"]),
                   StudyHours=f"{cost['train_hours']:.1f}", DevicesSentence=tex(A.devices_sentence(cost)))
    out["Coverage"] = tex(coverage(frame))
    out["CountingRule"] = tex(COUNTING_RULE)
    rules = "; ".join(S.RULES.values())
    out["StatsRule"] = tex(rules[:1].upper() + rules[1:] + ".")
    best = indicated_best(results, comps)
    names = {"standard": "Standard", "l2": "Ltwo", "sparse60": "Sparse"}
    for scenario, key in names.items():
        if scenario in best.index:
            row = best.loc[scenario]
            out[f"Best{key}Method"] = tex(row["method"])
            optimizer = frame.loc[frame["method"] == row["method"], "optimizer"].iloc[0]
            out[f"Best{key}Description"] = tex(registry()[optimizer].description)
            out[f"Best{key}Acc"] = f"{row['test_acc_mean']:.2f}"
            out[f"Best{key}Std"] = f"{row['test_acc_std']:.2f}" if pd.notna(row["test_acc_std"]) else "--"
            out[f"Best{key}Loss"] = f"{row['test_loss_mean']:.4f}"
            out[f"Best{key}StarterLoss"] = f"{row['test_starter_loss_mean']:.5f}"
            out[f"Best{key}Seeds"] = str(int(row["seeds"]))
            out[f"Best{key}ChosenOn"] = tex(row["chosen_on"])
            out[f"Best{key}Runs"] = run_counts(row)
        comp = comps.get(scenario, {})
        if comp.get("reference") is not None:
            others = lambda g: [m for m in g if m != comp["reference"]]  # noqa: E731
            out[f"Group{key}Acc"] = tex(method_names(others(comp["group_accuracy"])) or "none")
            out[f"Group{key}Loss"] = tex(method_names(others(comp["group_loss"])) or "none")
            out[f"Group{key}AccCount"] = str(len(others(comp["group_accuracy"])))
            out[f"Group{key}LossCount"] = str(len(others(comp["group_loss"])))
            out[f"Answer{key}"] = tex(answer(comp, best.loc[scenario] if scenario in best.index else None))
            out[f"Better{key}"] = tex(better_on_test(comp))
            out[f"Best{key}Hparams"] = tex(", ".join(f"{k}={v}" for k, v in A.hparams_of(row).items()
                                                      if v not in (0, 0.0)))
    if "standard" in best.index and "sparse60" in best.index:
        out["SparseGap"] = f"{best.loc['standard', 'test_acc_mean'] - best.loc['sparse60', 'test_acc_mean']:.2f}"
    reached = ttt[ttt["reached"] > 0] if len(ttt) else ttt
    if len(reached):
        fastest = reached.iloc[0]
        out.update(FastestMethod=tex(fastest["method"]), FastestEpochs=f"{fastest['epoch']:.2f}",
                   FastestGradEvals=num(fastest["grad_evals"]), FastestOracle=num(fastest["oracle_evals"]),
                   FastestReached=f"{int(fastest['reached'])}/{int(fastest['seeds'])}")
    return out


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
    cuts = D.applied_cuts(profile)
    out = {"ProtocolCuts": tex("; ".join(cuts)) if cuts else "none",
           "ProtocolBudgetHours": str(D.MAIN_BUDGET_HOURS), "ProtocolStudiesBudgetHours": str(D.STUDIES_BUDGET_HOURS),
           "ProtocolEpochs": str(p.epochs), "ProtocolValSize": num(p.val_size),
           "ProtocolTuneImages": num(N_TRAIN - p.val_size), "ProtocolTrainImages": num(N_TRAIN),
           "ProtocolTestImages": num(N_TEST), "ProtocolBudget": num(p.epochs * N_TRAIN),
           "ProtocolTuneBudget": num(p.epochs * (N_TRAIN - p.val_size)),
           "ProtocolGridPoints": str(p.grid_points), "ProtocolGridExtension": str(p.grid_extension),
           "ProtocolQmcTrials": str(p.qmc_trials), "ProtocolLtwoTrials": str(p.l2_trials),
           "ProtocolSparseRates": str(p.sparse_rates), "ProtocolTopK": str(p.top_k),
           "ProtocolEvalsPerEpoch": str(p.evals_per_epoch)}
    if "standard" in rows:
        out.update(ProtocolSeeds=str(rows["standard"].seeds), ProtocolTopSeeds=str(rows["standard"].top_seeds))
    if "starter" in rows:
        out["ProtocolStarterSeeds"] = str(rows["starter"].seeds)
    for kind, (low, high) in getattr(D, "WEIGHT_DECAY", {}).items():
        out[f"ProtocolWd{kind.capitalize()}"] = f"{power(low)} to {power(high)}"
    thinner = [get_scenario(n) for n in getattr(D, "THINNER", ())]
    if thinner:
        out["ProtocolThinner"] = ", ".join(f"{tex(sc.name)} ({100 * sc.density:g}\\%)" for sc in thinner)
    for name, text in (D.strategy_settings().items() if hasattr(D, "strategy_settings") else ()):
        out[f"ProtocolStrategy{name.capitalize()}"] = tex(text)
    out.update(study_macros(D, p))
    return out


def study_macros(D, p) -> dict[str, str]:
    """The other studies' settings (issue 15) and the statistics' constants as macros."""
    from ..optimizers import get_spec
    from ..study.recipe import oracle_budget
    sizes = [f"{b:,}".replace(",", "{,}") if b != "full" else "full batch" for b in D.BATCH_SIZES]
    skips = [str(b) for b in D.BATCH_FULL_BUDGET_SKIPS]
    out = {"NumRegistered": str(len(registry())), "ProtocolBatchSizes": ", ".join(sizes),
           "ProtocolBatchMethods": tex(" and ".join(D.BATCH_METHODS)),
           "ProtocolBatchSmallEpochs": str(D.BATCH_SMALL_EPOCHS),
           "ProtocolBatchSmallBudget": num(D.BATCH_SMALL_EPOCHS * 60_000),
           "ProtocolBatchSkips": ", ".join(skips), "ProtocolWdPoints": str(D.WD_POINTS),
           "ProtocolWdMethods": tex(", ".join(m for ms in D.WD_METHODS.values() for m in ms)),
           "ProtocolHorizons": f"{min(p.horizons)} to {max(p.horizons)}", "ProtocolHorizonEvals": str(D.HORIZON_EVALS),
           "ProtocolHorizonSpacing": f"1/{D.HORIZON_EVALS}",
           "ProtocolVarianceMethods": tex(", ".join(D.VARIANCE["methods"])),
           "ProtocolVarianceEpochs": ", ".join(f"{e:g}" for e in D.VARIANCE["epochs"]),
           "ProtocolVarianceBatches": ", ".join(f"{b:,}".replace(",", "{,}") for b in D.VARIANCE["batch_sizes"]),
           "ProtocolMomentumMethod": tex(D.MOMENTUM_METHOD),
           "ProtocolBasicBudget": num(oracle_budget("sgd_basic", p, "test")),
           "ProtocolBasicEpochs": str(get_spec("sgd_basic").max_epochs or p.epochs),
           "ProtocolStarterLr": power(D.STARTER["hparams"]["lr"]),
           "ProtocolConfidence": f"{100 * S.CONFIDENCE:g}", "ProtocolAlpha": f"{S.ALPHA:g}",
           "CountingRule": tex(COUNTING_RULE)}
    pixels = next(r for r in D.STUDY_ROWS if r.study == "preprocessing")
    named = ["the standard scenario's best on the hold-out" if m == "best:standard" else m for m in pixels.methods]
    out["ProtocolPixelMethods"] = tex(" and ".join(named))
    rules = "; ".join(S.RULES.values())
    out["StatsRule"] = tex(rules[:1].upper() + rules[1:] + ".")
    return out


# Each family's members against the method they build on (reference, members), standard scenario:
# the family paragraphs of the report explain these differences.
CONTRASTS = {
    "sgd": (("sgd", ("sgd_basic", "gd")),),
    "momentum": (("heavy_ball", ("nesterov", "lookahead_sgd", "sgd_schedulefree")),
                 ("adam", ("adamw", "nadam", "radam", "lookahead_adam")), ("adamw", ("adamw_schedulefree",)),
                 ("heavy_ball", ("adam",))),
    "noise_reduction": (("heavy_ball", ("sgd_polyak", "sgd_ema", "sgd_swa")),
                        ("sgd", ("svrg", "saga", "sarah", "sgd_growing_batch"))),
    "second_order": (("adam", ("adahessian",)), ("kfac", ("shampoo",)), ("sgd", ("newton_cg", "lbfgs", "lbfgs_full"))),
}


def contrast_clause(rows: pd.DataFrame, reference: str, members) -> str | None:
    """``"against sgd: svrg -1.38, saga -1.08 points, each beyond the noise"``: the members' mean
    test accuracy minus the reference's, against the seed noise yardstick
    (:func:`helpers.evidence.analysis.seed_noise`); None without the reference's runs."""
    by = rows.set_index("method") if len(rows) else rows
    if reference not in by.index:
        return None
    ref = by.loc[reference]
    items = [(m, by.loc[m, "test_acc_mean"] - ref["test_acc_mean"],
              A.seed_noise(ref["test_acc_std"], by.loc[m, "test_acc_std"]))
             for m in members if m in by.index and pd.notna(by.loc[m, "test_acc_mean"])]
    if not items:
        return None
    text = f"against {tex(reference)}: " + ", ".join(f"{tex(m)} {signed(gap)}" for m, gap, _ in items) + " points"
    beyond = [m for m, gap, noise in items if abs(gap) > noise]
    yardstick = "the noise"
    if not beyond:
        return text + (f", within {yardstick}" if len(items) == 1 else f", all within {yardstick}")
    if len(beyond) == len(items):
        return text + (f", beyond {yardstick}" if len(items) == 1 else f", each beyond {yardstick}")
    return text + f" (beyond {yardstick}: {tex(', '.join(beyond))}; the others within)"


def contrast_sentence(rows: pd.DataFrame, family: str) -> str:
    """The family's :data:`CONTRASTS` as one sentence (LaTeX); empty without the runs."""
    clauses = [c for reference, members in CONTRASTS.get(family, ())
               if (c := contrast_clause(rows, reference, members)) is not None]
    return ("Standard scenario, mean test accuracy " + "; ".join(clauses)
            + f" (noise: {A.NOISE_FACTOR} pooled seed standard deviations).") if clauses else ""


def signed(value: float, digits: int = 2) -> str:
    """``+0.24`` / ``$-$0.27`` (a typeset minus)."""
    return f"{value:+.{digits}f}".replace("-", "$-$")


def shift_sentence(rows: pd.DataFrame, base: pd.DataFrame, scenario: str) -> str:
    """What ``scenario`` does to each method's mean test accuracy against its standard result
    (``rows``, ``base``: :func:`helpers.evidence.report_tables.main_rows` of the two): the methods
    moved beyond the seed noise (:func:`helpers.evidence.analysis.seed_noise`), up and down, with
    their change; the count within it (LaTeX). Empty without common methods."""
    if rows.empty or base.empty:
        return ""
    both = rows.merge(base, on="method", suffixes=("", "_base")).dropna(subset=["test_acc_mean", "test_acc_mean_base"])
    if both.empty:
        return ""
    gap = both["test_acc_mean"] - both["test_acc_mean_base"]
    noise = [A.seed_noise(a, b) for a, b in zip(both["test_acc_std"], both["test_acc_std_base"])]
    both = both.assign(gap=gap, beyond=[abs(g) > n for g, n in zip(gap, noise)])

    def named(part):
        return ", ".join(f"{tex(r['method'])}" + ("" if r.get("sparsity_strategy", "projection") == "projection"
                                                  else f" ({tex(r['sparsity_strategy'])})") + f" {signed(r['gap'])}"
                         for _, r in part.iterrows())
    up = both[both["beyond"] & (both["gap"] > 0)].sort_values("gap", ascending=False)
    down = both[both["beyond"] & (both["gap"] < 0)].sort_values("gap")
    inside = len(both) - len(up) - len(down)
    text = f"Against each method's standard result, {scenario} moves the mean test accuracy beyond the noise for "
    text += f"{len(up) + len(down)} of {len(both)} methods"
    parts = [f"up: {named(up)}" if len(up) else "", f"down: {named(down)}" if len(down) else ""]
    parts = [p for p in parts if p]
    text += (" (" + "; ".join(parts) + " points)") if parts else ""
    return text + (f"; within it for the other {inside}." if inside and parts else ".")


def decay_choices_sentence(state, row: str = "l2") -> str:
    """The weight decays the l2 trials chose (the planner's choices for ``row``), coupled and
    decoupled apart: range with the methods at its ends, and the median (LaTeX). Empty before any."""
    from ..study.definition import weight_decay_kind
    if state is None:
        return ""
    chosen = {}
    for (name, method, _strategy), choice in state.choices.items():
        if name == row and choice is not None and choice.hparams.get("weight_decay") is not None:
            chosen.setdefault(weight_decay_kind(method), {})[method] = float(choice.hparams["weight_decay"])
    parts = []
    for kind in ("coupled", "decoupled"):
        decays = chosen.get(kind)
        if not decays:
            continue
        low, high = min(decays, key=decays.get), max(decays, key=decays.get)
        median = pd.Series(decays).median()
        if len(decays) <= 2:
            parts.append(f"{kind} " + " and ".join(f"{scientific(v)} ({tex(m)})" for m, v in sorted(decays.items())))
        else:
            parts.append(f"{kind} decays from {scientific(decays[low])} ({tex(low)}) to {scientific(decays[high])} "
                         f"({tex(high)}), median {scientific(median)} over {len(decays)} methods")
    return ("The l2 trials chose " + "; ".join(parts) + ".") if parts else ""


def family_sentence(rows: pd.DataFrame, family: str, comparison: dict | None = None) -> str:
    """What a family's members did in the standard scenario, from the records: each member's mean
    test accuracy against the method it builds on (:func:`contrast_sentence`; the numbers
    themselves are in the scenario table); the members that took at most half the steps of the
    family's first within the budget, which is why a method with costly steps trails at an equal
    budget; the runs that did not finish; and which members the test set does
    not separate from the indicated method."""
    part = rows[rows["family"] == family].sort_values("test_acc_mean", ascending=False) if len(rows) else rows
    if part is None or part.empty:
        return "Standard scenario: \\NotRun{} for this family."
    text = contrast_sentence(rows, family) or "Standard scenario."
    measured = part.dropna(subset=["test_acc_mean"])
    if "step" in measured and len(measured) >= 2 and pd.notna(measured["step"].iloc[0]):
        first = measured.iloc[0]
        few = measured[measured["step"] <= first["step"] / 2]
        if len(few):
            text += (" At most half the steps of " + tex(first["method"]) + f"'s {num(first['step'])} within the budget: "
                     + ", ".join(f"{tex(r['method'])} {num(r['step'])}" for _, r in few.iterrows()) + ".")
    lost = part[(part["diverged"].fillna(0) + part["failed"].fillna(0)) > 0]
    if len(lost):
        text += " Not finished: " + "; ".join(f"{tex(r['method'])} {int(r['diverged'])} diverged, {int(r['failed'])} failed"
                                             for _, r in lost.iterrows()) + "."
    if comparison and comparison.get("reference") is not None:
        group = {m for m, _ in comparison.get("group_accuracy", [])}
        inside = [m for m in part["method"] if m in group]
        text += (f" Not separable from the indicated method on accuracy: {len(inside)} of {len(part)}"
                 + (f" ({tex(', '.join(inside))})." if inside else "."))
    return text


def failures_sentence(rows: pd.DataFrame, scenario: str) -> str:
    """Which methods lost final runs in ``scenario`` (diverged/failed of all), or that none did."""
    if rows is None or rows.empty:
        return f"{tex(scenario)}: \\NotRun{{}}."
    lost = rows[(rows["diverged"].fillna(0) + rows["failed"].fillna(0)) > 0]
    total = int(rows[["finished", "diverged", "failed"]].fillna(0).to_numpy().sum())
    if lost.empty:
        return f"{tex(scenario)}: all {total} final runs of the {len(rows)} methods finished."
    parts = [f"{tex(r['method'])} {int(r['diverged'])} diverged/{int(r['failed'])} failed" for _, r in lost.iterrows()]
    return (f"{tex(scenario)}: {int(lost['diverged'].sum() + lost['failed'].sum())} of {total} final runs did not "
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
        out[f"Better{key}"] = ""
        rows = SCENARIO_ROWS[scenario]
        out[f"Answer{key}"] = (f"{tex(scenario)}: {RS.NOT_RUN}"
                               + (f" ({RS.pending(state, rows)})" if state is not None else "") + ".")
    for name in (*PROTOCOL_NAMES, "CountingRule", "StatsRule", "StatusDone", "StatusPlanned", "StatusRunnable",
                 "StatusBlocked", "StatusFailed", "StatusLine", "StarterAcc", "StarterStd", "StarterSeeds",
                 "StarterSeedAccs", "SparseGap", "FastestMethod", "FastestEpochs", "FastestGradEvals", "FastestOracle", "FastestReached", "FastestWall",
                 "StudyRuns", "StudyTuningRuns", "StudyHours", "TimingMachine", "TimingThreads", "TimingIdle"):
        out[name] = RS.NOT_RUN
    out["DevicesSentence"] = ""
    return out


SCENARIO_KEYS = {"standard": "Standard", "l2": "Ltwo", "sparse60": "Sparse"}


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
                  "ProtocolWdPoints", "ProtocolPixelMethods", "ProtocolCuts",
                  "ProtocolBudgetHours", "ProtocolStudiesBudgetHours")


def sentence_macros(values: dict[str, str], state=None) -> dict[str, str]:
    """Whole sentences from the macros, so a sentence reads right both before and after its records
    exist: ``IndicatedStandard`` (the method and what it is, once the standard row is complete),
    ``StarterSentence`` (the starter reproduction, each seed), ``FastestSentence`` (first to 89.38%)."""
    from . import report_status as RS

    def ready(*names):
        return all(values.get(n, RS.NOT_RUN) != RS.NOT_RUN for n in names)

    def why(rows):
        return f" ({RS.pending(state, rows)})" if state is not None else ""

    def complete(rows):
        if state is None:
            return True
        table = RS.progress(state)
        return all(r in table.index and table.loc[r, "done"] >= table.loc[r, "planned"] for r in rows)
    out = {}
    if ready("BestStandardMethod", "BestStandardDescription", "BestStandardStarterLoss") and complete(["standard"]):
        out["IndicatedStandard"] = (f"The indicated method for the standard scenario is {values['BestStandardMethod']} "
                                    f"({values['BestStandardDescription']}). Its test loss in the starter's units is "
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


def side_study_sentences(frame: pd.DataFrame, pixels: pd.DataFrame, state=None,
                         measurements: pd.DataFrame | None = None) -> dict[str, str]:
    """``BatchSizeSentence``, ``WeightDecaySentence``, ``PixelSentence``, ``VarianceSentence``
    from the side studies' records and measurements (:mod:`helpers.evidence.side_studies`), else
    what is not run yet."""
    from . import report_status as RS
    from ..study.definition import STUDY_ROWS

    def pending(study):
        rows = [r.name for r in STUDY_ROWS if r.study == study]
        return f"The {study.replace('_', '-')} study is {RS.NOT_RUN}" + (
            f" ({RS.pending(state, rows[:1])}" + (f", {len(rows)} rows in all)." if len(rows) > 1 else ").")
            if state is not None else ".")
    batch = SS.batch_size_results(frame)
    decay = SS.weight_decay_results(frame)
    ratios = SS.variance_ratios(measurements)
    return {"BatchSizeSentence": SS.batch_size_sentence(batch) if len(batch) else pending("batch_size"),
            "WeightDecaySentence": SS.weight_decay_sentence(decay) if len(decay) else pending("weight_decay"),
            "PixelSentence": SS.preprocessing_sentence(pixels) if len(pixels) else pending("preprocessing"),
            "VarianceSentence": SS.variance_sentence(ratios) if len(ratios) else pending("variance")}


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
