"""Reading the study: its definition and methods as tables, the plan's counts per row and stage,
the tuned choices, and the cost estimate; the ``python -m helpers.study`` commands."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pandas as pd

from ..constraints.scenarios import get_scenario
from ..optimizers import get_spec, names
from . import definition as D
from . import tuning as T
from .definition import Profile, get_profile
from .planner import STAGES, TUNING_STAGES, Plan, row_index, execute, study_plan
from ..problem.data import N_TRAIN
from .recipe import epochs_of, n_train, oracle_budget, schedule_for
from .records import read_meta_file, runs_dir

ORACLE_EPOCH = 60_000  # the cost table's unit: seconds per 60,000 oracle calls
COSTS_FILE = Path(__file__).resolve().parents[2] / "outputs" / "timing" / "seconds_per_epoch.csv"
BY_BATCH = "seconds_per_epoch_by_batch.csv"  # the timing pass's batch-size table, beside COSTS_FILE


def definition_table(profile: str | Profile = "full") -> pd.DataFrame:
    """The profile's rows as a table."""
    p = get_profile(profile) if isinstance(profile, str) else profile
    out = []
    for row in sorted(p.rows_in(), key=lambda r: (r.priority, row_index(r))):
        methods = row.methods if isinstance(row.methods, str) else ",".join(row.methods)
        if methods == "all":
            methods = f"all ({len(p.methods or names())})"
        edge = "+ edge to the limit" if row.extend_to_limit else f"+<= {p.grid_extension} edge"
        tuning = {"grid": f"{p.grid_points} rates {edge}, {p.qmc_trials} qmc",
                  "l2": f"{p.l2_trials} qmc (rate, wd)", "rates": f"{p.sparse_rates} rates",
                  "base": f"{row.base}'s choice",
                  "horizon": f"horizons {','.join(map(str, p.horizons))} ep (fewest calls to {D.TARGET_ACC}%)",
                  "none": "fixed"}[row.tuning]
        if row.measure:
            tuning += f" + {row.measure} measurements"
        cap = p.max_seeds or 99
        out.append(dict(priority=row.priority, study=row.study, row=row.name, scenario=row.scenario, methods=methods,
                        strategies=",".join(row.strategies) if get_scenario(row.scenario).sparse else "-",
                        tuning=tuning, base=row.base if row.tuning in ("l2", "rates", "base", "horizon") else "-",
                        seeds=min(row.seeds, cap),
                        top_seeds=(f"{min(row.top_seeds, cap)} (top {p.top_k} + family best, priority "
                                   f"{row.top_priority})" if min(row.top_seeds, cap) > min(row.seeds, cap) else "-"),
                        overrides=" ".join(f"{k}={v}" for k, v in row.overrides.items())))
    return pd.DataFrame(out)


def methods_table(profile: str | Profile = "full") -> pd.DataFrame:
    """Per method: family, rate grid, key hyperparameters, weight-decay kind, schedule, budgets."""
    p = get_profile(profile) if isinstance(profile, str) else profile
    out = []
    for m in p.methods or names():
        spec = get_spec(m)
        grid = [T.lr_of(j) for j in T.grid_exponents(m, p.grid_points)]
        out.append(dict(method=m, family=spec.family, lr_range=spec.search_space["lr"][:2],
                        grid=f"{grid[0]:g}..{grid[-1]:g}", key_hparams=",".join(T.key_space(m)) or "-",
                        weight_decay=D.weight_decay_kind(m), schedule=schedule_for(m),
                        batch=spec.batch_size or 64, epochs=epochs_of(m, p),
                        budget_tune=oracle_budget(m, p, "val"), budget_final=oracle_budget(m, p, "test")))
    return pd.DataFrame(out)


