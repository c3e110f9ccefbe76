"""The study driver behind ``make study`` (``python -m helpers sweep``): train the study, run
every notebook on its records, summarise, build the report.

Stages, for a profile of :mod:`helpers.study.definition` (``ci``, ``quick``, ``full``):

1. **train**: the planner (:func:`helpers.study.planner.execute`) trains every run the
   definition names, most valuable first, replanning after each batched group or run (a finished
   tuning unblocks its finals, finals their extra seeds), on the local pool or the Dask cluster. Finished runs
   are never recomputed, so with complete records this stage trains nothing.
2. **notebooks**: papermill executes ``00_starter_baseline``, each family notebook for each main
   scenario of the profile (standard, l2, sparse60), ``50_sparsity`` over the thinner budgets,
   then ``90_summary`` (which writes the report's tables and figures). The notebooks ask for the
   same configurations through the same functions, so after stage 1 they only read records.
3. **report**: ``full`` builds ``report/report.pdf`` and the README's results block
   (``python -m helpers report --no-notebook``); ``ci`` and ``quick`` compile a copy of
   ``report.tex`` over their own tables in their scratch folder.

A failure in one stage (a run, a notebook, the report) lets the rest finish; the command then
exits 1 naming what failed (exit 2: a bad specification, before anything ran).

Notebooks execute one after another (kernel ``fmnist-optim``) into
``<output_dir>/<name>__<scenario>.ipynb``, each written atomically (executed to a hidden
temporary path, then renamed); a failed one is kept as ``...failed.ipynb``. Training runs a
notebook asks for go through ``helpers.study.experiment.run_all`` to the executor this driver
names in the environment (``$FMNIST_JOBS`` local processes, or the Dask scheduler in
``$FMNIST_DASK_SCHEDULER``, over TLS with ``$FMNIST_DASK_TLS_*``; see :mod:`helpers.study.executors`).
A notebook output is reused while its source, parameters, the records and measurements it reads and
the helpers' code are unchanged (its key in the output folder's ``.sweep-keys.json``, not committed).

The specification is checked before anything runs: every parameter's name against the
notebook's own (``papermill.inspect_notebook``), its value against the type of the notebook's
default and the study's range for it (:data:`helpers.notebook.RULES`: epochs >= 1,
0 < train_fraction <= 1, seeds non-negative integers...), every scenario against
``helpers.constraints.scenarios``.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..notebook import check_parameters
from ..runtime import ROOT, as_repo_parameter, repo_path
from ..constraints.scenarios import SCENARIOS, get_scenario
from .executors import TLSFiles
from .records import measurements_dir

KERNEL = "fmnist-optim"
NOTEBOOKS_DIR = ROOT / "notebooks"
OUTPUT_DIR = ROOT / "outputs" / "notebooks"
SCRATCH = ROOT / "outputs" / "scratch"
REPORT_DIR = ROOT / "report"
BASELINE = ("00_starter_baseline",)  # run once, without a scenario
FAMILIES = ("10_sgd", "20_momentum", "30_noise_reduction", "40_second_order")
SPARSITY = "50_sparsity"  # once, over the profile's thinner budgets
SUMMARY = "90_summary"

# Where each profile of the study writes, and what trims its notebooks. "report": "project"
# builds report/report.pdf and the README block; "scratch" compiles a copy of report.tex in
# "report_dir". "trim": per notebook, parameters set only where the notebook declares them (the
# CI profile's one or two members per notebook). "scenarios_of": per notebook, the subset of
# the profile's main scenarios it runs (default: all of them).
PLACES = {
    # the whole pipeline in about two minutes on 2 CPU cores, inside `make test`
    "ci": {
        "runs_dir": SCRATCH / "ci" / "runs", "output_dir": SCRATCH / "ci" / "notebooks",
        "report_dir": SCRATCH / "ci" / "report", "report": "scratch",
        "trim": {"10_sgd": {"members": ["sgd"]},
                 "20_momentum": {"members": ["adam"]},
                 "30_noise_reduction": {"members": ["sarah"], "variance_samples": 128,
                                        "variance_epochs": 1, "variance_warmup_epochs": 0},
                 "40_second_order": {"members": ["kfac"]},
                 SPARSITY: {"optimizers": ["sgd"]}},
        # each family notebook once, each main scenario at least once
        "scenarios_of": {"10_sgd": ("standard",), "20_momentum": ("l2",), "30_noise_reduction": ("sparse60",),
                         "40_second_order": ("standard",)},
    },
    # the smoke run of every method (make study PROFILE=quick)
    "quick": {
        "runs_dir": SCRATCH / "quick" / "runs", "output_dir": SCRATCH / "quick" / "notebooks",
        "report_dir": SCRATCH / "quick" / "report", "report": "scratch", "trim": {}, "scenarios_of": {},
    },
    # the study behind the report; its executed notebooks are committed
    "full": {
        "runs_dir": ROOT / "outputs" / "runs", "output_dir": OUTPUT_DIR / "full",
        "report_dir": REPORT_DIR, "report": "project", "trim": {}, "scenarios_of": {},
    },
}
PROFILES = tuple(PLACES)
DEFAULT_PROFILE = "full"


def profile_spec(profile: str, report_dir: str | os.PathLike | None = None) -> dict:
    """A profile as the sweep runs it, derived from the study definition: "scenarios" (the family
    notebooks' main scenarios), "thinner" (50_sparsity's), "params" (every notebook), "family"
    (the family notebooks' tuning sizes), "sparsity" (50_sparsity's densities and strategies),
    "summary", plus :data:`PLACES`. ``report_dir`` other than report/ makes the report a scratch one."""
    if profile not in PLACES:
        raise SweepSpecError(f"unknown profile {profile!r}; known profiles: {', '.join(PLACES)}")
    from . import definition as D
    from .protocol import notebook_parameters
    sizes = notebook_parameters(profile)
    rows = D.get_profile(profile).rows_in()
    scenarios = D.main_scenarios(profile)
    thinner = [s for s in scenarios if s in D.THINNER]
    sparse = [get_scenario(s) for s in scenarios if get_scenario(s).sparse]
    strategies = {st for r in rows if get_scenario(r.scenario).sparse for st in r.strategies}
    from ..constraints.sparsity import STRATEGIES
    place = dict(PLACES[profile])
    if report_dir is not None and Path(report_dir).resolve() != REPORT_DIR.resolve():
        place.update(report_dir=Path(report_dir).resolve(), report="scratch")
    return {
        **place,
        "scenarios": [s for s in scenarios if s not in D.THINNER],
        "thinner": thinner,
        "params": {k: sizes[k] for k in ("epochs", "train_fraction", "seeds")},
        "family": {k: sizes[k] for k in ("tune_budget", "tune_epochs", "evals_per_epoch")},
        "sparsity": {"densities": [1.0, *sorted({sc.density for sc in sparse if not sc.structured},
                                               reverse=True)],
                     "thin_densities": sorted({sc.density for sc in sparse if sc.structured}, reverse=True),
                     "strategies": [st for st in STRATEGIES if st in strategies],
                     "evals_per_epoch": sizes["evals_per_epoch"]},
        "summary": {"report_dir": str(place["report_dir"])},
    }


class SweepSpecError(ValueError):
    """The sweep specification names something no notebook or scenario has."""


@dataclass(frozen=True)
class Job:
    """One notebook execution: source, output path, papermill parameters."""
    name: str
    source: Path
    output: Path
    parameters: dict = field(default_factory=dict)
    reusable: bool = True
    runs_dir: str = ""

    @property
    def key(self) -> str:
        """Source, parameters, runs folder and the content of everything the notebook reads
        (:func:`inputs_fingerprint`): a new record or a code change makes a stored output stale."""
        digest = hashlib.sha1(self.source.read_bytes())
        digest.update(json.dumps([self.parameters, self.runs_dir], sort_keys=True, default=str).encode())
        records = [self.runs_dir, measurements_dir(self.runs_dir)] if self.runs_dir else []
        digest.update(inputs_fingerprint(*records, *NOTEBOOK_INPUTS).encode())
        return digest.hexdigest()

    @property
    def failed_output(self) -> Path:
        return self.output.with_name(self.output.stem + ".failed.ipynb")


NOTEBOOK_INPUTS = (ROOT / "helpers", ROOT / "outputs" / "timing")  # besides the runs and their measurements


def inputs_fingerprint(*folders) -> str:
    """SHA-1 over the relative path and bytes of every file under ``folders`` (absent ones add
    nothing); the bytes are read again only when a file's size or modification time changed."""
    signature = []
    for folder in map(Path, folders):
        if folder.is_dir():
            for path in sorted(folder.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    stat = path.stat()
                    signature.append((str(folder), str(path.relative_to(folder)), stat.st_mtime_ns, stat.st_size))
    return _content_digest(tuple(signature))


@functools.lru_cache(maxsize=16)
def _content_digest(signature: tuple) -> str:
    digest = hashlib.sha1()
    for folder, name, _, _ in signature:
        digest.update(name.encode() + b"\0")
        digest.update((Path(folder) / name).read_bytes())
    return digest.hexdigest()


def scrub_volatile(notebook) -> None:
    """Drop what changes from one execution to the next though the outputs do not: execution
    timestamps and durations, papermill's absolute paths, the injected-parameters cell's random id."""
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        for key in ("duration", "start_time", "end_time"):
            cell.metadata.get("papermill", {}).pop(key, None)
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell["id"] = "injected-parameters"
    for key in ("duration", "start_time", "end_time", "input_path", "output_path"):
        notebook.metadata.get("papermill", {}).pop(key, None)


def notebook_path(name: str, directory: Path = NOTEBOOKS_DIR) -> Path:
    path = Path(name)
    if path.suffix != ".ipynb":
        path = path.with_name(path.name + ".ipynb")
    return path if path.parent != Path(".") else Path(directory) / path


def declared_parameters(path: Path) -> dict:
    import papermill
    return papermill.inspect_notebook(str(path))


def study_runs_dir(profile: str, runs_dir: str | os.PathLike | None = None) -> Path:
    """Absolute runs directory: ``runs_dir``, else ``$FMNIST_RUNS_DIR``, else the profile's (a
    relative path is taken from the repository root: kernels run in the notebooks' folder)."""
    return repo_path(runs_dir or os.environ.get("FMNIST_RUNS_DIR") or PLACES[profile]["runs_dir"])


def plan(profile: str = DEFAULT_PROFILE, notebooks: list[str] | None = None,
         scenarios: list[str] | None = None, overrides: dict | None = None,
         notebooks_dir: Path = NOTEBOOKS_DIR, output_dir: Path | None = None,
         runs_dir: str | None = None, scheduler: str | None = None,
         summary: bool = True, report_dir: str | os.PathLike | None = None) -> list[Job]:
    """The notebook executions of a sweep; raise :class:`SweepSpecError` naming every bad key."""
    spec = profile_spec(profile, report_dir)
    notebooks_dir = Path(notebooks_dir).resolve()
    output_dir = Path(output_dir).resolve() if output_dir is not None else Path(spec["output_dir"])
    errors: list[str] = []
    chosen_scenarios = bool(scenarios)
    scenarios = list(scenarios) if scenarios else list(spec["scenarios"])
    bad = [s for s in scenarios if s not in SCENARIOS]
    if bad:
        errors.append(f"unknown scenario(s) {bad}; known scenarios: {', '.join(SCENARIOS)}")
    if notebooks:
        selected = [notebook_path(n, notebooks_dir) for n in notebooks]
        missing = [str(p) for p in selected if not p.is_file()]
        if missing:
            available = sorted(p.stem for p in notebooks_dir.glob("*.ipynb"))
            errors.append(f"notebook(s) not found: {missing}; available in {notebooks_dir}: "
                          f"{', '.join(available) or 'none'}")
        selected = [p for p in selected if p.is_file()]
    else:
        selected = [p for n in (*BASELINE, *FAMILIES, SPARSITY)
                    if (p := notebook_path(n, notebooks_dir)).is_file()]
    root = str(study_runs_dir(profile, runs_dir))
    plumbing = {"runs_dir": as_repo_parameter(root), "scheduler": scheduler}
    jobs: list[Job] = []
    bad_values: dict[str, list[str]] = {}  # message -> notebooks
    for path in selected:
        declared = declared_parameters(path)
        name, takes_scenario = path.stem, "scenario" in declared
        trim = {k: v for k, v in spec["trim"].get(name, {}).items() if k in declared}
        if "profile" in declared:  # the notebook sizes itself from the study definition
            sizes = {"profile": profile}
        else:
            sizes = {**spec["params"], **(spec["family"] if takes_scenario else {}),
                     **(spec["sparsity"] if name == SPARSITY else {})}
        parameters = {**sizes, **trim, **(overrides or {})}
        unknown = sorted(set(parameters) - set(declared))
        if unknown:
            sized = "profile" in declared and set(unknown) & {*spec["params"], *spec["family"]}
            errors.append(f"notebook {name} has no parameter(s) {unknown}; "
                          f"its parameters: {', '.join(declared) or 'none'}"
                          + ("; its sizes come from the study profile (--profile; "
                             "python -m helpers.study definition --profile NAME)" if sized else ""))
            continue
        for error in check_parameters(parameters, declared):
            bad_values.setdefault(error, []).append(name)
        parameters.update({k: v for k, v in plumbing.items() if k in declared and v is not None})
        if not takes_scenario:
            jobs.append(Job(name, path, output_dir / path.name, parameters, runs_dir=root))
            continue
        allowed = None if chosen_scenarios else spec["scenarios_of"].get(name)
        for scenario in [s for s in scenarios if s in SCENARIOS and (allowed is None or s in allowed)]:
            jobs.append(Job(f"{name}__{scenario}", path, output_dir / f"{name}__{scenario}.ipynb",
                            {**parameters, "scenario": scenario}, runs_dir=root))
    summary_path = notebook_path(SUMMARY, notebooks_dir)
    if summary and not notebooks and summary_path.is_file():
        declared = declared_parameters(summary_path)
        unknown = sorted(set(spec["summary"]) - set(declared))
        if unknown:
            errors.append(f"notebook {SUMMARY} has no parameter(s) {unknown}; "
                          f"its parameters: {', '.join(declared) or 'none'}")
        parameters = {**{k: v for k, v in plumbing.items() if k in declared and v is not None},
                      **({"profile": profile} if "profile" in declared else {}),
                      **{k: as_repo_parameter(v) for k, v in spec["summary"].items()}}
        jobs.append(Job(SUMMARY, summary_path, output_dir / summary_path.name, parameters,
                        reusable=False, runs_dir=root))
    errors += [f"{message} (notebook{'s' * (len(names) > 1)} {', '.join(names)})"
               for message, names in bad_values.items()]
    if errors:
        raise SweepSpecError("bad sweep specification:\n  " + "\n  ".join(errors))
    return jobs


KEYS_FILE = ".sweep-keys.json"  # beside the outputs, not committed: the keys name this checkout's folders


def _stored_keys(folder: Path) -> dict:
    try:
        return json.loads((folder / KEYS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _store_key(job: Job) -> None:
    keys = {**_stored_keys(job.output.parent), job.output.name: job.key}
    tmp = job.output.parent / f".tmp-{KEYS_FILE}"
    tmp.write_text(json.dumps(keys, indent=1, sort_keys=True))
    os.replace(tmp, job.output.parent / KEYS_FILE)


def is_current(job: Job) -> bool:
    """A finished output of this very notebook with these very parameters and inputs exists (its
    key is kept in the output folder's :data:`KEYS_FILE`, so the notebook itself stays the same
    in every checkout and a fresh clone executes every notebook)."""
    if not job.reusable or not job.output.is_file():
        return False
    return _stored_keys(job.output.parent).get(job.output.name) == job.key


def execute(job: Job, kernel: str = KERNEL, progress: bool = True) -> str:
    """Run one notebook into its output (atomically); return "reused", "done" or "failed"."""
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError
    if is_current(job):
        return "reused"
    job.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = job.output.with_name(f".tmp-{job.output.name}")
    try:
        try:
            papermill.execute_notebook(str(job.source), str(tmp), parameters=job.parameters,
                                       kernel_name=kernel, cwd=str(job.source.parent),
                                       progress_bar=progress)
        except PapermillExecutionError as error:
            print(f"notebook {job.name} failed: {error.ename}: {error.evalue}", file=sys.stderr)
            os.replace(tmp, job.failed_output)
            job.output.unlink(missing_ok=True)
            return "failed"
        notebook = nbformat.read(tmp, as_version=4)
        scrub_volatile(notebook)
        notebook.metadata["fmnist_sweep"] = {"parameters": job.parameters, "source": as_repo_parameter(job.source)}
        nbformat.write(notebook, tmp)
        os.replace(tmp, job.output)
        _store_key(job)
        job.failed_output.unlink(missing_ok=True)
        return "done"
    finally:
        tmp.unlink(missing_ok=True)


def run_counts(root) -> Counter:
    """Runs under ``root`` by status (from their meta.json)."""
    counts: Counter = Counter()
    for meta in Path(root).glob("*/meta.json"):
        try:
            counts[json.loads(meta.read_text()).get("status", "?")] += 1
        except (OSError, ValueError):
            continue
    return counts


@contextlib.contextmanager
def environment(**values):
    """Set environment variables (None: leave as is) for the kernels started inside."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update({k: str(v) for k, v in values.items() if v is not None})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_study(profile: str = DEFAULT_PROFILE, notebooks=None, scenarios=None, overrides=None,
              scheduler: str | None = None, jobs: int | None = None, runs_dir: str | None = None,
              notebooks_dir: Path = NOTEBOOKS_DIR, output_dir: Path | None = None,
              kernel: str = KERNEL, dry_run: bool = False, force: bool = False,
              summary: bool = True, report: bool = True, progress: bool = True,
              tls: TLSFiles | None = None, train: bool = True,
              report_dir: str | os.PathLike | None = None) -> int:
    """Plan (rejecting a bad specification before anything runs), train, execute the notebooks,
    summarise, report.

    ``train``: first train the study's runs through the planner (only for a whole study: not
    with ``notebooks``). ``tls``: the files that secure the Dask cluster (default:
    ``$FMNIST_DASK_TLS_*``), handed to the kernels through the environment. Returns the exit
    status: 0 when everything ran, 1 when something failed (named on stderr), 2 for a bad spec.
    """
    from tqdm.auto import tqdm

    from . import stages
    from .executors import check_address, cpu_cores, scheduler_address
    scheduler = scheduler_address(scheduler)
    tls = tls or TLSFiles.from_options()
    if scheduler:
        scheduler = check_address(scheduler, tls)
    try:
        planned = plan(profile, notebooks, scenarios, overrides, notebooks_dir, output_dir,
                       runs_dir, scheduler, summary, report_dir)
    except SweepSpecError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if jobs is not None and jobs < 1:
        print(f"error: --jobs must be a positive integer, got {jobs}", file=sys.stderr)
        return 2
    root = study_runs_dir(profile, runs_dir)
    train = train and not notebooks
    where = f"Dask scheduler {scheduler}" if scheduler else f"{jobs or cpu_cores()} local process(es)"
    print(f"sweep {profile}: {len(planned)} notebook(s), runs in {root} on {where}", file=sys.stderr)
    if force:
        planned = [Job(j.name, j.source, j.output, j.parameters, False, j.runs_dir) for j in planned]
    if dry_run:
        if train:
            print(stages.preview(profile, root))
        for job in planned:
            state = "reuse" if is_current(job) else "run"
            print(f"{state:5} {job.name} -> {job.output}  {json.dumps(job.parameters, default=str)}")
        return 0
    outcome: Counter = Counter()
    failed: list[str] = []
    before = run_counts(root)
    with environment(FMNIST_JOBS=None if scheduler else (jobs or cpu_cores()),
                     FMNIST_DASK_SCHEDULER=scheduler, FMNIST_RUNS_DIR=root,
                     **(tls.environment() if tls and scheduler else {})):
        timings: list[str] = []
        if train:
            started = time.monotonic()
            failed += stages.train(profile, root, scheduler, jobs, tls, progress)
            timings.append(f"training {time.monotonic() - started:.0f} s")
        bar = tqdm(total=len(planned), desc="notebooks", unit="nb", file=sys.stderr,
                   disable=not progress, dynamic_ncols=True)
        stop = threading.Event()

        def watch_runs():
            while not stop.wait(5.0):
                now = run_counts(root)
                bar.set_postfix(runs_done=sum(now[s] for s in ("finished", "diverged")) -
                                sum(before[s] for s in ("finished", "diverged")),
                                runs_failed=now["failed"], refresh=True)

        watcher = threading.Thread(target=watch_runs, daemon=True)
        watcher.start()
        try:
            for job in planned:
                bar.set_description(job.name)
                started = time.monotonic()
                status = execute(job, kernel, progress=progress)
                timings.append(f"{job.name} {status} {time.monotonic() - started:.0f} s")
                outcome[status] += 1
                if status == "failed":
                    failed.append(f"notebook {job.name} (see {job.failed_output})")
                bar.update(1)
        finally:
            stop.set()
            bar.close()
    after = run_counts(root)
    trained = sum(after.values()) - sum(before.values())
    print(f"notebooks: {dict(outcome)}; runs in {root}: {dict(after)}, {trained} new", file=sys.stderr)
    print("times: " + "; ".join(timings), file=sys.stderr)
    if report and summary and not notebooks and not any(f.startswith(f"notebook {SUMMARY}") for f in failed):
        spec = profile_spec(profile, report_dir)
        started = time.monotonic()
        failed += stages.build_report(spec["report"], spec["report_dir"])
        print(f"report {time.monotonic() - started:.0f} s", file=sys.stderr)
    if failed:
        print(f"failed ({len(failed)}):\n  " + "\n  ".join(failed), file=sys.stderr)
    return 1 if failed else 0


def parse_assignment(text: str) -> tuple[str, object]:
    """``key=value`` with the value read as JSON when it parses (numbers, lists, null), else text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def add_arguments(parser) -> None:
    parser.add_argument("--profile", default=DEFAULT_PROFILE, choices=list(PROFILES),
                        help=f"study size (default: {DEFAULT_PROFILE})")
    parser.add_argument("--scheduler", default=None,
                        help="Dask scheduler address, e.g. tcp://127.0.0.1:8786 "
                             "(default: $FMNIST_DASK_SCHEDULER, else local processes)")
    parser.add_argument("--tls-ca-file", default=None, metavar="PEM",
                        help="CA certificate of a TLS-secured Dask cluster ($FMNIST_DASK_TLS_CA_FILE)")
    parser.add_argument("--tls-cert", default=None, metavar="PEM",
                        help="this client's certificate ($FMNIST_DASK_TLS_CERT)")
    parser.add_argument("--tls-key", default=None, metavar="PEM",
                        help="this client's private key ($FMNIST_DASK_TLS_KEY)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="local worker processes (default: one per core)")
    parser.add_argument("--notebooks", nargs="+", default=None,
                        help="notebooks to run, e.g. 10_sgd 20_momentum (default: all that exist)")
    parser.add_argument("--scenarios", nargs="+", default=None,
                        help=f"scenarios (known: {', '.join(SCENARIOS)}; default: the profile's)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                        help="override a notebook parameter (value parsed as JSON when possible)")
    parser.add_argument("--runs-dir", default=None,
                        help="run records (default: $FMNIST_RUNS_DIR, else the profile's: "
                             "outputs/runs for full, outputs/scratch/<profile>/runs otherwise)")
    parser.add_argument("--notebooks-dir", default=str(NOTEBOOKS_DIR),
                        help="where the notebooks are (default: notebooks/)")
    parser.add_argument("--output-dir", default=None,
                        help="executed notebooks (default: outputs/notebooks/full for full, "
                             "outputs/scratch/<profile>/notebooks otherwise)")
    parser.add_argument("--report-dir", default=None,
                        help="the summary's tables and figures and the compiled report (default: report/ "
                             "for full, outputs/scratch/<profile>/report otherwise; another folder than "
                             "report/ leaves report/ and the README untouched)")
    parser.add_argument("--kernel", default=KERNEL, help=f"Jupyter kernel (default: {KERNEL})")
    parser.add_argument("--dry-run", action="store_true", help="check the specification, print the plan, run nothing")
    parser.add_argument("--force", action="store_true", help="re-execute notebooks even when their output is current")
    parser.add_argument("--no-summary", action="store_true", help="skip the summary notebook")
    parser.add_argument("--no-report", action="store_true", help="skip the report")
    parser.add_argument("--no-train", action="store_true",
                        help="skip the planner's training stage (the notebooks still train what they ask for)")


def main(args) -> int:
    try:
        overrides = dict(parse_assignment(text) for text in args.param)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    here = lambda path: str(Path(path).resolve()) if path else None  # noqa: E731  (command-line paths: from the cwd)
    return run_study(args.profile, args.notebooks, args.scenarios, overrides, args.scheduler,
                     args.jobs, here(args.runs_dir), Path(args.notebooks_dir).resolve(),
                     Path(args.output_dir).resolve() if args.output_dir else None, args.kernel,
                     args.dry_run, args.force, not args.no_summary, not args.no_report,
                     tls=TLSFiles.from_options(args.tls_ca_file, args.tls_cert, args.tls_key),
                     train=not args.no_train, report_dir=here(args.report_dir))
