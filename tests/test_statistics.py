"""helpers.evidence.statistics against cases computed by hand (the numbers are derived in the comments)."""
import math

import numpy as np
import pandas as pd
import pytest

from helpers.evidence import statistics as S


def test_paired_t_interval_matches_the_hand_computation():
    # differences 1, 2, 3: mean 2, sample sd 1, se 1/sqrt(3). For 2 degrees of freedom the t CDF is
    # F(t) = 1/2 + t / (2 sqrt(t^2 + 2)), so t_0.975 solves t / sqrt(t^2 + 2) = 0.95:
    # t^2 = 0.9025 * 2 / 0.0975 = 18.5128..., t = 4.302653; half width 4.302653 / sqrt(3) = 2.484138.
    # t statistic 2 sqrt(3) = 3.464102; p = 2 (1 - F) = 1 - 3.464102 / sqrt(14) = 0.074180.
    diff = S.paired_difference([3.0, 4.0, 6.0], [2.0, 2.0, 3.0])
    assert diff.n == 3 and diff.mean == pytest.approx(2.0)
    assert diff.low == pytest.approx(2 - 2.484138, abs=1e-6)  # a z interval (1.96) or sd with ddof=0 fails
    assert diff.high == pytest.approx(2 + 2.484138, abs=1e-6)
    assert diff.pvalue == pytest.approx(1 - 2 * math.sqrt(3) / math.sqrt(14), abs=1e-9)  # unpaired Welch fails


def test_paired_difference_edge_cases():
    one = S.paired_difference([90.0], [89.0])
    assert one.mean == 1.0 and math.isnan(one.low) and math.isnan(one.pvalue) and one.n == 1
    same = S.paired_difference([1.0, 2.0], [1.0, 2.0])
    assert (same.low, same.high, same.pvalue) == (0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="equal length"):
        S.paired_difference([1.0, 2.0], [1.0])


def test_exact_mcnemar_uses_only_the_discordant_items():
    # 8 items only a gets right, 2 only b, 90 both right, 5 both wrong: under H0 the 10 discordant
    # items split Binomial(10, 1/2); two-sided p = 2 P(X <= 2) = 2 (1 + 10 + 45) / 1024 = 0.109375.
    a = np.array([True] * 8 + [False] * 2 + [True] * 90 + [False] * 5)
    b = np.array([False] * 8 + [True] * 2 + [True] * 90 + [False] * 5)
    only_a, only_b, p = S.mcnemar_exact(a, b)
    assert (only_a, only_b) == (8, 2)
    assert p == pytest.approx(112 / 1024)  # a one-sided test gives 56/1024
    assert S.mcnemar_exact(a, a)[2] == 1.0


def test_holm_adjustment_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; running max
    # 0.02, 0.03, 0.06, 0.06. Bonferroni would give 0.04, 0.16, 0.12, 0.02; no running max 0.04.
    adjusted = S.holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    # NaN entries are not comparisons: m = 2 here, so 0.02 -> 0.04, 0.5 -> 0.5
    np.testing.assert_allclose(S.holm([0.5, np.nan, 0.02]), [0.5, np.nan, 0.04])
    assert S.holm([0.6, 0.7]).max() <= 1.0


def _final(rows):
    """Final-run rows: (method, seed, test_acc, test_loss[, status])."""
    return pd.DataFrame([{"run_id": f"{m}-{seed}", "epoch": 10.0, "method": m, "optimizer": m.split()[0],
                          "sparsity_strategy": "projection", "seed": seed, "test_acc": acc,
                          "test_loss": loss, "status": status[0] if status else "finished",
                          "scenario": "standard", "config_key": "k"}
                         for m, seed, acc, loss, *status in rows])


def test_seed_matched_pairs_by_seed_and_leaves_out_unfinished_seeds():
    runs = _final([("best", 1, 90.0, 0.30), ("best", 2, 91.0, 0.29), ("best", 3, 92.0, 0.28), ("best", 4, 93.0, 0.27),
                   ("other", 0, 80.0, 0.50), ("other", 1, 89.0, 0.31), ("other", 2, float("nan"), float("nan"),
                                                                          "diverged"),
                   ("other", 3, 90.0, 0.30)])
    table = S.seed_matched(runs, ("best", "projection")).set_index("method")
    # pairs by seed: seed 1 -> 89 - 90 = -1, seed 3 -> 90 - 92 = -2; position pairing would differ
    assert table.loc["other", "n_pairs"] == 2
    assert table.loc["other", "difference"] == pytest.approx(-1.5)
    assert table.loc["other", "unpaired"] == 3  # seeds 0, 2 (diverged), 4 of the union {0..4}
    # two pairs: sd of (-1, -2) is 1/sqrt(2), se 1/2, t_0.975(1 df) = tan(0.475 pi) = 12.7062
    assert table.loc["other", "ci_high"] == pytest.approx(-1.5 + 12.7062047 / 2, abs=1e-6)


