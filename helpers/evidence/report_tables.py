"""The report's tables as LaTeX (``report/tables/*.tex``), from the results and the statistics."""
from __future__ import annotations

import pandas as pd

from . import analysis as A
from . import statistics as S
from ..optimizers import registry
from .latex import kilo, num, pm, tabular, tex

SCENARIO_ROWS = {"standard": ("standard",), "l2": ("l2",), "sparse60": ("sparse60", "sparse60-pruned")}
FAMILY_ORDER = ("sgd", "momentum", "noise_reduction", "second_order")

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
        method = tex(r["method"]) + ("" if r["sparsity_strategy"] == "projection" or not scenario.startswith("sparse")
                                      else f" ({tex(r['sparsity_strategy'])})")
        body.append([method, tex(r["family"]), pm(r["test_acc_mean"], r["test_acc_std"]),
                     pm(r["test_loss_mean"], r.get("test_loss_std"), 4), pm(r["test_starter_loss_mean"], None, 5),
                     run_counts(r), num(r["oracle_evals"])])
    return tabular("llrrrcr", ["method", "family", r"test acc.\ (\%)", "test loss", "starter loss",
                                "fin./div./fail.", "oracle calls"], body)


def run_counts(row) -> str:
    return "/".join(str(int(row.get(k, 0) if pd.notna(row.get(k, 0)) else 0))
                    for k in ("finished", "diverged", "failed"))


def time_to_target_tex(ttt: pd.DataFrame, top: int = 10) -> str:
    """Cost to first reach the target in epochs and oracle calls, and its wall time by the timing
    pass (the study's own wall times share the machine and mix engines); -- where not timed."""
    body = [[tex(r["method"]), schedule_horizon(r), f"{int(r['reached'])}/{int(r['seeds'])}", num(r["epoch"], 2),
             num(r["oracle_evals"]), _timed(r)] for _, r in ttt.head(top).iterrows()]
    return tabular("lrrrrr", ["method", "horizon", "seeds reaching", "epochs", "oracle calls", "s (timing)"], body)


def schedule_horizon(row) -> str:
    """The epochs the run's schedule spans (:func:`helpers.evidence.analysis.time_to_target`'s horizon)."""
    return f"{row['horizon']:g}"


def _timed(row) -> str:
    seconds = wall_time(A.method_optimizer(row["method"]), row["oracle_evals"])
    return "--" if seconds is None else num(seconds)


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
    body = [[tex(name), tex(spec.family), tex(spec.description)]
            for name, spec in sorted(registry().items(), key=lambda kv: (kv[1].family, kv[0]))]
    return tabular("llp{10.5cm}", ["name", "family", "method"], body)


def _cells(table: pd.DataFrame) -> list[str]:
    """Test accuracy as "mean ± std (seeds)", one string per row of a results table."""
    return [pm(m, s) + f" ({int(n)})" for m, s, n in
            zip(table["test_acc_mean"], table["test_acc_std"], table["seeds"])]


def _filled(row) -> list[str]:
    return ["--" if pd.isna(v) else v for v in row]


def families_tex(table: pd.DataFrame, scenarios=A.MAIN_SCENARIOS) -> str:
    """Best member of each family (rows) in each scenario (columns): "member: mean ± std (seeds)"."""
    if table.empty:
        return ""
    cell = table.assign(cell=[f"{tex(m)}: {c}" for m, c in zip(table["method"], _cells(table))])
    pivot = cell.pivot_table(index="family", columns="scenario", values="cell", aggfunc="first")
    cols = [s for s in scenarios if s in pivot.columns]
    body = [[tex(family), *_filled(row)] for family, row in pivot[cols].iterrows()]
    return tabular("l" * (1 + len(cols)), ["family", *map(tex, cols)], body)


def density_tex(table: pd.DataFrame) -> str:
    """Accuracy against density: one row per method and strategy, cells "mean ± std (seeds)"."""
    if table.empty:
        return ""
    pivot = table.assign(cell=_cells(table)).pivot_table(
        index=["method", "sparsity_strategy"], columns="density", values="cell",
        aggfunc="first").sort_index(axis=1, ascending=False)
    body = [[tex(method), tex(strategy), *_filled(row)] for (method, strategy), row in pivot.iterrows()]
    return tabular("ll" + "r" * len(pivot.columns), ["method", "strategy", *(f"{100 * c:g}\\%" for c in pivot.columns)],
                    body)


