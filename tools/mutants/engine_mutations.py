"""Mutation rows for the stacked update rules, the schedule-free evaluation point, state zeroing
under projection and the engine's budget, schedule and per-model bookkeeping.

Same row format as ``mutations.MUTATIONS``; run them alone with
``python tools/mutants/run.py --only $(python tools/mutants/engine_mutations.py)`` once the
table includes them.
"""
from __future__ import annotations

from mutations import Mutation

RULES = "helpers/optimizers/rules.py"
SF = "helpers/optimizers/schedulefree.py"
STACKED = "helpers/optimizers/stacked.py"
SPARSE_ROWS = "helpers/engine/stacked_sparsity.py"
STEPPERS = "helpers/engine/steppers.py"
TRAIN = "helpers/engine/train.py"
MODEL = "helpers/engine/stacked_model.py"
ONE_CPU = "helpers/engine/one_model_cpu.py"
CONV1_C = "helpers/engine/native/conv1_pool_relu.c"
CONV2_C = "helpers/engine/native/conv2_pool_relu.c"
POOL_H = "helpers/engine/native/pool_relu.h"
GRAPHED = "helpers/engine/graphed_step.py"
UNFOLD = "helpers/engine/unfolded_convs.py"
TRITON = "helpers/engine/triton_convs.py"
LOOKAHEAD = "helpers/optimizers/lookahead.py"
T_RULES = "tests/test_rules.py"
T_EQ = "tests/test_engine_equivalence.py"
T_TRAIN = "tests/test_train.py"
T_BATCHED = "tests/test_batched.py"
T_ONE_CPU = "tests/test_one_model_cpu.py"
T_NATIVE = "tests/test_native_kernels.py"
T_GRAPH = "tests/test_graphed_step.py"
T_UNFOLD = "tests/test_unfolded_convs.py"
T_TRITON = "tests/test_triton_convs.py::test_the_kernel_checks_pass_under_the_interpreter"


def torch_ref(rule: str) -> str:
    return f"{T_RULES}::test_rule_matches_torch_optim[{rule}]"


SF_HAND = f"{T_RULES}::test_schedulefree_rule_matches_a_hand_computed_step"

