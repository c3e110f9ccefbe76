#!/bin/bash
# Commit the study's finished records, then the report, README block and summary built from exactly
# them (tests/test_report.py checks that the committed tables match the committed records).
# Usage: tools/commit_records.sh "commit message"   (exit 2: a run landed while the report was built; run it again)
set -u
cd "$(dirname "$0")/.."
mark=$(mktemp)
git add outputs/runs && git commit -qm "${1:-Study records}" || true
.venv/bin/python -m helpers report > /tmp/commit_records_report.log 2>&1 || { tail /tmp/commit_records_report.log; exit 1; }
landed=$(find outputs/runs -name meta.json -newer "$mark" | wc -l)
if [ "$landed" != "0" ]; then echo "$landed runs landed while the report was built: run it again"; exit 2; fi
git add report README.md outputs/notebooks/90_summary.ipynb
git commit -qm "Report, README results block and summary rebuilt from the committed records" && echo committed
