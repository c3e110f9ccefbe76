"""The sweep's first and last stages: train what the study definition names (through the
planner), and build the report. Each returns what failed (an empty list when all went well),
so :func:`helpers.study.sweep.run_study` goes on and names every failure at the end."""
from __future__ import annotations

import shutil
import subprocess
import sys
import traceback
from pathlib import Path

from ..runtime import ROOT
from .records import read_meta

REPORT_SOURCES = ("report.tex", "conclusion.tex")


def preview(profile: str, root) -> str:
    """What the training stage would do now: runs runnable, blocked, done (for ``--dry-run``)."""
    from .planner import study_plan
    state = study_plan(None, profile, root)
    waiting = sum(b.runs for b in state.blocked)
    return (f"training: {len(state.runnable)} run(s) to train now, about {waiting} more after them "
            f"(blocked on results), {len(state.done)} done, in {root}")


def train(profile: str, root, scheduler=None, jobs=None, tls=None, progress: bool = True) -> list[str]:
    """Train every run of ``profile`` that is missing under ``root``, most valuable first
    (:func:`helpers.study.planner.execute`); return the failed ones, named."""
    from .executors import make_executor
    from .planner import execute
    try:
        with make_executor(scheduler, jobs, tls) as executor:
            state = execute(profile, executor, root, progress)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as error:  # the planner itself broke: the notebooks still run
        traceback.print_exc()
        return [f"training stage: {type(error).__name__}: {error}"]
    failed = []
    for run in state.done:
        meta = read_meta(run.config.run_id, root) or {}
        if meta.get("status") == "failed":
            error = str(meta.get("error", "")).strip().splitlines()
            failed.append(f"run {run.config.run_id} ({run.row} {run.method} {run.stage}): "
                          f"{error[-1] if error else 'failed'}")
    return failed


def build_report(kind: str, report_dir) -> list[str]:
    """``"project"``: ``python -m helpers report --no-notebook`` (report/report.pdf and the
    README's results block, from the tables the summary just wrote). ``"scratch"``: compile a
    copy of report.tex over the tables and figures in ``report_dir``. Return what failed."""
    if kind == "project":
        status = subprocess.run([sys.executable, "-m", "helpers", "report", "--no-notebook"], cwd=ROOT).returncode
        return [] if status == 0 else [f"report (python -m helpers report exited {status})"]
    from ..evidence.report import MAX_PAGES, compile_pdf, page_count
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    try:
        for name in REPORT_SOURCES:
            if (ROOT / "report" / name).is_file():
                shutil.copy2(ROOT / "report" / name, report_dir / name)
        pdf = compile_pdf(report_dir)
        pages = page_count(pdf)
    except (KeyboardInterrupt, SystemExit) as stop:
        if isinstance(stop, SystemExit) and stop.code not in (None, 0):  # ensure_latex's message
            return [f"report: {stop.code}"]
        raise
    except Exception as error:
        log = report_dir / "report.log"
        return [f"report in {report_dir}: {type(error).__name__}: {error}"
                + (f" (see {log})" if log.is_file() else "")]
    print(f"{pdf}: {pages} pages", file=sys.stderr)
    return [] if pages <= MAX_PAGES else [f"report {pdf}: {pages} pages, more than {MAX_PAGES}"]
