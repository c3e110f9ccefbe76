"""The ``noise_reduction`` mutation table: SVRG, SARAH, SAGA, averaging, Lookahead, growing batch,
and the schedule-free evaluation point (rows as in ``mutations.py``).

    python tools/mutants/run.py --table noise_reduction
"""
from __future__ import annotations

from mutations import Mutation

SVRG = "helpers/optimizers/svrg.py"
SARAH = "helpers/optimizers/sarah.py"
SAGA = "helpers/optimizers/saga.py"
AVERAGING = "helpers/optimizers/averaging.py"
LOOKAHEAD = "helpers/optimizers/lookahead.py"
GROWING = "helpers/optimizers/growing_batch.py"
WRAPPER = "helpers/optimizers/rule_optimizer.py"
SCHEDULEFREE = "helpers/optimizers/schedulefree.py"
NR = "tests/test_noise_reduction.py"
REF = "tests/test_references.py"


def stacked(method: str) -> str:
    return f"{NR}::test_stacked_row_equals_the_model_run_alone[{method}-standard]"


POLYAK_COEF = "coef = torch.where(self.ema, 1 - self.keep, (1 / self.n_averaged).to(p.dtype))"

MUTATIONS = [
    # SVRG (Johnson & Zhang 2013)
    Mutation("svrg-correction-sign", SVRG,
             "return g - oracle.batch_gradient(self.anchor) + self.mu",
             "return g + oracle.batch_gradient(self.anchor) - self.mu",  # still unbiased: E g_B(w~) = mu
             (f"{NR}::test_svrg_with_momentum_and_decay_matches_a_hand_computed_run",
              f"{NR}::test_variance_is_far_below_sgd_near_the_optimum")),
    Mutation("svrg-snapshot-point-not-refreshed", SVRG, "self.anchor.copy_(p)", "self.anchor.copy_(self.anchor)",
             (f"{NR}::test_svrg_with_momentum_and_decay_matches_a_hand_computed_run",)),
    Mutation("svrg-sarah-snapshot-only-at-the-first-epoch", SVRG,
             "        if self.epoch_due():\n            self.snapshot(p, oracle)",
             "        if self.since is None:\n            self.snapshot(p, oracle)",
             (f"{NR}::test_variance_reduction_converges_linearly_at_a_constant_step",)),
    Mutation("svrg-sarah-snapshot-every-m-ignored", SVRG,
             "return bool(self.every) and self.since >= self.every", "return False",
             (f"{NR}::test_svrg_with_momentum_and_decay_matches_a_hand_computed_run",
              f"{NR}::test_sarah_with_momentum_and_decay_matches_a_hand_computed_run")),
    Mutation("svrg-sarah-momentum-as-dampening", SVRG,
             "d = self.buf.mul_(self.mu_col).add_(d)", "d = self.buf.mul_(1 - self.mu_col).add_(d)",
             (f"{NR}::test_svrg_with_momentum_and_decay_matches_a_hand_computed_run",
              f"{NR}::test_sarah_with_momentum_and_decay_matches_a_hand_computed_run")),
    Mutation("svrg-sarah-weight-decay-sign", SVRG,
             "d = v + self.wd * p if self.decay else v", "d = v - self.wd * p if self.decay else v",
             (f"{NR}::test_svrg_with_momentum_and_decay_matches_a_hand_computed_run",)),
    Mutation("svrg-sarah-first-models-lr-for-all", SVRG,
             "p.sub_(lr.to(p.dtype) * d)", "p.sub_(lr[:1].to(p.dtype) * d)", (stacked("svrg"),)),
    Mutation("svrg-sarah-first-models-momentum-for-all", SVRG,
             'self.mu_col, self.wd = self.column("momentum"), self.weight_decay',
             'self.mu_col, self.wd = self.column("momentum")[:1], self.weight_decay', (stacked("sarah"),)),
    Mutation("svrg-snapshot-masked-by-projection", SVRG, 'unmasked_state = ("snapshot", "mu")',
             "unmasked_state = ()",
             (f"{NR}::test_estimators_stay_unbiased_when_the_projection_masks_state",)),
    # SARAH (Nguyen et al. 2017)
    Mutation("sarah-recursion-masked-by-projection", SARAH, 'unmasked_state = ("v", "previous")',
             "unmasked_state = ()",
             (f"{NR}::test_estimators_stay_unbiased_when_the_projection_masks_state",)),
    Mutation("sarah-previous-point-not-updated", SARAH, "self.previous.copy_(p)",
             "self.previous.copy_(self.previous)",
             (f"{NR}::test_sarah_estimator_is_unbiased_after_a_restart_and_recursive_after",)),
    Mutation("sarah-recursion-drops-v", SARAH,
             "return g - oracle.batch_gradient(self.previous) + self.v",
             "return g - oracle.batch_gradient(self.previous)",
             (f"{NR}::test_sarah_with_momentum_and_decay_matches_a_hand_computed_run",)),
    Mutation("sarah-no-full-gradient-step", SARAH, "self.v.copy_(full_gradient)\n        self.fresh = True",
             "self.v.copy_(full_gradient)\n        self.fresh = False",
             (f"{NR}::test_sarah_with_momentum_and_decay_matches_a_hand_computed_run",)),
    Mutation("sarah-full-step-reports-no-loss", WRAPPER,
             "loss = torch.as_tensor(self._full_loss).detach().to(flat.device)",
             "loss = torch.zeros((), device=flat.device)",
             (f"{NR}::test_sarah_with_momentum_and_decay_matches_a_hand_computed_run",)),
    # SAGA (Defazio, Bach & Lacoste-Julien 2014)
    Mutation("saga-table-not-updated", SAGA, "self.table[rows, ids] = g",
             "self.table[rows, ids] = self.table[rows, ids]", (f"{NR}::test_saga_table_semantics",)),
    Mutation("saga-sum-not-updated", SAGA, "self.total.add_(diff * n_j)", "self.total.add_(diff * 0)",
             (f"{NR}::test_saga_table_semantics",)),
    Mutation("saga-mean-over-batches-not-samples", SAGA, "self.total / seen_size.to(p.dtype)",
             "self.total / self.seen.sum(1, keepdim=True).to(p.dtype)", (f"{NR}::test_saga_table_semantics",)),
    Mutation("saga-batch-size-weighting-dropped", SAGA,
             "scale = (self.seen.sum(1, keepdim=True).double() * n_j / seen_size).to(p.dtype)",
             "scale = torch.ones_like(seen_size).to(p.dtype)",  # same fixed point: only the step shows it
             (f"{NR}::test_saga_step_with_unequal_batches_by_hand",)),
    Mutation("saga-sum-masked-by-projection", SAGA, 'unmasked_state = ("table_sum",)', "unmasked_state = ()",
             (f"{NR}::test_saga_table_sum_stays_the_tables_sum_under_state_masking",)),
    Mutation("saga-first-models-batch-for-all", SAGA,
             "ids = torch.as_tensor(ids, device=self.device).reshape(-1)",
             "ids = torch.as_tensor(ids, device=self.device).reshape(-1)[:1].expand(self.k)",
             (stacked("saga"),)),
    # Polyak-Ruppert / EMA / SWA averages (Izmailov et al. 2018); torch.optim.swa_utils as oracle
    Mutation("averaging-polyak-weights-off-by-one", AVERAGING, POLYAK_COEF,
             POLYAK_COEF.replace("(1 / self.n_averaged)", "(1 / (self.n_averaged + 1))"),
             (f"{REF}::test_averages_match_torch_swa_utils",)),
    Mutation("averaging-ema-decay-swapped", AVERAGING, POLYAK_COEF,
             POLYAK_COEF.replace("1 - self.keep", "self.keep"), (f"{REF}::test_averages_match_torch_swa_utils",)),
    Mutation("averaging-swa-every-off-by-one", AVERAGING, "((self.eligible - 1) % self.every == 0)",
             "(self.eligible % self.every == 0)", (f"{REF}::test_averages_match_torch_swa_utils",)),
    Mutation("averaging-start-epoch-strict", AVERAGING, ">= self.start_epoch", "> self.start_epoch",
             (f"{REF}::test_averages_match_torch_swa_utils",)),
    Mutation("averaging-average-masked-by-projection", AVERAGING, 'unmasked_state = ("average",)',
             "unmasked_state = ()", (f"{REF}::test_averages_of_projected_iterates_match_torch_swa_utils",)),
    Mutation("averaging-evaluated-denser-than-trained", AVERAGING,
             "averaged = torch.where(p == 0, torch.zeros_like(p), self.average)", "averaged = self.average",
             (f"{REF}::test_averages_match_torch_swa_utils",)),
    Mutation("averaging-first-models-start-for-all", AVERAGING,
             'self.start_epoch = self.column("start_epoch", torch.float64)',
             'self.start_epoch = self.column("start_epoch", torch.float64)[:1]', (stacked("averaging"),)),
    # Lookahead (Zhang et al. 2019)
    Mutation("lookahead-alpha-swapped", LOOKAHEAD, "torch.lerp(self.slow, p, self.alpha)",
             "torch.lerp(self.slow, p, 1 - self.alpha)", (f"{NR}::test_lookahead_rule_follows_the_paper_by_hand",)),
    Mutation("lookahead-fast-weights-not-reset", LOOKAHEAD, "p.copy_(torch.where(sync, self.slow, p))",
             "p.copy_(p)", (f"{NR}::test_lookahead_rule_follows_the_paper_by_hand",)),
    Mutation("lookahead-k-off-by-one", LOOKAHEAD, "sync = torch.remainder(self.steps, self.k_col) == 0",
             "sync = torch.remainder(self.steps + 1, self.k_col) == 0",
             (f"{NR}::test_lookahead_rule_follows_the_paper_by_hand",)),
    Mutation("lookahead-wrapper-alpha-swapped", LOOKAHEAD, 'slow.lerp_(p, group["alpha"])',
             'slow.lerp_(p, 1 - group["alpha"])', (f"{REF}::test_lookahead_rules_match_lookahead_around_torch_optim",)),
    # Growing batch (dynamic sampling)
    Mutation("growing-batch-growth-ignored", GROWING, "batch_growth=1.5, rule=SGDRule",
             "batch_growth=1.0, rule=SGDRule", (f"{NR}::test_engine_counts_snapshots_and_growing_batches",)),
    # Schedule-free (Defazio et al. 2024): the authors' package as oracle
    Mutation("schedulefree-evaluated-at-y", SCHEDULEFREE, "        return self.x", "        return p",
             (f"{REF}::test_sgd_schedulefree_matches_the_authors_package",)),
    Mutation("schedulefree-adamw-no-bias-correction", SCHEDULEFREE, "return (1 - self.b2 ** (k + 1)).sqrt()",
             "return 1.0", (f"{REF}::test_adamw_schedulefree_matches_the_papers_form_in_the_package",)),
    Mutation("schedulefree-sgd-decay-sign", SCHEDULEFREE, "g = g + self.wd * p", "g = g - self.wd * p",
             (f"{REF}::test_sgd_schedulefree_matches_the_authors_package",)),
    Mutation("schedulefree-uniform-average-weights", SCHEDULEFREE, "weight = self.lr_max ** self.power",
             "weight = self.lr_max ** 0", (f"{REF}::test_sgd_schedulefree_matches_the_authors_package",)),
]
