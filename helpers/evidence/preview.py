"""Preview the report of the complete study, for layout only: does it fit its 10 pages?

Copies outputs/runs and outputs/measurements to outputs/scratch/preview/, fills every run the
study definition still plans with made-up records (``meta["synthetic"] = true``; smooth curves
whose levels come from a hash of the run id), replans until nothing is left, then builds the
report there and prints its page count. The made-up numbers never leave the scratch folder, and
nothing under report/ or outputs/runs changes.

    python -m helpers.evidence.preview        # (make preview) then look at outputs/scratch/preview/report/page-*.png
"""
from __future__ import annotations

import hashlib
import math
import shutil
import subprocess
import sys
from pathlib import Path

from ..constraints.scenarios import get_scenario
from ..engine.train import RECORD_COLUMNS
from ..runtime import ROOT
from ..study.planner import study_plan
from ..study.records import start_meta, write_run
from .report import MAX_PAGES, compile_pdf, page_count
from .report_artifacts import study_inputs, write_all

SCRATCH = ROOT / "outputs" / "scratch" / "preview"
N_TRAIN = 60_000


def _unit(key: str) -> float:
    """A number in [0, 1) fixed by ``key``."""
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 16 ** 8


DIVERGED_SHARE = 0.08  # made-up runs that diverge halfway (the report must count them, not crash)


def synthetic_records(config) -> list[dict]:
    """Smooth made-up curves for ``config``: accuracy rising to a level set by the method (and
    a little by the run), loss falling with it; a :data:`DIVERGED_SHARE` of runs (by the run id's
    hash) diverge halfway: their last record has no metrics and ``diverged`` set."""
    epochs = config.epochs
    per_epoch = config.evals_per_epoch
    level = 86.0 + 4.5 * _unit(config.optimizer + config.scenario) + 0.4 * _unit(config.run_id)
    split = "test" if config.eval_split == "test" else "val"
    batch = 64 if config.effective_batch_size in (None, "full") else int(config.effective_batch_size)
    density = get_scenario(config.scenario).density or 1.0
    steps = math.ceil(N_TRAIN / (N_TRAIN if config.effective_batch_size == "full" else batch))
    points = sorted({round(steps * k / per_epoch) for k in range(1, per_epoch + 1)})  # as the engine evaluates
    rows = []
    for i in range(epochs * len(points)):
        epoch = i // len(points) + points[i % len(points)] / steps
        acc = level - (level - 10.0) * math.exp(-4.0 * epoch / epochs)
        loss = 0.25 + 2.05 * math.exp(-4.0 * epoch / epochs) + (90.5 - level) * 0.02
        row = dict.fromkeys(RECORD_COLUMNS, math.nan)
        row.update(epoch=epoch, step=round(epoch * steps), train_loss=loss * 0.8,
                   wall_s=epoch * 3.0, grad_evals=epoch * N_TRAIN, hvp_evals=0.0, oracle_evals=epoch * N_TRAIN,
                   lr=config.effective_hparams.get("lr", math.nan), density=density, diverged=False)
        row[f"{split}_acc"], row[f"{split}_loss"] = acc, loss
        if split == "test":
            row["test_starter_loss"] = loss / 64
        rows.append(row)
    if _unit("diverge:" + config.run_id) < DIVERGED_SHARE:
        rows = rows[:max(1, len(rows) // 2)]
        rows[-1].update({k: math.nan for k in ("train_loss", "test_loss", "test_starter_loss", "test_acc",
                                               "val_loss", "val_acc")}, diverged=True)
    return rows


def fill(root: Path) -> int:
    """Write made-up runs for everything the definition plans under ``root``; return how many."""
    written = 0
    while True:
        state = study_plan(None, "full", root)
        if not state.runnable:
            return written
        for planned in state.runnable:
            records = synthetic_records(planned.config)
            meta = start_meta(planned.config)
            final = {k: v for k, v in records[-1].items() if k != "diverged"}
            diverged = bool(records[-1]["diverged"])
            meta.update(status="diverged" if diverged else "finished", ended=meta["started"],
                        final={**final, "weight_norm": math.nan if diverged else 30.0}, synthetic=True)
            write_run(planned.config, records, meta, root)
            written += 1


def build(scratch: Path = SCRATCH, runs: Path = ROOT / "outputs" / "runs", images: bool = True) -> tuple[Path, int]:
    """Copy ``runs`` (and its measurements) under ``scratch``, fill the rest of the study with
    made-up runs, build the report there; return the PDF and its page count."""
    if scratch.exists():
        shutil.rmtree(scratch)
    root = scratch / "runs"
    shutil.copytree(runs, root)
    if (runs.parent / "measurements").is_dir():
        shutil.copytree(runs.parent / "measurements", scratch / "measurements")
    print(f"{fill(root)} made-up runs written under {root}")
    report = scratch / "report"
    shutil.copytree(ROOT / "report", report, ignore=shutil.ignore_patterns("*.pdf", "*.aux", "*.log", "*.fls",
                                                                        "*.fdb_latexmk", "*.out"))
    inputs = study_inputs(root)
    write_all(inputs.frame, report, inputs.records, root=root, state=inputs.state)
    pdf = compile_pdf(report)
    if images:
        subprocess.run(["pdftoppm", "-png", "-r", "60", str(pdf), str(report / "page")], check=True)
    return pdf, page_count(pdf)


def main() -> int:
    pdf, pages = build()
    print(f"{pdf}: {pages} pages (limit {MAX_PAGES}); page images: {pdf.parent}/page-*.png")
    return 0 if pages <= MAX_PAGES else 1


if __name__ == "__main__":
    sys.exit(main())
