"""The study driver: every family notebook x every scenario through papermill, then the
summary notebook, then the report (``make study`` = ``python -m helpers sweep``).

Notebooks execute one after another (kernel ``fmnist-optim``) into
``outputs/notebooks/<profile>/<name>__<scenario>.ipynb``, each written atomically (executed
to a hidden temporary path, then renamed); a failed one is kept as ``...failed.ipynb`` and
the sweep goes on. The training runs inside a notebook go through ``helpers.study.experiment.run_all``
to the executor this driver names in the environment (``$FMNIST_JOBS`` local processes, or
the Dask scheduler in ``$FMNIST_DASK_SCHEDULER``; see :mod:`helpers.study.executors`).

Reuse: a notebook output whose parameters and source are unchanged is kept (key in its
metadata); runs are the real unit of reuse: a finished record in ``outputs/runs`` is never
recomputed, so re-running the same command after an interruption redoes only what is missing.

The sweep specification is checked before anything runs: every parameter's name against the
notebook's own (``papermill.inspect_notebook``), its value against the type of the notebook's
default and the study's range for it (:data:`helpers.notebook.RULES`: epochs >= 1,
0 < train_fraction <= 1, seeds non-negative integers...), every scenario against
``helpers.constraints.scenarios``.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..notebook import check_parameters
from ..runtime import ROOT
from ..constraints.scenarios import SCENARIOS
from .executors import TLSFiles
from .protocol import PROFILES as STUDY

KERNEL = "fmnist-optim"
NOTEBOOKS_DIR = ROOT / "notebooks"
OUTPUT_DIR = ROOT / "outputs" / "notebooks"
BASELINE = ("00_starter_baseline",)  # run once, without a scenario
FAMILIES = ("10_sgd", "20_momentum", "30_noise_reduction", "40_second_order", "50_sparsity")
SPARSE_ONLY = ("50_sparsity",)  # swept over the sparse scenarios only
SUMMARY = "90_summary"

# The two study sizes, in this one place. "params" go to every notebook of the study,
# "family" to the family notebooks only, "summary" to the summary notebook; each key must be
# a parameter of the notebook it goes to (checked before anything runs). "scenarios": the
# family notebooks' sweep. "runs_dir": where the runs go unless --runs-dir/$FMNIST_RUNS_DIR
# say otherwise. "report": build the report at the end.
PROFILES = {
    # minutes on 2 CPU cores: 2% of the training images, 1 epoch, one seed, the three
    # scenarios the assignment names; tuning budgets stay at the notebooks' CI defaults.
    # Its runs and summary figures stay apart from the study's (no mixing in the report).
    "quick": {
        "scenarios": ["standard", "l2", "sparse60"],
        "params": {"epochs": 1, "train_fraction": 0.02, "seeds": [0]},
        "family": {},
        "runs_dir": ROOT / "outputs" / "scratch" / "quick" / "runs",
        "summary": {"report_dir": str(ROOT / "outputs" / "scratch" / "quick" / "report")},
        "report": False,
    },
    # the study: all 60,000 training images, 10 epochs, 3 seeds, every scenario
    # (standard, l2, sparse60 and the thinner ones); tuning as helpers.study.protocol.PROFILES["full"]
    "full": {
        "scenarios": list(SCENARIOS),
        "params": {"epochs": 10, "train_fraction": 1.0, "seeds": [0, 1, 2]},
        "family": {k: STUDY["full"][k] for k in ("tune_budget", "tune_epochs", "evals_per_epoch")},
        "runs_dir": ROOT / "outputs" / "runs",
        "summary": {},
        "report": True,
    },
}
DEFAULT_PROFILE = "quick"


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
        digest = hashlib.sha1(self.source.read_bytes())
        digest.update(json.dumps([self.parameters, self.runs_dir], sort_keys=True, default=str).encode())
        return digest.hexdigest()

    @property
    def failed_output(self) -> Path:
        return self.output.with_name(self.output.stem + ".failed.ipynb")


def notebook_path(name: str, directory: Path = NOTEBOOKS_DIR) -> Path:
    path = Path(name)
    if path.suffix != ".ipynb":
        path = path.with_name(path.name + ".ipynb")
    return path if path.parent != Path(".") else Path(directory) / path


def declared_parameters(path: Path) -> dict:
    import papermill
    return papermill.inspect_notebook(str(path))


def study_runs_dir(profile: str, runs_dir: str | os.PathLike | None = None) -> Path:
    """Absolute runs directory: ``runs_dir``, else ``$FMNIST_RUNS_DIR``, else the profile's."""
    chosen = runs_dir or os.environ.get("FMNIST_RUNS_DIR") or PROFILES[profile]["runs_dir"]
    return Path(chosen).resolve()  # kernels run in the notebooks' folder


