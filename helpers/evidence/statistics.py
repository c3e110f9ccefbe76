"""Is a method separable from the indicated best? Seed-matched differences with t intervals,
per-seed exact McNemar tests on the test images, Holm's adjustment, and the group of methods
not separable from the best.

Rules (stated once, quoted by the report through :data:`RULES`):

- The indicated best of a scenario is chosen on the hold-out only (tuning records,
  ``eval_split="val"``): the method whose best tuning trial has the highest final validation
  accuracy (ties: the lower validation loss, as the planner ranks). The test set only measures it.
- Seed-matched difference: for each other method, the final test metric minus the best's on
  the seeds both have *finished*; a seed that only one of the two has finished (unpaired, or
  diverged/failed on either side) is left out of the pair and counted in ``unpaired``.
  The mean difference gets a two-sided 95% t interval over the paired seeds
  (``scipy.stats.ttest_rel``); its p-values are Holm-adjusted across the methods compared.
- Per seed, the two runs' predictions on the 10,000 test images give an exact McNemar test
  (``scipy.stats.binomtest`` on the discordant pairs, p = 1/2 under the null), and a paired t
  test on the per-image losses; both Holm-adjusted across every (method, seed) comparison
  of the scenario.
- A method is *separable* from the best on a metric when the Holm-adjusted seed-matched test
  rejects at ``alpha`` (0.05), or when the Holm-adjusted per-image tests reject on every paired
  seed, all in the same direction (each seed's model differs on the test images, consistently);
  otherwise *not separable*; with fewer than 2 paired seeds it is *untested*. Per-image tests
  alone measure test-set noise for given models, not the seed-to-seed noise a method comparison
  is about, hence "every seed, one direction".
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05
CONFIDENCE = 0.95
KEYS = ("method", "sparsity_strategy")
RULES = {
    "best": "the best method is chosen on the hold-out (validation accuracy of its best tuning trial); "
            "the test set only measures it",
    "pairing": "differences are seed-matched over the seeds both methods finished; other seeds are "
               "left out of the pair and counted",
    "interval": "95% t interval over the paired seeds; p-values Holm-adjusted across the methods compared",
    "per_image": "per seed, exact McNemar test on the 10,000 test images (binomial test on the discordant "
                 "pairs) and a paired t test on the per-image losses, Holm-adjusted across all comparisons",
    "group": "separable: the Holm-adjusted seed-matched test rejects at 5%, or the per-image tests reject "
             "on every paired seed in one direction; untested: fewer than 2 paired seeds; "
             "otherwise not separable",
}


@dataclass(frozen=True)
class PairedDifference:
    """mean(a - b) over paired values, its t interval and two-sided p-value (H0: mean 0)."""
    mean: float
    low: float
    high: float
    pvalue: float
    n: int


def paired_difference(a, b, confidence: float = CONFIDENCE) -> PairedDifference:
    """Paired t interval of ``a - b`` (arrays aligned position by position, e.g. by seed).
    One pair gives the difference with no interval (NaN); identical pairs give (0, 0), p = 1."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired arrays must be 1-D of equal length, got {a.shape} and {b.shape}")
    diff = a - b
    n = len(diff)
    if n == 0:
        return PairedDifference(np.nan, np.nan, np.nan, np.nan, 0)
    mean = float(diff.mean())
    if n == 1:
        return PairedDifference(mean, np.nan, np.nan, np.nan, 1)
    if np.ptp(diff) == 0:
        return PairedDifference(mean, mean, mean, 1.0 if mean == 0 else 0.0, n)
    result = stats.ttest_rel(a, b)
    ci = result.confidence_interval(confidence)
    return PairedDifference(mean, float(ci.low), float(ci.high), float(result.pvalue), n)


def mcnemar_exact(correct_a, correct_b) -> tuple[int, int, float]:
    """Exact McNemar test of two classifiers on the same items (boolean arrays "item right").
    Returns (right only for a, right only for b, two-sided p-value)."""
    correct_a, correct_b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if correct_a.shape != correct_b.shape:
        raise ValueError(f"prediction arrays differ in shape: {correct_a.shape} and {correct_b.shape}")
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    if only_a + only_b == 0:
        return only_a, only_b, 1.0
    return only_a, only_b, float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)