def test_verdicts_use_holm_across_methods_and_call_single_seeds_untested():
    # differences to the best per seed: a: -1.0, -1.1, -0.9 (sd 0.1, p = 0.00323); b: -1, +1, -0.5
    # (not significant); c: one paired seed.
    runs = _final([("best", s, 90.0, 0.3) for s in range(3)] +
                  [("a", 0, 89.0, 0.3), ("a", 1, 88.9, 0.3), ("a", 2, 89.1, 0.3),
                   ("b", 0, 89.0, 0.3), ("b", 1, 91.0, 0.3), ("b", 2, 89.5, 0.3), ("c", 0, 95.0, 0.3)])
    table = S.separability(runs, ("best", "projection")).set_index("method")
    # a: t = -1 / (0.1 / sqrt 3) = -17.3205; F(t) for 2 df: p = 1 - 17.3205 / sqrt(300 + 2) = 0.003316
    assert table.loc["a", "p"] == pytest.approx(1 - 17.320508 / math.sqrt(302), abs=1e-6)
    assert table.loc["a", "p_holm"] == pytest.approx(2 * table.loc["a", "p"])  # m = 2 tested methods
    assert table.loc["a", "verdict"] == "separable"
    assert table.loc["b", "verdict"] == "not separable"
    assert table.loc["c", "verdict"] == "untested" and math.isnan(table.loc["c", "p_holm"])
    assert table.loc["best", "verdict"] == "best"
    assert S.not_separable(runs, ("best", "projection")) == [("best", "projection"), ("b", "projection")]


def test_holdout_best_is_chosen_on_validation_records_not_on_test():
    records = pd.DataFrame([
        # adam leads the hold-out with its better trial; sgd leads on test but is not asked
        dict(run_id="t1", optimizer="adam", eval_split="val", scenario="standard", status="finished",
             tag="tune", epoch=10.0, val_acc=91.0, val_loss=0.30, test_acc=np.nan),
        dict(run_id="t2", optimizer="adam", eval_split="val", scenario="standard", status="finished",
             tag="tune", epoch=10.0, val_acc=80.0, val_loss=0.25, test_acc=np.nan),
        dict(run_id="t3", optimizer="sgd", eval_split="val", scenario="standard", status="finished",
             tag="tune", epoch=10.0, val_acc=90.5, val_loss=0.28, test_acc=np.nan),
        dict(run_id="t3", optimizer="sgd", eval_split="val", scenario="standard", status="finished",
             tag="tune", epoch=5.0, val_acc=95.0, val_loss=0.28, test_acc=np.nan),  # not final
        dict(run_id="f1", optimizer="sgd", eval_split="test", scenario="standard", status="finished",
             tag="", epoch=10.0, val_acc=np.nan, val_loss=np.nan, test_acc=99.0),
        dict(run_id="t4", optimizer="nadam", eval_split="val", scenario="l2", status="finished",
             tag="tune", epoch=10.0, val_acc=99.0, val_loss=0.1, test_acc=np.nan)])
    assert S.holdout_best(records, "standard") == "adam"
    tie = pd.concat([records, pd.DataFrame([dict(
        run_id="t5", optimizer="nadam", eval_split="val", scenario="standard", status="finished",
        tag="tune", epoch=10.0, val_acc=91.0, val_loss=0.29, test_acc=np.nan)])])
    assert S.holdout_best(tie, "standard") == "nadam"  # the same accuracy, the lower loss
    assert S.holdout_best(records, "sparse60") is None


def test_per_image_tests_pair_runs_by_seed_and_adjust_over_all_rows():
    labels = np.array([0, 1, 2, 3] * 5)
    preds = {"best-0": labels.copy(), "best-1": labels.copy(),
             "x-0": np.where(np.arange(20) < 6, 9, labels),  # 6 wrong where best is right
             "x-1": labels.copy()}
    runs = _final([("best", 0, 1, 1), ("best", 1, 1, 1), ("x", 0, 1, 1), ("x", 1, 1, 1), ("x", 2, 1, 1)])

    def load(run_id):
        if run_id not in preds:
            return None
        return {"pred": preds[run_id].astype(np.uint8), "loss": np.where(preds[run_id] == labels, 0.1, 2.0)}

    table = S.per_image_tests(runs, ("best", "projection"), labels, load).set_index("seed")
    assert list(table.index) == [0, 1]  # seed 2 has no partner
    assert (table.loc[0, "right_only_method"], table.loc[0, "right_only_best"]) == (0, 6)
    assert table.loc[0, "p_mcnemar"] == pytest.approx(2 / 64)  # 2 * (1/2)^6
    assert table.loc[0, "p_mcnemar_holm"] == pytest.approx(4 / 64)  # m = 2 comparisons: smallest p times 2
    assert table.loc[1, "p_mcnemar"] == 1.0
    assert table.loc[0, "loss_difference"] == pytest.approx(6 * 1.9 / 20)


