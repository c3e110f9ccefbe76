"""The ``study`` table: how the study's runs are scheduled and stored (see mutations.py)."""
from __future__ import annotations

from mutations import Mutation

SCHEDULER = "helpers/study/scheduler.py"
EXECUTORS = "helpers/study/executors.py"

MUTATIONS = [
    Mutation("scheduler-submits-everything-runnable-at-once", SCHEDULER,
             "while queue and len(in_flight) < slots:", "while queue:",
             ("tests/test_studies.py::test_runs_a_finished_run_unblocks_go_before_less_valuable_runnable_ones",)),
    Mutation("scheduler-ignores-priority", SCHEDULER,
             "return sorted(out, key=lambda u: u.priority)", "return out[::-1]",
             ("tests/test_studies.py::test_runs_a_finished_run_unblocks_go_before_less_valuable_runnable_ones",)),
    Mutation("worker-run-drops-its-predictions", EXECUTORS,
             '    if result.get("predictions"):\n', '    if False:\n',
             ("tests/test_records.py::test_a_worker_run_reaches_the_runs_folder_with_its_predictions",)),
]