def paired_loss_test(loss_a, loss_b) -> tuple[float, float]:
    """Mean per-item loss difference a - b and the paired t test's two-sided p-value."""
    loss_a, loss_b = np.asarray(loss_a, dtype=float), np.asarray(loss_b, dtype=float)
    diff = paired_difference(loss_a, loss_b)
    return diff.mean, diff.pvalue


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjustment: sorted p_(i) (i = 1..m) become max_{j<=i} min(1, (m-j+1) p_(j)),
    returned in the input order; NaN entries are left out of m and stay NaN."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def holdout_best(records: pd.DataFrame, scenario: str, tuning_tags=("tune",), with_strategy: bool = False):
    """The optimizer that leads the hold-out in ``scenario``
    (:func:`helpers.evidence.analysis.holdout_scores`: the best tuning trial's final accuracy,
    then its loss); None if no trial ran. ``with_strategy``: return (optimizer, sparsity
    strategy), ranking each strategy apart."""
    from .analysis import holdout_scores
    scores = holdout_scores(records, scenario, tuning_tags)
    if scores.empty:
        return None
    best = scores.iloc[0]
    return (str(best["optimizer"]), str(best["sparsity_strategy"])) if with_strategy else str(best["optimizer"])


def final_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per final run of ``frame`` (its last record), keyed by :data:`KEYS` and seed.
    Where a method has several configurations, the one with most finished seeds is kept (the v2
    study has one final configuration per method, scenario and strategy)."""
    last = frame.sort_values(["run_id", "epoch"]).groupby("run_id").tail(1)
    if "config_key" in last:
        finished = last.assign(ok=last["status"] == "finished")
        counts = finished.groupby([*KEYS, "config_key"])["ok"].sum().reset_index()
        keep = counts.sort_values(["ok", "config_key"], ascending=[False, True]).groupby(list(KEYS)).head(1)
        last = last.merge(keep[[*KEYS, "config_key"]], on=[*KEYS, "config_key"])
    return last


def seed_matched(runs: pd.DataFrame, reference: tuple[str, str], metric: str = "test_acc",
                 confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Per (method, strategy) other than ``reference``: its ``metric`` minus the reference's over
    the seeds both finished, with the t interval, p-value and Holm-adjusted p-value.
    ``runs`` as from :func:`final_runs` (with a ``status`` column)."""
    done = runs[runs["status"] == "finished"]
    ref = done[(done["method"] == reference[0]) & (done["sparsity_strategy"] == reference[1])]
    ref = ref.set_index("seed")[metric]
    all_seeds = runs.groupby(list(KEYS))["seed"].apply(set)
    ref_seeds = all_seeds.get(tuple(reference), set())
    rows = []
    for key, group in done.groupby(list(KEYS)):
        if key == tuple(reference):
            continue
        values = group.set_index("seed")[metric]
        seeds = sorted(set(values.index) & set(ref.index))
        diff = paired_difference(values[seeds].to_numpy(), ref[seeds].to_numpy(), confidence)
        rows.append({"method": key[0], "sparsity_strategy": key[1], "metric": metric, "n_pairs": diff.n,
                     "unpaired": len(all_seeds[key] | ref_seeds) - diff.n,
                     "difference": diff.mean, "ci_low": diff.low, "ci_high": diff.high, "p": diff.pvalue})
    table = pd.DataFrame(rows, columns=["method", "sparsity_strategy", "metric", "n_pairs", "unpaired",
                                        "difference", "ci_low", "ci_high", "p"])
    table["p_holm"] = holm(table["p"].to_numpy()) if len(table) else []
    return table


