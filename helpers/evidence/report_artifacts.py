"""The report's generated pieces, written together from the records (:func:`write_all`): tables
(:mod:`report_tables`), macros (:mod:`report_macros`), figures (:mod:`report_figures`), the README's
results block; and the records the main comparison reads (:func:`main_study`)."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pandas as pd

from ..runtime import repo_path
from . import analysis as A
from .density import density_findings
from . import side_studies as SS
from . import statistics as S
from .latex import macros_tex, tabular
from .readme_protocol import protocol_markdown
from .report_figures import report_figures
from .report_macros import (SCENARIO_KEYS, answer, decay_choices_sentence, default_macros, failures_sentence, family_sentence, macros,
                            protocol_macros, sentence_macros, shift_sentence, side_study_sentences, _fastest_wall,
                            _starter_macros)
from .report_tables import (FAMILY_ORDER, density_tex, indicated_best, main_rows, run_counts, scenario_tex,
                            schedule_horizon, time_to_target_tex)
from .summary import COUNTING_RULE

def comparisons(final: pd.DataFrame, records: pd.DataFrame, scenarios=A.MAIN_SCENARIOS, root=None,
                predictions=None) -> dict[str, dict]:
    """:func:`helpers.evidence.statistics.scenario_comparison` for each scenario with final runs."""
    present = set(final["scenario"]) if len(final) else set()
    return {s: S.scenario_comparison(final, records, s, predictions=predictions, root=root)
            for s in scenarios if s in present}


def readme_markdown(results: pd.DataFrame, ttt: pd.DataFrame, cost: dict | None = None,
                    best: pd.DataFrame | None = None, answers: list[str] | None = None,
                    status: str | None = None, scratch: pd.Series | None = None) -> str:
    """The README's results block: the study's progress (``status``, LaTeX thousands separators
    undone), the indicated best per scenario (with how it was chosen and its runs
    finished/diverged/failed), the answers, time to target, cost."""
    best = indicated_best(results, {}) if best is None else best
    lines = [f"Progress: {status.replace('{,}', ',')}.", ""] if status else []
    if best.empty:
        lines.append("No scenario has a method indicated on the hold-out yet (each needs its row's tuning and "
                     "finals; selection never reads the test set).")
    else:
        lines += ["| scenario | indicated best | chosen on | test acc. (%) | test loss | starter loss | "
                  "runs fin./div./fail. |", "|---|---|---|---|---|---|---|"]
    for scenario, r in best.iterrows():
        std = "" if pd.isna(r["test_acc_std"]) else f" ± {r['test_acc_std']:.2f}"
        lines.append(f"| {scenario} | {r['method']} | {r['chosen_on']} | {r['test_acc_mean']:.2f}{std} | "
                     f"{r['test_loss_mean']:.4f} | {r['test_starter_loss_mean']:.5f} | {run_counts(r)} |")
    if answers:
        lines += [""] + answers
    lines += ["", f"How to read it: {COUNTING_RULE} Separability: {S.RULES['group']}."]
    if len(ttt):
        lines += ["", f"Cheapest to first reach {A.TARGET}% test accuracy (standard scenario):", "",
                  "| method | horizon (epochs) | seeds reaching | epochs | sample gradients | oracle calls |",
                  "|---|---|---|---|---|---|"]
        for _, r in ttt.head(5).iterrows():
            lines.append(f"| {r['method']} | {schedule_horizon(r)} | {int(r['reached'])}/{int(r['seeds'])} | {r['epoch']:.2f} | "
                         f"{r['grad_evals']:,.0f} | {r['oracle_evals']:,.0f} |")
    if cost:
        lines += ["", f"The study behind these numbers: {cost['runs']:,} runs ({cost['tuning_runs']:,} "
                  f"tuning runs on the hold-out, {cost['final_runs']:,} final runs), "
                  f"{cost['train_hours']:.1f} hours of training wall time summed over runs."
                  + (" " + A.devices_sentence(cost) if A.devices_sentence(cost) else "")]
    if scratch is not None:
        parts = ", ".join(f"{study.replace('_', ' ')} {hours:.1f} h" for study, hours in scratch.items())
        lines += ["", f"The whole study from no records (the planner over an empty runs folder): "
                      f"{scratch.sum():.1f} hours of training with {SCRATCH_JOBS} processes by the timing pass ({parts}); "
                      f"evaluation and start-up add to it (the dry run prints the factor the study has run at). "
                      f"On one process that is {SCRATCH_JOBS * scratch.sum():.1f} hours, so a Dask cluster of W "
                      f"one-thread workers as fast as this machine's cores needs at least "
                      f"{SCRATCH_JOBS * scratch.sum():.1f}/W hours, "
                      f"more where a stage waits on the one before it (a row's finals on its tuning)."]
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


SCRATCH_JOBS = 2  # processes the from-scratch estimate is stated for (this 2-core machine)


def _scratch(profile: str) -> pd.Series | None:
    from ..study.readout import from_scratch_hours
    try:
        return from_scratch_hours(profile, SCRATCH_JOBS)
    except (OSError, ValueError, KeyError) as error:
        print(f"report: no from-scratch estimate ({error})")
        return None


def _measurements(root) -> pd.DataFrame:
    from ..study.records import load_measurements
    try:
        return load_measurements(root, kind="variance")
    except (OSError, ValueError, KeyError):
        return pd.DataFrame()


class StudyInputs(NamedTuple):
    stored: pd.DataFrame  # every record of the current protocol under the runs folder
    records: pd.DataFrame  # those of the runs the study definition plans
    frame: pd.DataFrame  # their final runs on the profile's training set (analysis.study_frame)
    state: object  # the planner's view (None when it cannot run)


def study_inputs(root, profile: str = "full") -> StudyInputs:
    """What the summary notebook and the report read from the runs folder ``root``: the current
    protocol's records, only of the runs the definition plans (superseded runs left out:
    :func:`helpers.evidence.report_status.planned_records`)."""
    from . import report_status as RS
    from ..study.definition import PROTOCOL_VERSION, get_profile
    from ..study.records import load_records
    stored = load_records(root, protocol=PROTOCOL_VERSION)
    state = plan_state(root, profile)
    records = RS.planned_records(stored, state)
    frame = A.study_frame(frame=records, train_fraction=get_profile(profile).train_fraction) if len(records) \
        else pd.DataFrame()
    return StudyInputs(stored, records, frame, state)


def plan_state(root, profile):
    """The planner's view of the runs under ``root``, or None (said) when it cannot run."""
    from . import report_status as RS
    try:
        return RS.plan_state(root, profile)
    except Exception as error:  # noqa: BLE001 - the report still builds, and says why the counts are missing
        print(f"report: no plan counts ({error})")
        return None