def counts(state: Plan) -> pd.DataFrame:
    """Runs per (row, stage): done, runnable now, blocked (expected); a row's measurements under
    stage "measure"."""
    rows = [dict(row=r.row, stage=r.stage, state="done") for r in state.done]
    rows += [dict(row=r.row, stage=r.stage, state="runnable") for r in state.runnable]
    rows += [dict(row=m.row, stage="measure", state="done") for m in state.measured]
    rows += [dict(row=m.row, stage="measure", state="runnable") for m in state.measurements]
    frame = pd.DataFrame(rows, columns=["row", "stage", "state"])
    table = frame.groupby(["row", "stage", "state"]).size().unstack("state", fill_value=0)
    blocked_rows = pd.DataFrame([dict(row=b.row, stage=b.stage, blocked=b.runs) for b in state.blocked],
                                columns=["row", "stage", "blocked"]).groupby(["row", "stage"]).sum()
    table = table.join(blocked_rows, how="outer").fillna(0).astype(int)
    for column in ("done", "runnable", "blocked"):
        if column not in table:
            table[column] = 0
    table = table[["done", "runnable", "blocked"]]
    order = {r.name: i for i, r in enumerate(D.ROWS)}
    keys = sorted(table.index, key=lambda k: (order.get(k[0], 99), STAGES.index(k[1]) if k[1] in STAGES else 99))
    return table.loc[keys]


def choices_table(state: Plan) -> pd.DataFrame:
    """Per (row, method, strategy): the tuned choice, the rate's place on its grid (interior /
    limit / spent / open) and the tuning runs spent, grid extension apart."""
    spent: dict[tuple, dict] = {}
    for r in state.done + state.runnable:
        if r.stage in TUNING_STAGES:
            key = (r.row, r.method, r.strategy)
            spent.setdefault(key, {"trials": 0, "extension": 0})
            spent[key]["trials"] += 1
            spent[key]["extension"] += r.stage == "extension"
    rows = []
    for (row, method, strategy), choice in state.choices.items():
        runs = spent.get((row, method, strategy), {"trials": 0, "extension": 0})
        rows.append(dict(row=row, method=method, strategy=strategy,
                         lr=choice.hparams.get("lr") if choice else None,
                         chosen=json.dumps({**choice.hparams, **choice.settings}, default=list) if choice else "",
                         edge=state.edges.get((row, method, strategy), "-"), **runs))
    return pd.DataFrame(rows, columns=["row", "method", "strategy", "lr", "chosen", "edge", "trials", "extension"])


def cost_table(path=COSTS_FILE, fallback_root=None) -> tuple[dict, str]:
    """(method -> seconds per 60,000 oracle calls on one process, where the numbers come from).

    From ``path`` (the timing pass's file: method, seconds_per_epoch, batched_seconds_per_epoch
    per model when the engine trains several at once) where filled in, the batched figure first;
    else, if ``fallback_root`` is given, the median over its finished full-data runs (e.g. the
    archived v1 runs: measured on mixed engines while several runs shared the machine, so not a
    plan, at best an order of magnitude)."""
    path = Path(path)
    if path.is_file():
        source = _seconds_of(pd.read_csv(path))
        by_batch = path.with_name(BY_BATCH)
        if source and by_batch.is_file():
            table = pd.read_csv(by_batch, dtype={"batch_size": str})
            source.update({(m, b): v for (m, b), v in _seconds_of(table, ["method", "batch_size"]).items()})
        if source:
            return source, f"timing pass ({path})"
    if fallback_root is not None:
        rates = _rates_from(Path(fallback_root))
        if rates:
            return rates, (f"median of the finished runs under {fallback_root} (mixed engines, concurrent "
                           f"runs: not a plan)")
    return {}, "no measured cost yet"


def _seconds_of(table: pd.DataFrame, key=("method",)) -> dict:
    """key -> seconds per 60,000 oracle calls, the batched figure first where there is one."""
    single = table.get("seconds_per_epoch", pd.Series(dtype=float))
    batched = table.get("batched_seconds_per_epoch", pd.Series(dtype=float))
    seconds = batched.fillna(single) if len(batched) else single
    keys = zip(*(table[k] for k in key)) if len(key) > 1 else table[key[0]]
    return {k: float(v) for k, v in zip(keys, seconds) if pd.notna(v)}


def _rates_from(root: Path) -> dict[str, float]:
    rates: dict[str, list[float]] = {}
    for meta_path in Path(root).glob("*/meta.json"):
        meta = read_meta_file(meta_path)
        final = meta.get("final") or {}
        cfg = meta.get("config", {})
        oracle = final.get("oracle_evals") or final.get("grad_evals")
        if meta.get("status") == "finished" and cfg.get("train_fraction") == 1.0 and oracle and final.get("wall_s"):
            rates.setdefault(cfg["optimizer"], []).append(final["wall_s"] / (oracle / ORACLE_EPOCH))
    return {m: float(pd.Series(v).median()) for m, v in rates.items()}