def per_image_tests(runs: pd.DataFrame, reference: tuple[str, str], labels: np.ndarray,
                    predictions=None) -> pd.DataFrame:
    """Per (method, strategy, seed) finished by both it and ``reference``: exact McNemar on the test
    images and the paired t test on per-image losses, each Holm-adjusted across all rows.
    ``predictions(run_id) -> {"pred": uint8[n], "loss": float32[n]} | None`` (default:
    :func:`helpers.study.records.load_predictions`); rows whose predictions are missing are skipped."""
    if predictions is None:
        from ..study.records import load_predictions as predictions
    labels = np.asarray(labels)
    done = runs[runs["status"] == "finished"]
    ref = done[(done["method"] == reference[0]) & (done["sparsity_strategy"] == reference[1])]
    ref_ids = dict(zip(ref["seed"], ref["run_id"]))
    cache = {}

    def get(run_id):
        if run_id not in cache:
            cache[run_id] = predictions(run_id)
        return cache[run_id]

    rows = []
    for _, run in done.iterrows():
        if (run["method"], run["sparsity_strategy"]) == tuple(reference) or run["seed"] not in ref_ids:
            continue
        mine, best = get(run["run_id"]), get(ref_ids[run["seed"]])
        if mine is None or best is None:
            continue
        only_m, only_b, p_acc = mcnemar_exact(mine["pred"] == labels, best["pred"] == labels)
        loss_diff, p_loss = paired_loss_test(mine["loss"], best["loss"])
        rows.append({"method": run["method"], "sparsity_strategy": run["sparsity_strategy"],
                     "seed": run["seed"], "right_only_method": only_m, "right_only_best": only_b,
                     "p_mcnemar": p_acc, "loss_difference": loss_diff, "p_loss": p_loss})
    table = pd.DataFrame(rows, columns=["method", "sparsity_strategy", "seed", "right_only_method",
                                        "right_only_best", "p_mcnemar", "loss_difference", "p_loss"])
    table["p_mcnemar_holm"] = holm(table["p_mcnemar"].to_numpy()) if len(table) else []
    table["p_loss_holm"] = holm(table["p_loss"].to_numpy()) if len(table) else []
    return table


def per_image_agreement(per_image: pd.DataFrame, metric: str = "test_acc", alpha: float = ALPHA) -> pd.DataFrame:
    """Per (method, strategy): seeds with a per-image test, and the sign (+1 the method better,
    -1 worse, 0 mixed or not significant) the Holm-adjusted tests agree on across *all* of them."""
    if per_image is None or per_image.empty:
        return pd.DataFrame(columns=[*KEYS, "image_seeds", "image_sign"])
    if metric.endswith("acc"):
        sign, p = np.sign(per_image["right_only_method"] - per_image["right_only_best"]), per_image["p_mcnemar_holm"]
    else:
        sign, p = -np.sign(per_image["loss_difference"]), per_image["p_loss_holm"]
    rows = per_image.assign(sign=np.where(p < alpha, sign, 0))
    agg = rows.groupby(list(KEYS))["sign"].agg(image_seeds="size", lowest="min", highest="max").reset_index()
    agg["image_sign"] = np.where(agg["lowest"] == agg["highest"], agg["lowest"], 0).astype(int)
    return agg.drop(columns=["lowest", "highest"])


