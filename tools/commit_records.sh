#!/bin/bash
# Commit the study's finished records and measurements, then the report and README blocks built from exactly
# them (tests/test_report.py checks that the committed tables match the committed records).
# Usage: tools/commit_records.sh "commit message"
# The executed notebooks under outputs/notebooks/full/ are committed after `make study`, not here.
# The report is built from a snapshot of the committed records (git archive into a temporary folder,
# FMNIST_RUNS_DIR pointing there), so runs that land while it is built wait for the next commit.
set -u
cd "$(dirname "$0")/.."
git add outputs/runs outputs/measurements && git commit -qm "${1:-Study records}" || true
snap=$(mktemp -d)
trap 'rm -rf "$snap"' EXIT
git archive HEAD outputs/runs outputs/measurements | tar -x -C "$snap"
FMNIST_RUNS_DIR="$snap/outputs/runs" .venv/bin/python -m helpers report > /tmp/commit_records_report.log 2>&1 \
  || { tail /tmp/commit_records_report.log; exit 1; }
git add report README.md
# the executed summary names the snapshot's folder: restore the committed one (make study commits it)
git checkout -q -- outputs/notebooks/full/90_summary.ipynb
git commit -qm "Report and README results block rebuilt from the committed records" && echo committed