def step_overhead(costs: dict) -> float:
    """The fixed cost of a step in sample gradients, s0 in cost(b) ~ (1 + s0 / b) per sample,
    from the cost table's sgd (batch 64) and sgd_basic (batch 1); 0 without both."""
    if not costs.get("sgd") or not costs.get("sgd_basic"):
        return 0.0
    ratio = costs["sgd_basic"] / costs["sgd"]
    return max(0.0, (ratio - 1) / (1 - ratio / 64))


def _seconds(costs: dict, method: str, config=None, typical: float = math.nan, batch_size=None,
             train_fraction: float = 1.0) -> float:
    """Seconds per 60,000 oracle calls of ``method`` at a batch size (``config``'s, else
    ``batch_size``; None: the method's own): the timing pass's figure at that batch size where it
    has one; else the method's own figure, scaled to the batch size by the step overhead
    (:func:`step_overhead`)."""
    if config is not None:
        batch_size, train_fraction = config.batch_size, config.train_fraction
    if batch_size is not None and (method, str(batch_size)) in costs:
        return costs[(method, str(batch_size))]
    base = costs.get(method, typical)
    s0 = step_overhead(costs)
    if batch_size is None or not s0:
        return base

    def size(b):
        return round(train_fraction * N_TRAIN) if b == "full" else int(b)

    own = get_spec(method).batch_size or 64
    return base * (1 + s0 / size(batch_size)) / (1 + s0 / size(own))


def _blocked_oracle(state: Plan, b) -> float:
    epochs = b.epochs if b.epochs is not None else (
        epochs_of(b.method, state.profile) if b.method != "?" else state.profile.epochs)
    return epochs * n_train(state.profile, b.split)


def _oracle(state: Plan, r) -> float:
    return r.config.grad_budget or r.config.epochs * n_train(state.profile, r.config.eval_split)


def per_method(state: Plan) -> pd.DataFrame:
    """Runs left per (study, method) and their oracle budget in epochs of 60,000 calls (multiply
    by the cost table's seconds); members not yet known (selected from results) count as "?"."""
    rows = [(r.study, r.method, 1, _oracle(state, r) / ORACLE_EPOCH) for r in state.runnable]
    rows += [(b.study, b.method, b.runs, b.runs * _blocked_oracle(state, b) / ORACLE_EPOCH) for b in state.blocked]
    rows += [(m.study, m.method, 0, 0.0) for m in state.measurements]
    frame = pd.DataFrame(rows, columns=["study", "method", "runs", "oracle_epochs"])
    return frame.groupby(["study", "method"]).sum().sort_values(["study", "oracle_epochs"], ascending=[True, False])


def estimate(state: Plan, costs: dict) -> pd.DataFrame:
    """Seconds of training per (row, stage) for the runnable and blocked runs (one process)."""
    return _estimate_rows(state, costs).groupby(["row", "stage"], sort=False)[["runs", "seconds"]].sum()


def _estimate_rows(state: Plan, costs: dict) -> pd.DataFrame:
    typical = float(pd.Series([v for k, v in costs.items() if isinstance(k, str)]).median()) if costs else math.nan
    rows = []
    for r in state.runnable:
        oracle = _oracle(state, r)
        rows.append(dict(study=r.study, row=r.row, stage=r.stage, runs=1, oracle=oracle,
                         seconds=oracle / ORACLE_EPOCH * _seconds(costs, r.method, r.config, typical)))
    for b in state.blocked:
        if b.stage == "measure":
            oracle = b.runs * measurement_oracle(b.method, D.VARIANCE["epochs"], n_train(state.profile, "test"))
            rows.append(dict(study=b.study, row=b.row, stage=b.stage, runs=0, oracle=oracle,
                             seconds=oracle / ORACLE_EPOCH * costs.get(b.method, typical)))
            continue
        oracle = _blocked_oracle(state, b)
        seconds = _seconds(costs, b.method, None, typical, b.batch_size, state.profile.train_fraction)
        rows.append(dict(study=b.study, row=b.row, stage=b.stage, runs=b.runs, oracle=b.runs * oracle,
                         seconds=b.runs * oracle / ORACLE_EPOCH * seconds))
    for m in state.measurements:
        oracle = measurement_oracle(m.method, m.epochs, n_train(state.profile, "test"))
        rows.append(dict(study=m.study, row=m.row, stage="measure", runs=0, oracle=oracle,
                         seconds=oracle / ORACLE_EPOCH * costs.get(m.method, typical)))
    return pd.DataFrame(rows, columns=["study", "row", "stage", "runs", "oracle", "seconds"])


