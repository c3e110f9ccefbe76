"""What the report says about the study's progress and protocol, generated from the study
definition (helpers.study.definition), the planner's counts (helpers.study.readout.counts) and
the timing pass (helpers.study.timing): the status line, the rows table with their progress,
each family's members, the timing table, and the "not yet run" notes that stand in for tables
and figures without records."""
from __future__ import annotations

import pandas as pd

NOT_RUN = r"\NotRun{}"
NOTEBOOKS = {"sgd": "10_sgd", "momentum": "20_momentum", "noise_reduction": "30_noise_reduction",
             "second_order": "40_second_order", "sparsity": "50_sparsity", "summary": "90_summary",
             "starter": "00_starter_baseline"}
FAMILIES = ("sgd", "momentum", "noise_reduction", "second_order")


def _tex(text) -> str:
    from .latex import tex
    return tex(text)


def _num(value) -> str:
    return f"{int(value):,}".replace(",", "{,}")


def notebook(name: str, scenario: str | None = "standard", profile: str = "full") -> str:
    """The executed notebook a figure comes from (``outputs/notebooks/<profile>/<name>__<scenario>.ipynb``,
    as the sweep writes it), as a \\nolinkurl (breaks at slashes)."""
    stem = NOTEBOOKS.get(name, name)
    path = f"outputs/notebooks/{profile}/{stem}" + (f"__{scenario}" if scenario else "") + ".ipynb"
    return r"\nolinkurl{" + path + "}"


def notebook_macros(profile: str = "full") -> dict[str, str]:
    """``Notebook<Family><Scenario>`` (e.g. NotebookMomentumLtwo) and NotebookSparsity, NotebookSummary."""
    keys = {"standard": "Standard", "l2": "Ltwo", "sparse60": "Sparse"}
    out = {}
    for family in FAMILIES:
        name = "".join(part.capitalize() for part in family.split("_"))
        for scenario, key in keys.items():
            out[f"Notebook{name}{key}"] = notebook(family, scenario, profile)
    out["NotebookSparsity"] = notebook("sparsity", "sparse60", profile)
    out["NotebookSummary"] = notebook("summary", None, profile)
    out["NotebookStarter"] = notebook("starter", None, profile)
    return out


def plan_state(root=None, profile: str = "full"):
    """The planner's view of the study under ``root`` (records of the current protocol only: run
    ids hash the protocol version, so older runs are never counted as done)."""
    from ..study.planner import study_plan
    return study_plan(None, profile, root)


def planned_records(records: pd.DataFrame, state) -> pd.DataFrame:
    """The records of the runs the study definition plans (done or failed, in ``state``); the
    others under the runs folder are superseded: quasi-random trials a cut no longer asks for,
    runs of an older update rule (its OptimizerSpec.version). They never enter a table; with no
    ``state`` (the planner could not run), every record is kept."""
    if state is None or records is None or records.empty:
        return records
    ids = {p.config.run_id for p in [*state.done, *state.failed]}
    return records[records["run_id"].isin(ids)]


def progress(state) -> pd.DataFrame:
    """Runs per definition row: done, runnable now, waiting on earlier results (expected), planned."""
    from ..study.readout import counts
    table = counts(state).groupby(level="row", sort=False).sum()
    table["planned"] = table.sum(axis=1)
    return table


def status_macros(state) -> dict[str, str]:
    table = progress(state)
    total = table.sum()
    failed = len(state.failed)
    line = (f"{_num(total['done'])} of the {_num(total['planned'])} runs the study definition plans so far are "
            f"done ({_num(total['runnable'])} can run now, {_num(total['blocked'])} wait on the results of "
            f"earlier stages, an expected count")
    line += f"; {failed} failed)" if failed else ")"
    return {"StatusDone": _num(total["done"]), "StatusPlanned": _num(total["planned"]),
            "StatusRunnable": _num(total["runnable"]), "StatusBlocked": _num(total["blocked"]),
            "StatusFailed": str(failed), "StatusLine": line}


def pending(state, rows) -> str:
    """"row standard: 0 of 373 runs done; ..." for the definition rows ``rows`` (names)."""
    table = progress(state)
    parts = [f"row {_tex(r)}: {_num(table.loc[r, 'done'])} of {_num(table.loc[r, 'planned'])} runs done"
             for r in rows if r in table.index]
    return "; ".join(parts) if parts else "not in the study definition"


def pending_row(state, rows, columns: int) -> str:
    """One table row spanning ``columns`` that says which definition rows are not run yet."""
    return (f"\\multicolumn{{{columns}}}{{l}}{{\\NotRun{{}}: {pending(state, rows)}}} \\\\")


def _group(rows) -> list[tuple[str, list]]:
    """Definition rows grouped as the report lists them: the main rows one by one, the thinner
    scenarios together, every other study as one line."""
    groups: dict[str, list] = {}
    for r in rows:
        if r.study != "main":
            key = r.study
        elif r.name.startswith(("sparse", "thin")) and r.name not in ("sparse60", "sparse60-pruned"):
            key = "thinner"
        else:
            key = r.name
        groups.setdefault(key, []).append(r)
    return list(groups.items())