MUTATIONS = [
    # torch.optim.SGD (heavy ball, Nesterov, coupled L2)
    Mutation("engine-sgd-nesterov-dropped", RULES,
             "g = torch.where(self.nesterov, g + self.mu * self.buf, self.buf)", "g = self.buf",
             (torch_ref("SGDRule"),)),
    Mutation("engine-sgd-decay-sign", RULES,
             "            g = g + self.wd * p\n        if self.buf is not None:",
             "            g = g - self.wd * p\n        if self.buf is not None:", (torch_ref("SGDRule"),)),
    Mutation("engine-sgd-momentum-dampened", RULES, "self.buf.mul_(self.mu).add_(g)",
             "self.buf.mul_(self.mu).add_(g * (1 - self.mu))", (torch_ref("SGDRule"),)),
    # Adam, AdamW, NAdam, RAdam
    Mutation("engine-adam-first-moment-beta-swapped", RULES, "self.m.lerp_(g, (1 - self.b1).to(p.dtype))",
             "self.m.lerp_(g, self.b1.to(p.dtype))", (torch_ref("AdamRule"),)),
    Mutation("engine-adam-second-moment-undamped", RULES,
             "addcmul_(g, g * (1 - self.b2).to(p.dtype))", "addcmul_(g, g)", (torch_ref("AdamRule"),)),
    Mutation("engine-adam-no-bias-correction1", RULES, "p.sub_((lr / bc1).to(p.dtype) * self.m / denom)",
             "p.sub_(lr.to(p.dtype) * self.m / denom)", (torch_ref("AdamRule"),)),
    Mutation("engine-adam-no-bias-correction2", RULES,
             "denom = self.v.sqrt() / bc2.sqrt().to(p.dtype) + self.eps", "denom = self.v.sqrt() + self.eps",
             (torch_ref("AdamRule"),)),
    Mutation("engine-adam-coupled-decay-dropped", RULES,
             "                g = g + self.wd * p\n        self.m.lerp_", "                g = g\n        self.m.lerp_",
             (torch_ref("AdamRule"),)),
    Mutation("engine-adamw-decay-not-times-lr", RULES, "p.mul_(1 - (lr * self.wd.double()).to(p.dtype))",
             "p.mul_(1 - self.wd)", (torch_ref("AdamWRule"),)),
    Mutation("engine-nadam-mu-next-at-t", RULES, "0.96 ** ((t + 1) * self.psi))", "0.96 ** (t * self.psi))",
             (torch_ref("NAdamRule"),)),
    Mutation("engine-nadam-mu-product-frozen", RULES, "self.mu_product *= mu", "self.mu_product *= 1",
             (torch_ref("NAdamRule"),)),
    Mutation("engine-radam-threshold", RULES, "on = rho > 5", "on = rho > 4", (torch_ref("RAdamRule"),)),
    Mutation("engine-radam-rectifier", RULES, "rect = ((safe - 4) * (safe - 2) * rho_inf",
             "rect = ((safe - 4) * (safe - 1) * rho_inf", (torch_ref("RAdamRule"),)),
    # schedule-free (Defazio et al. 2024)
    Mutation("engine-schedulefree-evaluated-at-y", SF, "        return self.x", "        return p",
             (SF_HAND,)),
    Mutation("engine-schedulefree-warmup-off-by-one", SF, "(k + 1) / self.warmup.clamp(min=1)",
             "k / self.warmup.clamp(min=1)", (SF_HAND,)),
    Mutation("engine-schedulefree-y-swapped", SF, "p.copy_(torch.lerp(self.z, self.x, self.beta))",
             "p.copy_(torch.lerp(self.x, self.z, self.beta))", (SF_HAND,)),
    Mutation("engine-schedulefree-adamw-decay-sign", SF, "self.z.sub_(gamma * self.wd * p)",
             "self.z.add_(gamma * self.wd * p)", (SF_HAND,)),
    Mutation("engine-schedulefree-wrapper-state-copies", STACKED,
             "self.state[p][name] = t[0, offset:offset + p.numel()].view_as(p)",
             "self.state[p][name] = t[0, offset:offset + p.numel()].view_as(p).clone()",
             (f"{T_RULES}::test_wrapper_is_the_rule_with_one_row",)),
    Mutation("engine-reset-keeps-state", STACKED, "            t[i].zero_()", "            pass",
             (f"{T_RULES}::test_reset_restores_a_models_state_and_counters",)),
    # sparse scenarios on stacked rows
    Mutation("engine-projection-state-not-zeroed", SPARSE_ROWS, "            for t in [p, *state]:",
             "            for t in [p]:", (f"{T_EQ}::test_state_is_zeroed_where_the_projection_prunes",)),
    Mutation("engine-thin-rows-unstructured", SPARSE_ROWS, "    if not structured:\n        return topk_rows(block, k)",
             "    if True:\n        return topk_rows(block, k)",
             (f"{T_EQ}::test_state_is_zeroed_where_the_projection_prunes",)),
    # the loop: per-model hyperparameters, evaluation rows, budget, schedule
    Mutation("engine-first-models-rate-for-all", STEPPERS, "return self.base_lr * self.factor_now * self.alive",
             "return self.base_lr[:1] * self.factor_now * self.alive",
             (f"{T_EQ}::test_model_k_of_four_equals_the_model_alone[adam-l2-projection]",)),
    Mutation("engine-evaluation-rows-swapped", STEPPERS, "w = self.evaluated_weights()[rows]",
             "w = self.evaluated_weights()[rows].flip(0)", (T_BATCHED,)),
    Mutation("engine-schedule-not-over-budget", TRAIN,
             "t = step / total_steps if budget is None else max(step / total_steps, spent / budget)",
             "t = step / total_steps", (f"{T_TRAIN}::test_the_decay_ends_when_the_budget_is_spent",)),
    Mutation("engine-budget-precheck-dropped", TRAIN,
             "if budget is not None and spent + stepper.step_cost(index.shape[1], n) > budget:",
             "if False:", (f"{T_TRAIN}::test_a_step_that_cannot_finish_is_not_started",)),
    Mutation("engine-forward-fc2-relu-dropped", MODEL,
             'h = torch.baddbmm(p["fc2.bias"].unsqueeze(1), h, p["fc2.weight"].transpose(1, 2)).relu()',
             'h = torch.baddbmm(p["fc2.bias"].unsqueeze(1), h, p["fc2.weight"].transpose(1, 2))',
             (f"{T_BATCHED}::test_forward_is_the_vmapped_model",)),
    # the graphed step (captured once, replayed; CUDA graphs, checked on a CPU by tests/cpu_graph.py)
    Mutation("engine-graph-rate-frozen-at-capture", STEPPERS, "return self.base_lr * self.factor_now * self.alive",
             "return self.base_lr * self.factor * self.alive",
             (f"{T_GRAPH}::test_replayed_steps_equal_eager_steps_bit_for_bit[adam-standard-projection]",)),
    Mutation("engine-graph-inputs-not-copied", GRAPHED, "            s.copy_(t)", "            pass",
             (f"{T_GRAPH}::test_replayed_steps_equal_eager_steps_bit_for_bit[heavy_ball-l2-projection]",)),
    Mutation("engine-graph-warm-up-skipped", GRAPHED, "if self.calls[key] <= self.warmup:", "if False:",
             (f"{T_GRAPH}::test_graphed_step_warms_up_then_captures_once_per_key_and_copies_the_inputs",)),
    Mutation("engine-graph-lookahead-declared-capturable", LOOKAHEAD,
             "    capturable = False  # the synchronisation", "    capturable = True  # the synchronisation",
             (f"{T_GRAPH}::test_every_rule_the_engine_trains_is_checked_or_declared_not_capturable",)),
    # the unfolded conv blocks (the GPU alternative to grouped convolutions)
    Mutation("engine-unfold-kernel-transposed", UNFOLD, "h.unfold(2, 5, 1).unfold(3, 5, 1)",
             "h.unfold(3, 5, 1).unfold(2, 5, 1)",
             (f"{T_UNFOLD}::test_block_is_max_pool_of_the_grouped_convolution_bit_for_bit_ties_included",)),
    Mutation("engine-unfold-fc1-input-order", UNFOLD, "return h.permute(0, 1, 4, 2, 3).reshape(k, h.shape[1], 256)",
             "return h.reshape(k, h.shape[1], 256)",
             (f"{T_UNFOLD}::test_model_features_and_gradients_equal_the_grouped_path_in_float64",)),
    Mutation("engine-unfold-relu-dropped", UNFOLD, "pooled = F.max_pool2d(nchw, 2).relu()",
             "pooled = F.max_pool2d(nchw, 2)",
             (f"{T_UNFOLD}::test_block_is_max_pool_of_the_grouped_convolution_bit_for_bit_ties_included",)),
    # the Triton conv1 block (run under Triton's interpreter on a CPU)
    Mutation("engine-triton-pool-ties-to-a-later-maximum", TRITON, "take = (s10 > best) | (s10 != s10)",
             "take = (s10 >= best) | (s10 != s10)", (T_TRITON,)),
    Mutation("engine-triton-pool-drops-nan", TRITON, "take = (s11 > best) | (s11 != s11)", "take = s11 > best",
             (T_TRITON,)),
    Mutation("engine-triton-relu-mask-dropped-in-backward", TRITON, "return tl.where(out <= 0, 0.0, g)", "return g",
             (T_TRITON,)),
    Mutation("engine-triton-conv2-input-gradient-kernel-flipped", TRITON, "r, c = row - i, column - j",
             "r, c = row - j, column - i", (T_TRITON,)),
    Mutation("engine-triton-conv2-winner-column-off", TRITON, "column = (position % 4)[:, None] * 2 + won % 2",
             "column = (position % 4)[:, None] * 2", (T_TRITON,)),
    Mutation("engine-triton-conv2-output-order", TRITON,
             "where = (k * (pairs // 16) + image)[:, None] * 256 + out[None, :] * 16 + position[:, None]\n    tl.store",
             "where = (k * (pairs // 16) + image)[:, None] * 256 + out[None, :] + position[:, None] * 16\n    tl.store",
             (T_TRITON,)),
    Mutation("engine-triton-backward-window-transposed", TRITON, "+ (won // 2) * 28 + won % 2",
             "+ (won % 2) * 28 + won // 2", (T_TRITON,)),
    # one model on a CPU: conv1 + pooling by phases, conv2's split backward
    Mutation("engine-k1-pool-every-tied-maximum-gets-the-gradient", ONE_CPU, "here, g = g - rest, rest",
             "here = g - rest",
             (f"{T_ONE_CPU}::test_conv1_pool_relu_is_max_pool_of_the_convolution_ties_included",)),
    Mutation("engine-k1-relu-mask-dropped", ONE_CPU, "biased.view(6, n // PHASE, SIDE, SIDE)[crop], 0,",
             "biased.view(6, n // PHASE, SIDE, SIDE)[crop], -1e300,",
             (f"{T_ONE_CPU}::test_conv1_pool_relu_is_max_pool_of_the_convolution_ties_included",)),
    Mutation("engine-k1-window-order-transposed", ONE_CPU, "for i in range(5)] for pi, pj in WINDOW]",
             "for i in range(5)] for pj, pi in WINDOW]",
             (f"{T_ONE_CPU}::test_conv1_pool_relu_is_max_pool_of_the_convolution_ties_included",)),
    Mutation("engine-k1-kernel-row-shifted", ONE_CPU, "length + SIDE * ((pi + i) // 2))",
             "length + SIDE * ((pi + i + 1) // 2))",
             (f"{T_ONE_CPU}::test_one_model_on_a_cpu_gets_the_grouped_path_s_loss_and_gradient",)),
    Mutation("engine-k1-conv2-input-gradient-not-flipped", ONE_CPU,
             "dh = F.conv_transpose2d(grad.contiguous(), w)", "dh = F.conv_transpose2d(grad.contiguous(), w.flip(-1))",
             (f"{T_ONE_CPU}::test_conv2_gradients_are_the_convolution_s",)),
    # the compiled kernels of the two conv blocks
    Mutation("engine-native-pool-ties-to-the-last-maximum", POOL_H, "_mm512_cmp_ps_mask(v[p], m, _CMP_GT_OQ)",
             "_mm512_cmp_ps_mask(v[p], m, _CMP_GE_OQ)",
             (f"{T_NATIVE}::test_kernel_is_max_pool_of_the_convolution_bit_for_bit_ties_included",
              f"{T_NATIVE}::test_conv2_kernel_is_max_pool_of_the_convolution_bit_for_bit_ties_included")),
    Mutation("engine-native-pool-relu-drops-nan", POOL_H, "_CMP_GT_OQ) | _mm512_cmp_ps_mask(m, m, _CMP_UNORD_Q);",
             "_CMP_GT_OQ);", (f"{T_NATIVE}::test_a_nan_input_gives_nan_outputs_where_the_grouped_path_does",)),
    Mutation("engine-native-conv1-bias-missing-on-16-columns", CONV1_C,
             "lo[r][c] = _mm512_set1_ps(bias[c]);", "lo[r][c] = _mm512_setzero_ps();",
             (f"{T_NATIVE}::test_kernel_is_max_pool_of_the_convolution_bit_for_bit_ties_included",)),
    Mutation("engine-native-conv1-relu-mask-dropped", CONV1_C, "_mm512_cmp_ps_mask(o, zero, _CMP_GT_OQ), g)",
             "_mm512_cmp_ps_mask(o, o, _CMP_EQ_OQ), g)",
             (f"{T_NATIVE}::test_kernel_is_max_pool_of_the_convolution_bit_for_bit_ties_included",)),
    Mutation("engine-native-conv2-window-position-transposed", CONV2_C,
             "int oy = 2 * py + (q[o] >> 1), ox = 2 * px + (q[o] & 1);",
             "int oy = 2 * py + (q[o] & 1), ox = 2 * px + (q[o] >> 1);",
             (f"{T_NATIVE}::test_conv2_kernel_is_max_pool_of_the_convolution_bit_for_bit_ties_included",)),
    Mutation("engine-native-conv2-input-gradient-dropped", CONV2_C,
             "axpy40(dxl + at, g[o], w8 + (o * 5 + i) * 40);", "(void)w8;",
             (f"{T_NATIVE}::test_conv2_kernel_is_max_pool_of_the_convolution_bit_for_bit_ties_included",)),
    Mutation("engine-native-conv2-relu-mask-dropped", CONV2_C,
             "gv = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(ov, zero, _CMP_GT_OQ), gv);", "(void)ov;",
             (f"{T_NATIVE}::test_conv2_kernel_is_max_pool_of_the_convolution_bit_for_bit_ties_included",)),
]

if __name__ == "__main__":
    print(" ".join(m.name for m in MUTATIONS))