def measurement_oracle(method: str, epochs, n: int) -> float:
    """Sample gradients of a trajectory measurement, in ordinary-pass units: the trajectory to
    its last checkpoint, and at each checkpoint a per-sample pass (counted as 3 ordinary passes)
    at each point the estimator needs (2 for SVRG and SARAH) plus, for SAGA, its batch gradients."""
    points = 2 if method in ("svrg", "sarah") else 1
    per_checkpoint = 3 * points + (1 if method == "saga" else 0)
    return (max(epochs) + len(epochs) * per_checkpoint) * n


SAME_GROUP_SECONDS = 2.0  # a batched group stamps its models' starts one after the other


def observed_overhead(root=None, costs: dict | None = None, recent: int = 20) -> tuple[float, int] | None:
    """(elapsed / estimated seconds, units) over the ``recent`` latest units of finished and
    diverged runs: each unit (a batched group: runs of one optimizer and group size started within
    :data:`SAME_GROUP_SECONDS` of each other; or one run) from its
    start to its last end, against what the estimate charges for the oracle calls its runs spent
    (``costs``: :func:`cost_table`; without it, the training seconds the records count,
    ``wall_s``). The factor the estimate misses: evaluation, start-up, saving and the machine's
    load while the study ran. None before any run."""
    from datetime import datetime
    from .records import read_meta_file
    typical = float(pd.Series([v for k, v in costs.items() if isinstance(k, str)]).median()) if costs else math.nan
    runs = []
    for path in runs_dir(root).glob("*/meta.json"):
        meta = read_meta_file(path)
        final, config = meta.get("final") or {}, meta.get("config") or {}
        if meta.get("status") not in ("finished", "diverged") or "ended" not in meta or \
                not math.isfinite(final.get("wall_s", math.nan)):
            continue
        if costs:
            charged = final.get("oracle_evals", 0) / ORACLE_EPOCH * _seconds(
                costs, config.get("optimizer"), None, typical, config.get("batch_size"), config.get("train_fraction", 1.0))
        else:
            charged = final["wall_s"]
        runs.append((datetime.fromisoformat(meta["started"]), datetime.fromisoformat(meta["ended"]), charged,
                     (config.get("optimizer"), meta["batched"].get("models")) if "batched" in meta else None))
    units: list[list] = []
    open_group: dict[tuple, list] = {}
    for started, ended, charged, group in sorted(runs, key=lambda r: r[0]):
        unit = open_group.get(group) if group is not None else None
        if unit is None or (started - unit[0]).total_seconds() > SAME_GROUP_SECONDS:
            unit = [started, ended, 0.0]
            units.append(unit)
            if group is not None:
                open_group[group] = unit
        unit[1] = max(unit[1], ended)
        unit[2] += charged
    latest = sorted(units)[-recent:]
    elapsed = sum((e - s).total_seconds() for s, e, _ in latest)
    charged = sum(t for _, _, t in latest)
    return (elapsed / charged, len(latest)) if charged > 0 else None


def from_scratch_hours(profile: str = "full", jobs: int = 2) -> pd.Series | None:
    """Hours of training with ``jobs`` processes for the whole of ``profile`` from no records,
    per study, by the timing pass (evaluation and start-up not included); None without it."""
    costs, _ = cost_table()
    if not costs:
        return None
    state = study_plan(pd.DataFrame(), get_profile(profile))
    return by_study(state, costs, jobs)["hours"]