def write_all(frame: pd.DataFrame, report_dir: Path, records: pd.DataFrame | None = None, root=None,
              predictions=None, draw: bool = True, profile: str = "full", state=None) -> dict:
    """Write report/tables/*.tex, report/tables/macros.tex and report/figures/*; return the pieces.
    ``frame`` is :func:`helpers.evidence.analysis.study_frame` (may be empty: the study not run
    yet); ``records`` (all runs, tuning included) adds the failed runs to the counts, the hold-out
    choice of the best, the statistics and the study's cost; ``root`` locates the runs (the
    planner's counts, the stored per-image predictions); ``state``: the planner's view of ``root``
    (:func:`plan_state`; computed when not given); ``draw=False`` skips drawing (the figure
    snippets still say what they would show). Every table and macro without records says what is
    not run yet (the planner's counts against the study definition)."""
    from . import report_status as RS
    report_dir = repo_path(report_dir)  # a notebook parameter: from the repository root
    tables = report_dir / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    has_records = records is not None and len(records) > 0
    state = plan_state(root, profile) if state is None else state
    final_all = A.final_frame(frame=records) if has_records else frame
    results_all = A.final_results(final_all) if len(final_all) else pd.DataFrame()
    main_records = main_study(records, profile, state) if has_records else records
    final = main_study(final_all, profile, state) if len(final_all) else final_all
    frame_main = main_study(frame, profile, state) if len(frame) else frame
    results = A.final_results(final) if len(final) else pd.DataFrame()
    ttt = A.time_to_target(time_to_target_frame(frame, profile, state)) if len(frame) else pd.DataFrame()
    cost = A.study_cost(records) if has_records else None
    comps = comparisons(final, main_records, root=root, predictions=predictions) if cost and len(final) else {}
    best = indicated_best(results, comps) if len(results) else indicated_best(pd.DataFrame(), {})
    values = default_macros(state)
    if len(frame) and len(results):
        values.update(macros(results, ttt, frame, cost, comps))
    values.update(_starter_macros(results_all, final_all))
    values.update(_fastest_wall(ttt))
    values.update(protocol_macros(profile))
    values.update(RS.timing_macros())
    values.update(RS.notebook_macros(profile))
    if state is not None:
        values.update(RS.status_macros(state))
    values.update(sentence_macros(values, state))
    files = {"macros.tex": macros_tex(values),
             "time_to_target.tex": time_to_target_tex(ttt) if len(ttt) else tabular(
                 "lrrrrr", ["method", "horizon", "seeds reaching", "epochs", "oracle calls", "s (timing)"], [],
                 raw=[r"\multicolumn{6}{p{7cm}}{\NotRun{}: no final run in the standard scenario yet} \\"]),
             "density.tex": density_tex(A.accuracy_vs_density(frame_main)) if len(frame_main) else ""}
    pixels = SS.preprocessing_results(final_all)
    measurements = _measurements(root)
    values.update(side_study_sentences(frame, pixels, state, measurements))
    values["DensitySentence"] = density_findings(final_all) if len(final_all) else ""
    files["preprocessing.tex"] = SS.preprocessing_tex(pixels) if len(pixels) else tabular(
        "l", ["preprocessing ablation"], [], raw=[rf"\NotRun{{}}: {RS.pending(state, ['unit-pixels']) if state is not None else 'no records'} \\"])
    ratios = SS.variance_ratios(measurements)
    files["variance.tex"] = SS.variance_tex(ratios) if len(ratios) else tabular(
        "l", ["gradient variance"], [], raw=[rf"\NotRun{{}}: {RS.pending(state, ['variance']) if state is not None else 'no measurements'} \\"])
    files["definition.tex"] = RS.rows_tex(state, profile) if state is not None else tabular(
        "l", ["study definition"], [], raw=[r"\NotRun{}: the planner could not read the study \\"])
    for family in FAMILY_ORDER:
        files[f"members_{family}.tex"] = RS.members_tex(family, profile)
    for scenario in A.MAIN_SCENARIOS:
        chosen = A.holdout_strategies(main_records, scenario) if cost and scenario.startswith("sparse") else None
        files[f"scenario_{scenario}.tex"] = scenario_tex(results, comps.get(scenario, {}), scenario, state, chosen)
        values[f"Failures{SCENARIO_KEYS[scenario]}"] = failures_sentence(main_rows(results, scenario, chosen), scenario)
        if scenario != "standard":
            values[f"Shift{SCENARIO_KEYS[scenario]}"] = shift_sentence(
                main_rows(results, scenario, chosen), main_rows(results, "standard"), scenario) or \
                f"The {scenario} scenario has no final runs beside the standard ones yet."
    values["ShiftLtwo"] = " ".join(t for t in (values.get("ShiftLtwo", ""), decay_choices_sentence(state)) if t)
    standard_rows = main_rows(results, "standard")
    for family in FAMILY_ORDER:
        key = "".join(part.capitalize() for part in family.split("_"))
        values[f"Family{key}"] = family_sentence(standard_rows, family, comps.get("standard"))
    files["macros.tex"] = macros_tex(values)
    snippets = report_figures(frame_main, results, comps, report_dir / "figures", state, frame, draw=draw,
                              measurements=measurements)
    for name, text in snippets.items():
        files[f"fig_{name}.tex"] = text
    for name, text in files.items():
        (tables / name).write_text(text)
    for stale in ("final_standard.tex", "final_l2.tex", "final_sparse60.tex", "final_families.tex",
                  "families_by_scenario.tex", "comparison_standard.tex", "comparison_l2.tex", "comparison_sparse60.tex",
                  "methods.tex", "targets.tex", "bench_macros.tex", "timing.tex", "fig_differences_l2.tex", "fig_differences_sparse60.tex",
                  "fig_differences_standard.tex", "fig_differences_l2_sparse60.tex", "fig_starter.tex"):
        (tables / stale).unlink(missing_ok=True)
    for stale in ("starter.pdf", "starter.png"):  # the starter's seeds: in its notebook
        (report_dir / "figures" / stale).unlink(missing_ok=True)
    answers = [answer(c, best.loc[s] if s in best.index else None) for s, c in comps.items()]
    (tables / "readme_protocol.md").write_text(protocol_markdown(profile))
    (tables / "readme_results.md").write_text(readme_markdown(results, ttt, cost, best, answers,
                                                              status=values.get("StatusLine"),
                                                              scratch=_scratch(profile)))
    results.to_csv(tables / "final_results.csv", index=False)
    ttt.to_csv(tables / "time_to_target.csv", index=False)
    for scenario, comp in comps.items():
        for part in ("accuracy", "loss", "per_image"):
            if isinstance(comp.get(part), pd.DataFrame) and len(comp[part]):
                comp[part].to_csv(tables / f"statistics_{scenario}_{part}.csv", index=False)
    return {"results": results, "time_to_target": ttt, "macros": values, "comparisons": comps, "best": best,
            "state": state}


