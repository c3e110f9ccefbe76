"""The mutation table: each row plants one plausible bug and names the tests that must catch it.

A row: ``Mutation(name, file, original, replacement, tests)``. ``original`` must occur exactly
once in ``file`` (the runner refuses a stale row); ``tests`` are pytest node ids or files,
run in a scratch copy with the mutation applied: the mutation is *killed* when they fail.
This file is the ``curvature`` table (K-FAC, Shampoo, AdaHessian, Newton-CG). Another area
adds a file ``tools/mutants/<area>_mutations.py`` with its own ``MUTATIONS`` list of these
rows; ``run.py`` collects every such file (``--table <area>`` runs one). Keep names unique
(prefix them with the method); ``python tools/mutants/run.py --list`` shows all rows.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    original: str
    replacement: str
    tests: tuple[str, ...]


KFAC = "helpers/optimizers/kfac.py"
SHAMPOO = "helpers/optimizers/shampoo.py"
ADAHESSIAN = "helpers/optimizers/adahessian.py"
NEWTON_CG = "helpers/optimizers/newton_cg.py"
RULES = "tests/test_curvature_rules.py"
ORACLES = "tests/test_curvature_oracles.py"
CONVERGENCE = "tests/test_curvature_convergence.py"
SECOND_ORDER = "tests/test_second_order.py"

MUTATIONS = [
    # K-FAC (Martens & Grosse 2015; KFC factors for convolutions, Grosse & Martens 2016)
    Mutation("kfac-patch-transpose-dropped", KFAC,
             "patches = patches.transpose(1, 2).reshape(-1, patches.shape[1])",
             "patches = patches.reshape(-1, patches.shape[1])",
             (f"{RULES}::test_kfac_conv_factors_with_many_locations_follow_the_running_average",)),
    Mutation("kfac-output-gradient-transpose-dropped", KFAC,
             "ds = ds.transpose(1, -1).reshape(-1, ds.shape[1])",
             "ds = ds.reshape(-1, ds.shape[1])",
             (f"{RULES}::test_kfac_conv_factors_with_many_locations_follow_the_running_average",)),
    Mutation("kfac-activation-divided-by-batch-not-locations", KFAC,
             "return patches.T @ patches / patches.shape[0], ds.T @ ds / batch",
             "return patches.T @ patches / batch, ds.T @ ds / batch",
             (f"{RULES}::test_kfac_conv_factors_with_many_locations_follow_the_running_average",)),
    Mutation("kfac-output-factor-divided-by-locations", KFAC,
             "return patches.T @ patches / patches.shape[0], ds.T @ ds / batch",
             "return patches.T @ patches / patches.shape[0], ds.T @ ds / ds.shape[0]",
             (f"{RULES}::test_kfac_conv_factors_with_many_locations_follow_the_running_average",)),
    Mutation("kfac-activation-decay-swapped", KFAC,
             'state["A"].mul_(decay).add_(a_batch, alpha=1 - decay)',
             'state["A"].mul_(1 - decay).add_(a_batch, alpha=decay)',
             (f"{RULES}::test_kfac_conv_factors_with_many_locations_follow_the_running_average",)),
    Mutation("kfac-output-decay-swapped", KFAC,
             'state["G"].mul_(decay).add_(g_batch, alpha=1 - decay)',
             'state["G"].mul_(1 - decay).add_(g_batch, alpha=decay)',
             (f"{RULES}::test_kfac_conv_factors_with_many_locations_follow_the_running_average",)),
    Mutation("kfac-pi-inverted", KFAC,
             "pi = math.sqrt(ta / tg)", "pi = math.sqrt(tg / ta)",
             (f"{SECOND_ORDER}::test_kfac_update_is_the_damped_kronecker_inverse",)),
    Mutation("kfac-damping-without-pi", KFAC,
             'state["A_inv"] = _spd_inverse(a, pi * root)', 'state["A_inv"] = _spd_inverse(a, root)',
             (f"{SECOND_ORDER}::test_kfac_update_is_the_damped_kronecker_inverse",)),
    Mutation("kfac-kl-clip-lr-not-squared", KFAC,
             'scale = min(1.0, math.sqrt(group["kl_clip"] / (lr ** 2 * inner)))',
             'scale = min(1.0, math.sqrt(group["kl_clip"] / (lr * inner)))',
             (f"{RULES}::test_kfac_kl_clip_and_momentum_follow_ba_et_al",)),
    Mutation("kfac-kl-clip-scales-unpreconditioned-parameters", KFAC,
             "if scale != 1.0 and p in preconditioned:", "if scale != 1.0:",
             (f"{RULES}::test_kfac_kl_clip_and_momentum_follow_ba_et_al",)),
    Mutation("kfac-momentum-dampened", KFAC,
             'buf.mul_(group["momentum"]).add_(v)', 'buf.mul_(group["momentum"]).add_(v, alpha=1 - group["momentum"])',
             (f"{RULES}::test_kfac_kl_clip_and_momentum_follow_ba_et_al",)),
    Mutation("kfac-sampled-fisher-takes-the-likeliest-class", KFAC,
             "targets = torch.multinomial(torch.softmax(logits.detach().float(), dim=1), 1).squeeze(1)",
             "targets = logits.detach().argmax(dim=1)",
             (f"{SECOND_ORDER}::test_kfac_sampled_output_factor_estimates_the_true_fisher",)),
    # Shampoo (Gupta, Koren & Singer 2018; Adam grafting as in Anil et al. 2020)
    Mutation("shampoo-1d-exponent-as-matrix", SHAMPOO,
             "exponent = 2 if p.dim() <= 1 else 4", "exponent = 4",
             (f"{RULES}::test_shampoo_one_dimensional_parameter_uses_the_inverse_square_root",)),
    Mutation("shampoo-adam-graft-no-bias-correction", SHAMPOO,
             'v_hat = v / (1 - 0.999 ** state["step"])', "v_hat = v",
             (f"{RULES}::test_shampoo_adam_graft_uses_the_bias_corrected_second_moment",)),
    Mutation("shampoo-adam-graft-bias-correction-off-by-one", SHAMPOO,
             'v_hat = v / (1 - 0.999 ** state["step"])', 'v_hat = v / (1 - 0.999 ** (state["step"] + 1))',
             (f"{RULES}::test_shampoo_adam_graft_uses_the_bias_corrected_second_moment",)),
    # AdaHessian (Yao et al. 2021)
    Mutation("adahessian-weight-decay-sign", ADAHESSIAN,
             'p.mul_(1 - group["lr"] * group["weight_decay"])',
             'p.mul_(1 + group["lr"] * group["weight_decay"])',
             (f"{RULES}::test_adahessian_step_divides_by_the_hessian_diagonal_and_decays_decoupled",
              f"{RULES}::test_adahessian_weight_decay_alone_shrinks_toward_zero")),
    Mutation("adahessian-gradient-instead-of-diagonal", ADAHESSIAN,
             "d = self.spatial_average(diagonal_of[p].detach())",
             "d = self.spatial_average(p.grad.detach())",
             (f"{RULES}::test_adahessian_step_divides_by_the_hessian_diagonal_and_decays_decoupled",
              f"{CONVERGENCE}::test_second_order_method_reaches_the_tolerance")),
    Mutation("adahessian-no-second-bias-correction", ADAHESSIAN,
             'bias2 = 1 - beta2 ** state["step"]', "bias2 = 1.0",
             (f"{RULES}::test_adahessian_step_divides_by_the_hessian_diagonal_and_decays_decoupled",)),
    Mutation("adahessian-spatial-average-without-abs", ADAHESSIAN,
             "return diagonal.abs().mean(dim=(2, 3), keepdim=True).expand_as(diagonal)",
             "return diagonal.mean(dim=(2, 3), keepdim=True).expand_as(diagonal)",
             (f"{SECOND_ORDER}::test_adahessian_hutchinson_is_unbiased_for_a_quadratic_diagonal",)),
    # Newton-CG (Martens 2010): Levenberg-Marquardt damping, CG warm start, negative curvature
    Mutation("newton-cg-no-damping-decrease", NEWTON_CG,
             "damping = damping * (2.0 / 3.0)", "damping = damping * 1.0",
             (f"{RULES}::test_newton_cg_decreases_damping_when_the_model_predicts_the_decrease",)),
    Mutation("newton-cg-decrease-threshold", NEWTON_CG,
             "elif rho > 0.75:", "elif rho > 0.5:",
             (f"{RULES}::test_newton_cg_keeps_damping_between_the_thresholds",)),
    Mutation("newton-cg-no-damping-increase", NEWTON_CG,
             "damping = damping * 1.5", "damping = damping * 1.0",
             (f"{SECOND_ORDER}::test_newton_cg_damping_adapts_and_rejects_a_step_that_raises_the_loss",)),
    Mutation("newton-cg-warm-start-ignored", NEWTON_CG,
             'x0 = group["cg_warm_start"] * previous if previous is not None and group["cg_warm_start"] else None',
             "x0 = None",
             (f"{RULES}::test_newton_cg_warm_start_begins_from_the_scaled_previous_direction",)),
    Mutation("newton-cg-warm-start-residual-ignores-x0", NEWTON_CG,
             "r = b - ax", "r = b.clone()",
             (f"{RULES}::test_newton_cg_warm_started_cg_solves_the_damped_system",)),
    Mutation("newton-cg-rejected-step-warm-starts-from-zero", NEWTON_CG,
             'state.pop("direction")', 'state["direction"] = torch.zeros_like(d)',
             (f"{RULES}::test_newton_cg_starts_cold_after_a_rejected_step",)),
    Mutation("newton-cg-negative-curvature-no-fallback", NEWTON_CG,
             "                    x, ax = direction, a_dir\n", "                    pass\n",
             (f"{RULES}::test_newton_cg_negative_curvature_on_the_first_direction_takes_steepest_descent",)),
    Mutation("newton-cg-negative-curvature-drops-progress", NEWTON_CG,
             "if i == 0 and x0 is None:", "if x0 is None:",
             (f"{RULES}::test_newton_cg_negative_curvature_later_keeps_the_last_iterate",)),
]