def by_study(state: Plan, costs: dict, jobs: int = 2) -> pd.DataFrame:
    """Per study: runs left (runnable + blocked), measurements, oracle calls, hours with ``jobs`` processes."""
    rows = _estimate_rows(state, costs)
    table = rows.groupby("study", sort=False).agg(runs=("runs", "sum"), oracle_calls=("oracle", "sum"),
                                                  seconds=("seconds", "sum"))
    studies = [m.study for m in state.measurements] + [b.study for b in state.blocked for _ in range(b.runs)
                                                       if b.stage == "measure"]
    table["measurements"] = pd.Series(studies, dtype=object).value_counts()
    table["measurements"] = table["measurements"].fillna(0).astype(int)
    table["hours"] = table.pop("seconds") / 3600 / max(jobs, 1)
    return table[["runs", "measurements", "oracle_calls", "hours"]]


def _plan_command(args) -> int:
    profile = get_profile(args.profile, args.cuts, getattr(args, "study_cuts", 0))
    if args.what == "definition":
        with pd.option_context("display.width", 250, "display.max_colwidth", 80):
            print(f"study definition, protocol v{D.PROTOCOL_VERSION}, profile {profile.name!r}"
                  + (f" with the first {args.cuts} cut(s)" if args.cuts else "")
                  + (f" and {args.study_cuts} study cut(s)" if args.study_cuts else ""))
            print(definition_table(profile).to_string(index=False))
            print()
            print(methods_table(profile).to_string(index=False))
            print()
            for strategy, text in D.strategy_settings().items():
                print(f"{strategy}: {text}")
        return 0
    if not args.dry_run:
        from .executors import make_executor
        with make_executor(args.scheduler, args.jobs) as executor:
            state = execute(profile, executor, args.runs_dir)
    else:
        state = study_plan(None, profile, args.runs_dir, retry_failed=args.retry_failed)
    table = counts(state)
    costs, source = cost_table(args.costs, args.cost_runs)
    cost = estimate(state, costs)
    with pd.option_context("display.width", 200):
        print(f"profile {profile.name!r}, protocol v{D.PROTOCOL_VERSION}, runs under {runs_dir(args.runs_dir)}")
        print(table.to_string())
        if args.per_method:
            print(per_method(state).round(1).to_string())
            print()
            studies = by_study(state, costs, args.jobs or 2)
            print(f"per study (runs left, measurements, oracle calls, hours with {args.jobs or 2} processes):")
            print(studies.round(1).to_string())
            main = studies["hours"].get("main", 0.0)
            if costs:
                print(f"main study: {main:.1f} h of training, budget {D.MAIN_BUDGET_HOURS} h with 2 processes "
                      f"(cuts applied to {profile.name!r}: {'; '.join(D.applied_cuts(profile.name)) or 'none'})")
            extra = studies.drop(index="main", errors="ignore")["hours"].sum()
            if costs:
                verdict = "over" if extra > D.STUDIES_BUDGET_HOURS else "within"
                print(f"studies beyond the main one: {extra:.1f} h, {verdict} their budget of "
                      f"{D.STUDIES_BUDGET_HOURS} h" + (" (cut in order with --study-cuts: "
                      + "; ".join(w for w, _ in D.STUDY_CUTS) + ")" if verdict == "over" else ""))
        total = table.sum()
        print(f"done {total['done']}, runnable now {total['runnable']}, blocked {total['blocked']} "
              f"(blocked: expected counts; grid extensions not counted, extra seeds an upper bound)")
        for cut, (what, _) in enumerate(D.CUTS[:args.cuts], 1):
            print(f"cut {cut}: {what}")
        for cut, (what, _) in enumerate(D.STUDY_CUTS[:args.study_cuts], 1):
            print(f"study cut {cut}: {what}")
        hours = cost["seconds"].sum() / 3600
        if costs:
            jobs = max(args.jobs or 2, 1)
            print(f"cost of what is left: {hours:.1f} h of training on one process, {hours / jobs:.1f} h "
                  f"with {jobs} (seconds per 60,000 oracle calls: {source})")
            observed = observed_overhead(args.runs_dir, costs)
            if observed is not None:
                factor, units = observed
                print(f"as the study has run (the latest {units} groups and single runs took {factor:.2f} x the "
                      f"timing pass's seconds for their oracle calls: evaluation, start-up, saving, the "
                      f"machine's load): {hours * factor / jobs:.1f} h with {jobs}")
        else:
            print(f"cost of what is left: unknown ({source}; fill {args.costs})")
        edges = {k: v for k, v in state.edges.items() if v in ("spent", "limit")}
        for (row, method, strategy), status in sorted(edges.items()):
            print(f"rate on the grid's edge after tuning: {method} in {row} ({status})")
        for r in state.failed:
            print(f"failed (counted as a result; --retry-failed plans it again): {r.config.run_id}")
    return 0


