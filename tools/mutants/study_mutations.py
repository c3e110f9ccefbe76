"""The ``study`` table: how the study's runs are scheduled and stored (see mutations.py)."""
from __future__ import annotations

from mutations import Mutation

SCHEDULER = "helpers/study/scheduler.py"
EXECUTORS = "helpers/study/executors.py"
SIDE = "helpers/evidence/side_studies.py"
T_SIDE = "tests/test_side_studies.py"

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
    Mutation("weight-decay-table-keeps-every-l2-final", SIDE,
             'keep |= last["optimizer"].isin(methods) & last["weight_decay"].isin(weight_decays(kind))',
             'keep |= last["optimizer"].isin(methods)', (T_SIDE,)),
    Mutation("preprocessing-compares-other-batch-sizes", SIDE,
             '(runs["planned_epochs"] == epochs) & (runs["batch_size"].map(_batch) == 64)',
             '(runs["planned_epochs"] == epochs)', (T_SIDE,)),
    Mutation("batch-curves-price-full-batch-at-60000", SIDE,
             'seconds_per_oracle_call(method, "full" if batch == N_TRAIN else batch)',
             'seconds_per_oracle_call(method, batch)', (T_SIDE,)),
    Mutation("variance-ratio-keeps-estimates", SIDE,
             'own = at_run[(at_run["estimator"] != "minibatch") & (at_run["kind"] != "estimate")]',
             'own = at_run[at_run["estimator"] != "minibatch"]', (T_SIDE,)),
    Mutation("variance-ratio-over-any-batch-size", SIDE,
             'at_run = table[table["batch_size"] == table["run_batch"]]', 'at_run = table', (T_SIDE,)),
    Mutation("kfac-step-cost-forgets-the-sampled-pass", "helpers/optimizers/kfac.py",
             "return batch_size * (2 if sampled_pass else 1)", "return batch_size",
             ("tests/test_train.py::test_kfac_does_not_start_a_factor_step_its_budget_cannot_pay_for",)),
    Mutation("batch-groups-ignore-shared-hyperparameters", "helpers/engine/batched.py",
             'tuple(config.effective_hparams.get(k) for k in getattr(rule, "shared_hyperparameters", ())))',
             '())',
             ("tests/test_batched.py::test_runs_that_must_share_a_rule_s_hyperparameter_are_grouped_apart",)),
    Mutation("main-study-drops-tuned-batch-sizes", "helpers/evidence/analysis.py",
             'tuned_batch = "batch_size" in KEY_HPARAMS.get(row["optimizer"], {})', "tuned_batch = False",
             ("tests/test_report.py::test_main_tables_keep_the_main_recipe_only",)),
]