def test_per_image_tests_separate_only_when_every_seed_agrees_in_direction():
    # two paired seeds whose seed-level differences (-0.1, -0.3) do not reject: separable only if the
    # Holm-adjusted McNemar tests reject on both seeds in one direction
    runs = _final([("best", 0, 90.0, 0.3), ("best", 1, 90.0, 0.3), ("x", 0, 89.9, 0.3), ("x", 1, 89.7, 0.3),
                   ("y", 0, 89.9, 0.3), ("y", 1, 89.7, 0.3)])
    per_image = pd.DataFrame({"method": ["x", "x", "y", "y"], "sparsity_strategy": "projection",
                              "seed": [0, 1, 0, 1], "right_only_method": [10, 10, 10, 60],
                              "right_only_best": [60, 60, 60, 10], "p_mcnemar_holm": [1e-6, 1e-6, 1e-6, 1e-6],
                              "loss_difference": [0.1, 0.1, 0.1, 0.1], "p_loss_holm": [0.5, 0.5, 0.5, 0.5]})
    table = S.separability(runs, ("best", "projection"), per_image=per_image).set_index("method")
    assert table.loc["x", "p_holm"] > 0.05
    assert table.loc["x", "verdict"] == "separable"  # both seeds: x significantly worse
    assert table.loc["y", "verdict"] == "not separable"  # the seeds disagree in direction
    loss = S.separability(runs, ("best", "projection"), "test_loss", per_image=per_image).set_index("method")
    assert loss.loc["x", "verdict"] == "not separable"  # equal losses, per-image loss tests do not reject


def test_holdout_best_ranks_each_sparsity_strategy_apart():
    records = pd.DataFrame([dict(run_id=f"t{i}", optimizer=o, sparsity_strategy=st, eval_split="val",
                                 scenario="sparse60", status="finished", tag="tune", epoch=10.0, val_acc=acc)
                            for i, (o, st, acc) in enumerate([("shampoo", "projection", 87.0),
                                                              ("shampoo", "gradual", 90.0),
                                                              ("adam", "projection", 89.0)])])
    assert S.holdout_best(records, "sparse60", with_strategy=True) == ("shampoo", "gradual")
    runs = _final([("shampoo", 0, 88.0, 0.3), ("shampoo", 1, 88.0, 0.3), ("shampoo", 0, 90.0, 0.3)])
    runs.loc[2, ["sparsity_strategy", "run_id"]] = ["gradual", "g0"]
    assert S.reference_of(runs, "shampoo", "gradual") == ("shampoo", "gradual")
    assert S.reference_of(runs, "shampoo") == ("shampoo", "projection")  # most finished runs


def test_scenario_comparison_reads_stored_predictions_and_separates_by_images(tmp_path):
    from helpers.study.records import PREDICTIONS, atomic_write_npz
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 400).astype(np.uint8)
    runs = _final([("adam", s, 90.0 + 0.1 * s, 0.30) for s in range(3)] +
                   [("sgd", s, 89.9 - 0.2 * s, 0.31) for s in range(3)])  # seed-level: not separable
    for _, run in runs.iterrows():
        pred = labels.copy()
        wrong = 10 if run["method"] == "adam" else 60  # sgd loses 50 images on every seed
        pred[:wrong] = (labels[:wrong] + 1) % 10
        atomic_write_npz(tmp_path / run["run_id"] / PREDICTIONS,
                         {"pred": pred, "loss": np.where(pred == labels, 0.1, 2.0).astype(np.float32)})
    records = pd.DataFrame([dict(run_id=f"t-{m}", optimizer=m, eval_split="val", scenario="standard",
                                 status="finished", tag="tune", epoch=10.0, val_acc=v)
                            for m, v in (("adam", 90.0), ("sgd", 89.0))])
    out = S.scenario_comparison(runs, records, "standard", labels=labels, root=tmp_path)
    assert out["reference"] == ("adam", "projection")
    assert len(out["per_image"]) == 3 and (out["per_image"]["right_only_best"] == 50).all()
    assert out["accuracy"].set_index("method").loc["sgd", "verdict"] == "separable"
    assert out["group_accuracy"] == [("adam", "projection")]