def _archive_command(args) -> int:
    from .records import archive_runs
    moved = archive_runs(args.protocol, args.runs_dir, dry_run=args.dry_run)
    verb = "would move" if args.dry_run else "moved"
    print(f"{verb} {len(moved)} run(s) of protocol v{args.protocol} out of {runs_dir(args.runs_dir)}")
    return 0


def _command_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m helpers.study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for what in ("plan", "definition"):
        p = sub.add_parser(what, help="print the definition" if what == "definition" else
                           "train the study's runs, most valuable first (--dry-run: count them)")
        p.set_defaults(what=what)
        p.add_argument("--profile", default="full", choices=sorted(D.PROFILES))
        p.add_argument("--cuts", type=int, default=0, help=f"apply the first N of the {len(D.CUTS)} cuts")
        p.add_argument("--study-cuts", type=int, default=0,
                       help=f"apply the first N of the {len(D.STUDY_CUTS)} cuts of the studies beyond the main one")
        p.add_argument("--runs-dir", default=None)
        p.add_argument("--dry-run", action="store_true")
        p.add_argument("--retry-failed", action="store_true")
        p.add_argument("--per-method", action="store_true", help="also print runs and oracle budget per method")
        p.add_argument("--jobs", type=int, default=None)
        p.add_argument("--scheduler", default=None)
        p.add_argument("--costs", default=str(COSTS_FILE), help="seconds per 60,000 oracle calls per method (CSV)")
        p.add_argument("--cost-runs", default=None,
                       help="runs whose wall times stand in while the CSV is empty (a rough guide)")
    archive = sub.add_parser("archive", help="move the runs of an older protocol to outputs/archive/v<N>/runs")
    archive.set_defaults(what="archive")
    archive.add_argument("--protocol", type=int, default=1)
    archive.add_argument("--runs-dir", default=None)
    archive.add_argument("--dry-run", action="store_true")
    return parser


def main(argv=None) -> int:
    """``python -m helpers.study {plan,definition,archive} ...`` or ``SCENARIO MEMBER[,MEMBER...]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("plan", "definition", "archive"):
        args = _command_parser().parse_args(argv)
        return _archive_command(args) if args.what == "archive" else _plan_command(args)
    return _family_command(argv)


def _family_command(argv) -> int:
    from .executors import make_executor
    parser = argparse.ArgumentParser(prog="python -m helpers.study",
                                     description="Tune and train MEMBERS in SCENARIO by the protocol "
                                                 "(or: plan / definition / archive, see --help of each).")
    parser.add_argument("scenario", help="a scenario (standard, l2, sparse60, ...)")
    parser.add_argument("members", help="comma-separated optimizer names, or 'all'")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: the profile's)")
    parser.add_argument("--profile", default="full", choices=sorted(D.PROFILES))
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: one per core)")
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address")
    parser.add_argument("--strategy", default="projection", help="sparsity strategy")
    parser.add_argument("--tag", default="", help="label of a side experiment, reported apart from the study")
    args = parser.parse_args(argv)
    members = names() if args.members == "all" else args.members.split(",")
    for m in members:
        get_spec(m)
    get_scenario(args.scenario)
    profile: dict | str = args.profile
    if args.seeds:
        profile = {"profile": args.profile, "seeds": [int(x) for x in args.seeds.split(",")]}
    tag = {"tag": args.tag} if args.tag else {}
    from .protocol import run_family
    with make_executor(args.scheduler, args.jobs) as executor:
        finals = run_family(members, args.scenario, profile, executor, sparsity_strategy=args.strategy, **tag).frame
    last = finals.sort_values("epoch").groupby("run_id").tail(1)
    print(last.groupby("optimizer")["test_acc"].agg(["mean", "std", "count"]).to_string())
    return 0