def time_to_target_frame(frame: pd.DataFrame, profile: str = "full", state=None) -> pd.DataFrame:
    """The final runs the time-to-target table reads: the main study's, and for the methods the
    horizon study ran, its runs instead (the horizon chosen on the hold-out): one configuration
    per method, so the table never picks between configurations by their test-set cost."""
    main = main_study(frame, profile, state)
    if state is None or frame is None or frame.empty:
        return main
    horizon = {p.config.run_id for p in state.done if p.row == "horizon"}
    tuned = frame[frame["run_id"].isin(horizon)]
    return pd.concat([main[~main["optimizer"].isin(set(tuned["optimizer"]))], tuned])


def main_study(records: pd.DataFrame, profile: str = "full", state=None) -> pd.DataFrame:
    """The records of the main comparison: runs at the study's own recipe for their method (its
    schedule, batch size and epochs, standardised pixels, tuning or final tags only), so the other
    studies' runs (batch sizes, unit pixels, horizons) neither enter its tables nor its hold-out.
    With the planner's ``state``, also only runs a main row of the definition plans: the weight
    decay study's runs share the l2 scenario and the main recipe, and would otherwise count as
    further l2 configurations of their methods."""
    if records is None or records.empty:
        return records
    if state is not None:
        main = {p.config.run_id for p in [*state.done, *state.failed] if p.study == "main"}
        records = records[records["run_id"].isin(main)]
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