def plan(profile: str = DEFAULT_PROFILE, notebooks: list[str] | None = None,
         scenarios: list[str] | None = None, overrides: dict | None = None,
         notebooks_dir: Path = NOTEBOOKS_DIR, output_dir: Path | None = None,
         runs_dir: str | None = None, scheduler: str | None = None,
         summary: bool = True) -> list[Job]:
    """The notebook executions of a sweep; raise :class:`SweepSpecError` naming every bad key."""
    if profile not in PROFILES:
        raise SweepSpecError(f"unknown profile {profile!r}; known profiles: {', '.join(PROFILES)}")
    spec = PROFILES[profile]
    notebooks_dir = Path(notebooks_dir).resolve()
    output_dir = Path(output_dir).resolve() if output_dir is not None else OUTPUT_DIR / profile
    errors: list[str] = []
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
        selected = [p for n in BASELINE + FAMILIES if (p := notebook_path(n, notebooks_dir)).is_file()]
    root = str(study_runs_dir(profile, runs_dir))
    plumbing = {"runs_dir": root, "scheduler": scheduler}  # also in the kernels' environment
    jobs: list[Job] = []
    bad_values: dict[str, list[str]] = {}  # message -> notebooks
    for path in selected:
        declared = declared_parameters(path)
        takes_scenario = "scenario" in declared
        parameters = {**spec["params"], **(spec["family"] if takes_scenario else {}), **(overrides or {})}
        unknown = sorted(set(parameters) - set(declared))
        if unknown:
            errors.append(f"notebook {path.stem} has no parameter(s) {unknown}; "
                          f"its parameters: {', '.join(declared) or 'none'}")
            continue
        for error in check_parameters(parameters, declared):
            bad_values.setdefault(error, []).append(path.stem)
        parameters.update({k: v for k, v in plumbing.items() if k in declared and v is not None})
        if not takes_scenario:
            jobs.append(Job(path.stem, path, output_dir / path.name, parameters, runs_dir=root))
            continue
        mine = [s for s in scenarios if s in SCENARIOS
                and (path.stem not in SPARSE_ONLY or SCENARIOS[s].sparse)]
        for scenario in mine:
            jobs.append(Job(f"{path.stem}__{scenario}", path,
                            output_dir / f"{path.stem}__{scenario}.ipynb",
                            {**parameters, "scenario": scenario}, runs_dir=root))
    summary_path = notebook_path(SUMMARY, notebooks_dir)
    if summary and not notebooks and summary_path.is_file():
        declared = declared_parameters(summary_path)
        unknown = sorted(set(spec["summary"]) - set(declared))
        if unknown:
            errors.append(f"notebook {SUMMARY} has no parameter(s) {unknown}; "
                          f"its parameters: {', '.join(declared) or 'none'}")
        parameters = {**{k: v for k, v in plumbing.items() if k in declared and v is not None},
                      **spec["summary"]}
        jobs.append(Job(SUMMARY, summary_path, output_dir / summary_path.name, parameters,
                        reusable=False, runs_dir=root))
    errors += [f"{message} (notebook{'s' * (len(names) > 1)} {', '.join(names)})"
               for message, names in bad_values.items()]
    if errors:
        raise SweepSpecError("bad sweep specification:\n  " + "\n  ".join(errors))
    return jobs


def is_current(job: Job) -> bool:
    """A finished output of this very notebook with these very parameters exists."""
    import nbformat
    if not job.reusable or not job.output.is_file():
        return False
    try:
        stored = nbformat.read(job.output, as_version=4).metadata.get("fmnist_sweep", {})
    except Exception:
        return False
    return stored.get("key") == job.key


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
        notebook.metadata["fmnist_sweep"] = {"key": job.key, "parameters": job.parameters,
                                             "source": str(job.source)}
        nbformat.write(notebook, tmp)
        os.replace(tmp, job.output)
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


def report_available() -> bool:
    """Whether ``python -m helpers report`` exists (another part of the project provides it)."""
    probe = subprocess.run([sys.executable, "-m", "helpers", "report", "--help"], cwd=ROOT,
                           capture_output=True, timeout=120)
    return probe.returncode == 0