def rows_tex(state, profile: str = "full") -> str:
    """The study definition as the report shows it, one line per row or study, with its progress."""
    from ..study.definition import get_profile
    from .latex import tabular as _tabular
    p = get_profile(profile)
    table = progress(state)
    edge = {False: f"$\\le${p.grid_extension} more at an edge", True: "an edge extended to the rate limit"}
    tuning = {"grid": lambda row: f"{p.grid_points} rates, {edge[row.extend_to_limit]}, {p.qmc_trials} qmc",
              "l2": f"{p.l2_trials} qmc (rate, decay)", "rates": f"{p.sparse_rates} rates around standard's",
              "base": "standard's choice", "none": "fixed (starter)",
              "horizon": f"horizon {min(p.horizons)}--{max(p.horizons)} epochs"}
    body = []
    for name, rows in _group(p.rows_in()):
        first = rows[0]
        members = ", ".join(dict.fromkeys(m for r in rows for m in ((r.methods,) if isinstance(r.methods, str)
                                                                  else r.methods)))
        members = members.replace("family_best:", "family best of ").replace("fastest:", f"{p.top_k} fastest of ") \
            .replace("best:", "best of ")
        label = name if len(rows) == 1 else f"{name} ({len(rows)} rows)"
        scenarios = ", ".join(dict.fromkeys(r.scenario for r in rows))
        seeds = str(first.seeds) + (f"/{first.top_seeds}" if first.top_seeds > first.seeds else "")
        done = sum(int(table.loc[r.name, "done"]) for r in rows if r.name in table.index)
        planned = sum(int(table.loc[r.name, "planned"]) for r in rows if r.name in table.index)
        text = tuning[first.tuning]
        body.append([_tex(label), _tex(scenarios), _tex(members), text(first) if callable(text) else text, seeds,
                     f"{_num(done)}/{_num(planned)}"])
    rag = r">{\raggedright\arraybackslash}"
    return _tabular(f"l{rag}p{{2.6cm}}{rag}p{{3.3cm}}{rag}p{{4.1cm}}cr", ["row", "scenario", "methods", "tuning",
                                                                         "seeds", "done/planned"], body)


def members_tex(family: str, profile: str = "full") -> str:
    """One family's members: what each does (the registry's description), its rate grid, the
    other hyperparameters tuned, its batch size and schedule (helpers.study.readout.methods_table)."""
    from ..optimizers import registry
    from ..study.readout import methods_table
    from .latex import tabular as _tabular
    table = methods_table(profile)
    table = table[table["family"] == family].sort_values("method")
    specs = registry()
    body = [[_tex(r.method), _tex(specs[r.method].description), _grid(r.grid),
             _tex(r.key_hparams.replace(",", ", ")), f"{_tex(r.batch)}, {_tex(r.schedule)}"]
            for r in table.itertuples()]
    return _tabular(r"l>{\raggedright\arraybackslash}p{8.4cm}l"
                    r">{\raggedright\arraybackslash}p{2.3cm}l",
                    ["method", "what it does", "rate grid", "also tuned", "batch, schedule"], body)


def _grid(text: str) -> str:
    """"0.0003162..0.3162" -> "3.2e-4 to 0.32" in LaTeX (two significant digits)."""
    def short(v):
        v = float(v)
        return f"{v:.2g}" if v >= 1e-2 else f"{v:.1e}".replace("e-0", "e-")
    low, high = text.split("..")
    return f"{short(low)}--{short(high)}"


def timing_macros(path=None) -> dict[str, str]:
    """What the report says of the timing pass (its machine, threads, whether it was idle); empty
    when the pass has measured nothing. Its seconds are the scenario tables' s column
    (:func:`helpers.evidence.report_tables.wall_time`)."""
    from ..study import timing as T
    if T.seconds_per_run(**({"path": path} if path else {})).empty:
        return {}
    header = T.read_header(**({"path": path} if path else {}))
    env = header.get("environment") or {}
    machine = env.get("device", "")
    if machine == "cpu" and env.get("cpu_count"):
        machine = f"a {env['cpu_count']}-core CPU"
    return {"TimingMachine": _tex(machine) if machine else NOT_RUN,
            "TimingThreads": str(header.get("torch_threads", "")) or NOT_RUN,
            "TimingIdle": "yes" if header.get("idle") else "no"}


def pending_figure(text: str) -> str:
    """The stand-in for a figure without data: a framed one-line note."""
    return "\\fbox{\\parbox{0.9\\linewidth}{\\centering\\small \\NotRun{}: " + text + "}}\n"


def figure_tex(path: str, width: str = r"\linewidth") -> str:
    return f"\\includegraphics[width={width}]{{{path}}}\n"
