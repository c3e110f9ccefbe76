"""What the family notebooks (10_sgd, 20_momentum, 30_noise_reduction, 40_second_order) share.

A family notebook is its parameters, then: :func:`family_setup` (check the parameters, pick the
members), :func:`print_sizes` (the study's sizes and methods: the notebook's checked output),
``run_family`` (tune and train), :func:`family_finals` (the final runs with the study's extra
seeds, their records and the chosen hyperparameters), :func:`family_figures` (the curve grids),
:func:`members_table` (runs, accuracy and loss, cost per member) and :func:`print_conclusion`
(sentences printed from the records); then its own family-specific part, where a side study of
the definition belongs to the family (:func:`study_rows`).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Mapping, NamedTuple

import pandas as pd

from . import analysis as A
from .analysis import method_label
from .plots import family_grid
from .summary import final_table


class Family(NamedTuple):
    name: str  # the registry's family (sgd, momentum, noise_reduction, second_order)
    methods: list  # the reference (if any), then the members
    sizes: object  # the profile (helpers.study.definition.Profile)
    profile: str
    root: Path  # the runs folder


class Finals(NamedTuple):
    frame: pd.DataFrame  # records of the final runs, with ``method`` (label) and ``part`` columns
    chosen: pd.DataFrame  # the hyperparameters of each final run of seed 0
    study: object  # the study's plan over ``root`` (helpers.study.planner.Plan)


def family_setup(family: str, scenario: str, profile: str, members=None, reference: str = "",
                 device: str | None = None, runs_dir=None, parameters: dict | None = None) -> Family:
    """Check the notebook's parameters (:func:`helpers.notebook.prepare`) and name its methods:
    ``members`` None means the family's methods in the profile's study, else the family's first."""
    from ..notebook import prepare
    from ..optimizers import get_spec, names
    from ..study.definition import get_profile
    from ..study.sweep import study_runs_dir
    in_family = [m for m in names() if get_spec(m).family == family]
    if not in_family:
        raise ValueError(f"no optimizer of family {family!r}")
    sizes = get_profile(profile)
    if members is None:
        members = [m for m in in_family if sizes.methods is None or m in sizes.methods] or in_family[:1]
    methods = prepare(scenario, members, reference, device, parameters=parameters)
    return Family(family, methods, sizes, profile, study_runs_dir(profile, runs_dir))


def sizes_text(fam: Family) -> str:
    """The profile's sizes in one sentence, then the methods' table of the study definition."""
    from ..study.readout import methods_table
    s = fam.sizes
    head = (f"profile {fam.profile}: {s.epochs} epoch(s) on {s.train_fraction:.0%} of the training images, "
            f"hold-out of {s.val_size:,} images, {s.evals_per_epoch} evaluation(s) per epoch; "
            f"tuning: {s.grid_points} rates (+<= {s.grid_extension} at an edge), {s.qmc_trials} "
            f"quasi-random trial(s); l2 {s.l2_trials} trial(s); sparse {s.sparse_rates} rate(s); "
            f"seeds up to {s.max_seeds or 'the rows'}")
    return head + "\n" + methods_table(replace(s, methods=tuple(fam.methods))).to_string(index=False)


def print_sizes(fam: Family) -> None:
    print(sizes_text(fam))


def family_finals(runs, fam: Family, scenario: str) -> Finals:
    """The final runs of ``runs`` (a ``FamilyRun``, or part name -> ``FamilyRun``) plus the study's
    extra seeds of these methods in ``scenario`` where trained (part "members"), their records
    (``method``: :func:`method_label`; ``part``) and the hyperparameters of every seed-0 final
    (by method; with parts, a row per part with its batch size and schedule)."""
    from ..study.experiment import records_of
    from ..study.planner import study_plan
    parts = runs if isinstance(runs, Mapping) else {"members": runs}
    study = study_plan(None, fam.profile, fam.root)
    extra = [r.config for r in study.done
             if r.row == scenario and r.method in fam.methods and r.stage in ("final", "seeds")]
    finals = {c.run_id: (part, c) for part, run in parts.items() for c in run.finals}
    finals.update({c.run_id: ("members", c) for c in extra if c.run_id not in finals})
    frame = records_of([c for _, c in finals.values()], fam.root)
    if len(frame):
        frame["method"] = [method_label(row) for _, row in frame.iterrows()]
        frame["part"] = frame["run_id"].map(lambda i: finals[i][0])
    several = isinstance(runs, Mapping)  # parts: say which, with batch size and schedule
    chosen = pd.DataFrame([{**({"part": part} if several else {}), "method": c.optimizer,
                            **({"batch": c.batch_size, "schedule": c.schedule} if several else {}),
                            **c.effective_hparams}
                           for part, c in finals.values() if c.seed == 0])
    if len(chosen) and not several:
        chosen = chosen.drop_duplicates("method").set_index("method")
    return Finals(frame, chosen, study)