def separability(runs: pd.DataFrame, reference: tuple[str, str], metric: str = "test_acc",
                 alpha: float = ALPHA, confidence: float = CONFIDENCE,
                 per_image: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`seed_matched` plus a ``verdict`` per method (the reference's own row says "best"):
    "untested" with fewer than 2 paired seeds; else "separable" when the Holm-adjusted seed-matched
    p-value is below ``alpha``, or when ``per_image`` (:func:`per_image_tests`) has a test on every
    paired seed and all of them reject in the same direction; else "not separable"."""
    table = seed_matched(runs, reference, metric, confidence)
    table = table.merge(per_image_agreement(per_image, metric, alpha), on=list(KEYS), how="left")
    table["image_seeds"] = table["image_seeds"].fillna(0).astype(int)
    table["image_sign"] = table["image_sign"].fillna(0).astype(int)
    by_images = (table["image_seeds"] >= table["n_pairs"]) & (table["image_sign"] != 0)
    table["verdict"] = np.where(table["n_pairs"] < 2, "untested",
                                np.where((table["p_holm"] < alpha) | by_images, "separable", "not separable"))
    best = pd.DataFrame([{"method": reference[0], "sparsity_strategy": reference[1], "metric": metric,
                          "n_pairs": int(((runs["method"] == reference[0]) &
                                          (runs["sparsity_strategy"] == reference[1]) &
                                          (runs["status"] == "finished")).sum()),
                          "unpaired": 0, "difference": 0.0, "verdict": "best"}])
    return pd.concat([best, table], ignore_index=True) if len(table) else best


def not_separable(runs: pd.DataFrame, reference: tuple[str, str], metric: str = "test_acc",
                  alpha: float = ALPHA, per_image: pd.DataFrame | None = None) -> list[tuple[str, str]]:
    """The best and every (method, strategy) not separable from it on ``metric``."""
    table = separability(runs, reference, metric, alpha, per_image=per_image)
    keep = table[table["verdict"].isin(["best", "not separable"])]
    return list(zip(keep["method"], keep["sparsity_strategy"]))


def reference_of(runs: pd.DataFrame, optimizer: str, strategy: str | None = None) -> tuple[str, str] | None:
    """The (method label, strategy) of ``optimizer``'s own final runs (no side-experiment tag) with
    ``strategy`` (default: the strategy with most finished runs); None if it has none."""
    own = runs[(runs["optimizer"] == optimizer) & ~runs["method"].str.contains("[", regex=False)]
    own = own[own["status"] == "finished"]
    if strategy is not None and (own["sparsity_strategy"] == strategy).any():
        own = own[own["sparsity_strategy"] == strategy]
    if own.empty:
        return None
    key = own.groupby(list(KEYS)).size().sort_values(ascending=False, kind="stable").index[0]
    return tuple(key)


@functools.lru_cache(maxsize=1)
def official_test_labels() -> np.ndarray:
    """The 10,000 official test labels (verified files, see :mod:`helpers.problem.data`)."""
    from ..problem.data import _labels, find_data_dir, read_verified
    return _labels(read_verified(find_data_dir(), "t10k-labels-idx1-ubyte")).copy()


def scenario_comparison(frame: pd.DataFrame, records: pd.DataFrame, scenario: str, predictions=None,
                        labels: np.ndarray | None = None, alpha: float = ALPHA, root=None) -> dict:
    """Everything the report says about ``scenario``'s answer: the hold-out best, the seed-matched
    tables on test accuracy and test loss with their verdicts, the per-image tests, and the
    groups not separable from the best. ``frame``: :func:`helpers.evidence.analysis.final_frame`
    (final runs of every status); ``records``: all records (tuning included); ``predictions`` as in
    :func:`per_image_tests` (default: the stored ones under ``root``)."""
    if predictions is None:
        from ..study.records import load_predictions

        def predictions(run_id):
            return load_predictions(run_id, root)
    runs = final_runs(frame[frame["scenario"] == scenario])
    best = holdout_best(records, scenario, with_strategy=True)
    reference = reference_of(runs, *best) if best else None
    out = {"scenario": scenario, "holdout_best": best[0] if best else None, "reference": reference}
    if reference is None:
        return out
    if labels is None:
        try:
            labels = official_test_labels()
        except Exception:  # data files absent: the per-image tests are skipped
            labels = None
    per_image = per_image_tests(runs, reference, labels, predictions) if labels is not None else None
    out["per_image"] = per_image if per_image is not None else pd.DataFrame()
    for name, metric in (("accuracy", "test_acc"), ("loss", "test_loss")):
        table = separability(runs, reference, metric, alpha, per_image=per_image)
        out[name] = table
        out[f"group_{name}"] = list(zip(*[table.loc[table["verdict"].isin(["best", "not separable"]), k]
                                         for k in KEYS]))
    return out