def run_study(profile: str = DEFAULT_PROFILE, notebooks=None, scenarios=None, overrides=None,
              scheduler: str | None = None, jobs: int | None = None, runs_dir: str | None = None,
              notebooks_dir: Path = NOTEBOOKS_DIR, output_dir: Path | None = None,
              kernel: str = KERNEL, dry_run: bool = False, force: bool = False,
              summary: bool = True, report: bool = True, progress: bool = True,
              tls: TLSFiles | None = None) -> int:
    """Plan (rejecting a bad specification before anything runs), execute, summarise, report.

    ``tls``: the files that secure the Dask cluster (default: ``$FMNIST_DASK_TLS_*``), handed to
    the kernels through the environment. Returns the exit status: 0 when every notebook ran,
    1 when one failed, 2 for a bad spec.
    """
    from tqdm.auto import tqdm

    from .executors import check_address, cpu_cores, scheduler_address
    scheduler = scheduler_address(scheduler)
    tls = tls or TLSFiles.from_options()
    if scheduler:
        scheduler = check_address(scheduler, tls)
    try:
        planned = plan(profile, notebooks, scenarios, overrides, notebooks_dir, output_dir,
                       runs_dir, scheduler, summary)
    except SweepSpecError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if jobs is not None and jobs < 1:
        print(f"error: --jobs must be a positive integer, got {jobs}", file=sys.stderr)
        return 2
    root = study_runs_dir(profile, runs_dir)
    where = f"Dask scheduler {scheduler}" if scheduler else f"{jobs or cpu_cores()} local process(es)"
    print(f"sweep {profile}: {len(planned)} notebook(s), runs in {root} on {where}", file=sys.stderr)
    if force:
        planned = [Job(j.name, j.source, j.output, j.parameters, False, j.runs_dir) for j in planned]
    if dry_run:
        for job in planned:
            state = "reuse" if is_current(job) else "run"
            print(f"{state:5} {job.name} -> {job.output}  {json.dumps(job.parameters, default=str)}")
        return 0
    outcome: Counter = Counter()
    failed: list[str] = []
    before = run_counts(root)
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
    with environment(FMNIST_JOBS=None if scheduler else (jobs or cpu_cores()),
                     FMNIST_DASK_SCHEDULER=scheduler, FMNIST_RUNS_DIR=root,
                     **(tls.environment() if tls and scheduler else {})):
        watcher.start()
        try:
            for job in planned:
                bar.set_description(job.name)
                status = execute(job, kernel, progress=progress)
                outcome[status] += 1
                if status == "failed":
                    failed.append(job.name)
                bar.update(1)
        finally:
            stop.set()
            bar.close()
    after = run_counts(root)
    print(f"notebooks: {dict(outcome)}; runs in {root}: {dict(after)}", file=sys.stderr)
    if failed:
        print(f"failed notebooks (see their .failed.ipynb): {', '.join(failed)}", file=sys.stderr)
    if report and PROFILES[profile]["report"] and not notebooks:
        if report_available():
            status = subprocess.run([sys.executable, "-m", "helpers", "report"], cwd=ROOT).returncode
            if status != 0:
                print(f"report failed (exit {status})", file=sys.stderr)
                return 1
        else:
            print("note: no `python -m helpers report` yet; report skipped", file=sys.stderr)
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
                             "outputs/runs for full, outputs/scratch/quick/runs for quick)")
    parser.add_argument("--notebooks-dir", default=str(NOTEBOOKS_DIR),
                        help="where the notebooks are (default: notebooks/)")
    parser.add_argument("--output-dir", default=None,
                        help="executed notebooks (default: outputs/notebooks/<profile>)")
    parser.add_argument("--kernel", default=KERNEL, help=f"Jupyter kernel (default: {KERNEL})")
    parser.add_argument("--dry-run", action="store_true", help="check the specification, print the plan, run nothing")
    parser.add_argument("--force", action="store_true", help="re-execute notebooks even when their output is current")
    parser.add_argument("--no-summary", action="store_true", help="skip the summary notebook")
    parser.add_argument("--no-report", action="store_true", help="skip the report")


def main(args) -> int:
    try:
        overrides = dict(parse_assignment(text) for text in args.param)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return run_study(args.profile, args.notebooks, args.scenarios, overrides, args.scheduler,
                     args.jobs, args.runs_dir, Path(args.notebooks_dir),
                     Path(args.output_dir) if args.output_dir else None, args.kernel,
                     args.dry_run, args.force, not args.no_summary, not args.no_report,
                     tls=TLSFiles.from_options(args.tls_ca_file, args.tls_cert, args.tls_key))
