#!/bin/bash
# Commit the study's finished records and measurements, then the report, README blocks and summary built from exactly
# them (tests/test_report.py checks that the committed tables match the committed records).
# Usage: tools/commit_records.sh "commit message"
# A run that lands while the report is built makes it stale: the records are committed again and
# the report rebuilt, up to 5 times (exit 2 if runs kept landing).
set -u
cd "$(dirname "$0")/.."
for attempt in 1 2 3 4 5; do
  mark=$(mktemp)
  git add outputs/runs outputs/measurements && git commit -qm "${1:-Study records}" || true
  .venv/bin/python -m helpers report > /tmp/commit_records_report.log 2>&1 || { tail /tmp/commit_records_report.log; exit 1; }
  landed=$(find outputs/runs outputs/measurements -name meta.json -newer "$mark" 2>/dev/null | wc -l)
  rm -f "$mark"
  if [ "$landed" = "0" ]; then
    git add report README.md outputs/notebooks/90_summary.ipynb
    git commit -qm "Report, README results block and summary rebuilt from the committed records" && echo committed
    exit 0
  fi
  echo "attempt $attempt: $landed runs landed while the report was built; again"
done
exit 2