def method_names(group) -> str:
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
        name = tex(key[0]) + ("" if key[1] == "projection" else f" ({tex(key[1])})")
        body.append([name, str(int(a["n_pairs"])), _diff(a, 2), _VERDICT[a["verdict"]],
                     _diff(l, 3) if l is not None else "--", _VERDICT[l["verdict"]] if l is not None else "--",
                     _image_cell(images, key)])
    return tabular("lrrcrcc", ["method", "seeds", r"$\Delta$ acc.\ [95\% CI]", "sep.", r"$\Delta$ loss [95\% CI]",
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
    calls and their seconds by the timing pass (:func:`wall_time`); a last line names the methods
    and definition rows not run yet."""
    from ..optimizers import registry
    from . import report_status as RS
    rows = main_rows(results, scenario, strategies)
    stats = {m: comparison[m].set_index(list(S.KEYS)) for m in ("accuracy", "loss") if m in comparison}
    body = []
    for family in FAMILY_ORDER if len(rows) else ():
        part = rows[rows["family"] == family].sort_values("test_acc_mean", ascending=False)
        if part.empty:
            continue
        body.append(f"\\multicolumn{{10}}{{l}}{{\\textit{{{tex(family.replace('_', ' '))}}}}} \\\\")
        for _, r in part.iterrows():
            key = (r["method"], r["sparsity_strategy"])
            cells = []
            for metric, digits in (("accuracy", 2), ("loss", 3)):
                table = stats.get(metric)
                s = table.loc[key] if table is not None and key in table.index else None
                cells.append((_diff(s, digits) if s is not None else "--",
                              _VERDICT[s["verdict"]] if s is not None else "--"))
            name = tex(r["method"]) + ("" if r["sparsity_strategy"] == "projection" else
                                        f" ({tex(r['sparsity_strategy'])})")
            body.append([name, run_counts(r), pm(r["test_acc_mean"], r["test_acc_std"]), *cells[0],
                         pm(r["test_loss_mean"], r.get("test_loss_std"), 3), *cells[1], kilo(r["oracle_evals"]),
                         _timed(r)])
    missing = sorted(set(registry()) - set(rows["method"] if len(rows) else ()))
    raw = []
    if missing:
        what = f"{len(missing)} of {len(registry())} methods" if len(missing) < len(registry()) else "every method"
        note = f"\\NotRun{{}} ({what})"
        if state is not None:
            note += ": " + RS.pending(state, SCENARIO_ROWS.get(scenario, (scenario,)))
        raw.append(f"\\multicolumn{{10}}{{l}}{{{note}}} \\\\")
    return tabular("lcrrcrrcrr", ["method", "fin./div./fail.", r"test acc.\ (\%)", r"$\Delta$ acc.\ [95\% CI]", "sep.",
                                   "test loss", r"$\Delta$ loss [95\% CI]", "sep.", "oracle calls", "s"], body, raw)


def indicated_best(results: pd.DataFrame, comps: dict[str, dict]) -> pd.DataFrame:
    """Per scenario, the results row of the method the report indicates as best: the hold-out's
    best (``chosen_on`` = "hold-out"). A scenario without a hold-out ranking has none: selection
    never reads the test set."""
    rows = []
    for scenario in dict.fromkeys(results["scenario"]) if len(results) else []:
        reference = comps.get(scenario, {}).get("reference")
        if reference is not None:
            match = results[(results["scenario"] == scenario) & (results["method"] == reference[0]) &
                            (results["sparsity_strategy"] == reference[1])]
            if len(match):
                rows.append(match.iloc[0].to_dict() | {"chosen_on": "hold-out"})
    if not rows:
        return pd.DataFrame(columns=["scenario", "method", "chosen_on"]).set_index("scenario")
    best = pd.DataFrame(rows).set_index("scenario")
    order = {s: i for i, s in enumerate(A.MAIN_SCENARIOS)}
    return best.assign(_main=[order.get(s, len(order)) for s in best.index]).sort_values(
        ["_main", "test_acc_mean"], ascending=[True, False]).drop(columns="_main")
