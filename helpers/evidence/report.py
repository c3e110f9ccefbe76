"""Build report/report.pdf from the committed records: run 90_summary (which writes
report/tables and report/figures), compile the LaTeX with latexmk, check the page limit.

``python -m helpers.evidence.report [--no-notebook]``
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..runtime import ROOT

REPORT_DIR = ROOT / "report"
MAX_PAGES = 10
KERNEL = "fmnist-optim"
TEX_PACKAGES = ["latexmk", "texlive-latex-recommended", "texlive-fonts-recommended",
                "texlive-latex-extra", "poppler-utils"]


def run_summary(report_dir: Path = REPORT_DIR) -> Path:
    """Execute notebooks/90_summary.ipynb so it writes the report's tables and figures: the full
    study's summary job exactly as ``make study`` plans it (same parameters, same output)."""
    from ..study.sweep import SUMMARY, execute, plan
    job = next(j for j in plan("full", report_dir=report_dir) if j.name == SUMMARY)
    if execute(job, KERNEL, progress=False) != "done":
        raise SystemExit(f"{SUMMARY} failed: see {job.failed_output}")
    return job.output


def ensure_latex() -> None:
    if shutil.which("latexmk"):
        return
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *TEX_PACKAGES],
                       env=env, check=True)
        return
    raise SystemExit("latexmk not found: install it with `apt-get install -y --no-install-recommends "
                     + " ".join(TEX_PACKAGES) + "` (as root), then rerun `make report`")


def compile_pdf(report_dir: Path = REPORT_DIR) -> Path:
    ensure_latex()
    subprocess.run(["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
                   cwd=report_dir, check=True, stdout=subprocess.DEVNULL)
    return report_dir / "report.pdf"


def page_count(pdf: Path) -> int:
    from pypdf import PdfReader
    return len(PdfReader(str(pdf)).pages)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.evidence.report", description=__doc__)
    parser.add_argument("--no-notebook", action="store_true", help="reuse the tables/figures on disk")
    args = parser.parse_args(argv)
    if not args.no_notebook:
        run_summary()
    from .report_artifacts import update_readme
    for block in ("results", "protocol"):
        update_readme(ROOT / "README.md", (REPORT_DIR / "tables" / f"readme_{block}.md").read_text(), block)
    pdf = compile_pdf()
    pages = page_count(pdf)
    print(f"{pdf}: {pages} pages (limit {MAX_PAGES})")
    if pages > MAX_PAGES:
        print(f"error: the report has {pages} pages, more than {MAX_PAGES}; shorten report.tex",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