def study_rows(study: str, scenario: str, fam: Family, main=None) -> pd.DataFrame:
    """The final runs of the definition's rows of ``study`` (helpers.study.definition.STUDY_ROWS)
    in ``scenario`` for this profile, trained first where missing (nothing, with complete records)
    and measured where the rows measure; empty when the profile has no such rows. ``main`` (the
    main study's planner state, from :func:`family_finals`): also its finals of the same methods
    in the scenario's main row (where a side study's point is the main recipe, e.g. batch 64 at
    the full budget)."""
    from ..study.experiment import records_of
    from ..study.protocol import execute
    rows = [r for r in fam.sizes.rows_in() if r.study == study and r.scenario == scenario]
    if not rows:
        return pd.DataFrame()
    names = {r.name for r in rows}
    state = execute(fam.profile, None, fam.root, progress=True, rows=rows)
    finals = [p for p in state.done if p.row in names and p.stage in ("final", "seeds")]
    if main is not None:
        methods = {p.method for p in finals}
        finals += [p for p in main.done if p.row == scenario and p.method in methods and p.stage in ("final", "seeds")]
    return records_of([p.config for p in finals], fam.root) if finals else pd.DataFrame()


def family_figures(frame: pd.DataFrame, *xs: str) -> list:
    """One :func:`family_grid` per x axis (default "epoch"): training loss, test loss and accuracy
    against epochs; test loss and accuracy against any other x (oracle calls, wall time)."""
    if not len(frame):
        return []
    return [family_grid(frame, x=x) if x == "epoch" else family_grid(frame, ys=("test_loss", "test_acc"), x=x)
            for x in xs or ("epoch",)]


def _mean_std(means, stds, digits: int) -> list[str]:
    return [f"{m:.{digits}f} ± {s:.{digits}f}" if s == s else f"{m:.{digits}f}" for m, s in zip(means, stds)]


def members_table(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``results`` (:func:`final_table` by method) and the members' table to show, best test
    accuracy first: runs finished/diverged/failed, accuracy and loss (mean ± std over finished
    runs), mean oracle calls and wall time. Both empty without records."""
    if not len(frame):
        return pd.DataFrame(), pd.DataFrame()
    results = final_table(frame, by=["method"])
    t = results.sort_values("test_acc_mean", ascending=False)
    table = pd.DataFrame({
        "finished": t["finished"], "diverged": t["diverged"], "failed": t["failed"],
        "test acc (%)": _mean_std(t["test_acc_mean"], t["test_acc_std"], 2),
        "test loss": _mean_std(t["test_loss_mean"], t["test_loss_std"], 4),
        "oracle calls": t["oracle_evals"].map(lambda v: f"{v:,.0f}"), "wall (s)": t["wall_s"].round(1)})
    return results, table


def conclusion(results: pd.DataFrame, reference: str = "", tuning: pd.DataFrame | None = None) -> list[str]:
    """The member first on the hold-out (``tuning``: the family's tuning trials, with ``member``
    and ``val_acc``) and how it measures on the test set; the highest mean test accuracy and the
    lowest test loss, with the members within the seed noise of the first
    (:func:`helpers.evidence.analysis.seed_noise`); that best against ``reference`` (when both
    ran); every member with diverged or failed runs."""
    if results.empty or results["test_acc_mean"].isna().all():
        return ["no finished runs yet"]
    lines = []
    if tuning is not None and len(tuning) and "val_acc" in tuning:
        scores = tuning.dropna(subset=["val_acc"]).groupby("member")["val_acc"].max()
        scores = scores[scores.index.isin(results.index)]
        if len(scores):
            first = scores.idxmax()
            row = results.loc[first]
            lines.append(f"first on the hold-out: {first} ({scores[first]:.2f}% on the hold-out); on the test set "
                         f"{row['test_acc_mean']:.2f}% over {int(row['seeds'])} seed(s)")
    ranked = results.sort_values("test_acc_mean", ascending=False)
    best, by_loss = ranked.index[0], results["test_loss_mean"].idxmin()
    lines.append(f"highest mean test accuracy: {best} ({ranked.loc[best, 'test_acc_mean']:.2f}%, "
                 f"{int(ranked.loc[best, 'seeds'])} seed(s)); lowest test loss: {by_loss} "
                 f"({results.loc[by_loss, 'test_loss_mean']:.4f})")
    close = list(A.within_seed_noise(ranked).index)
    if close:
        lines.append(f"within the seed noise of {best} ({A.NOISE_FACTOR} pooled standard deviations): "
                     + ", ".join(close))
    if reference in results.index and best != reference:
        lines.append(f"{best} vs the reference {reference}: " + compare(results, best, reference))
    lost = results[(results["diverged"] > 0) | (results["failed"] > 0)]
    lines += [f"{m}: {int(r['diverged'])} diverged, {int(r['failed'])} failed run(s)" for m, r in lost.iterrows()]
    return lines


def compare(results: pd.DataFrame, a: str, b: str) -> str:
    """Mean test accuracy of ``a`` minus ``b``'s, with the seed noise (:func:`helpers.evidence.analysis.gap_words`)."""
    ra, rb = results.loc[a], results.loc[b]
    return A.gap_words(ra["test_acc_mean"] - rb["test_acc_mean"], A.seed_noise(ra["test_acc_std"], rb["test_acc_std"]))


def print_conclusion(results: pd.DataFrame, fam: Family, scenario: str, reference: str = "",
                     tuning: pd.DataFrame | None = None) -> None:
    """The scenario and sizes, then :func:`conclusion` as a list (``tuning``: the FamilyRun's)."""
    s = fam.sizes
    print(f"{scenario}, profile {fam.profile} ({s.epochs} epoch(s), {s.train_fraction:.0%} of the images):")
    if tuning is not None and "row" in tuning:
        tuning = tuning[tuning["row"] == scenario]  # the scenario's own trials (l2, sparse: not the standard row's)
    print("\n".join(f"- {line}" for line in conclusion(results, reference, tuning)))
