"""What the thinner budgets show: the best accuracy at each density, the runs that end at chance,
and the support the sparsity projection starts from.

The projection onto {w : ||w||_0 <= k} over fc1 and fc2 together keeps the k largest magnitudes
of both layers. From PyTorch's default initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fc2's
weights (fan-in 120) are drawn from a wider range than fc1's (fan-in 256), so at a small enough
budget every kept weight is an fc2 weight (:func:`projection_support_at_init`). fc1's output is
then ReLU(bias), the same for every image; a step gives fc1's weights small entries, which the
next projection drops again unless they outgrow the kept fc2 magnitudes, so the network can stay
at a constant output (loss ln 10).
"""
from __future__ import annotations

import pandas as pd
import torch

from .latex import tex

CHANCE_ACC = 11.0
"""Test accuracy (%) at or below which a run counts as at chance (ten balanced classes: 10%)."""


def projection_support_at_init(densities, seeds=(0, 1, 2)) -> pd.DataFrame:
    """Per density and seed: how many fc1 and fc2 weights the projection keeps from LeNet-5's
    default initialisation at that seed (the support a projected run starts on). The global
    random state is left as it was."""
    from ..constraints.masks import budget, topk_masks
    from ..problem.model import LeNet5, constrained_weights
    rows = []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            weights = constrained_weights(LeNet5())
        total = sum(w.numel() for w in weights)
        for density in sorted(densities, reverse=True):
            fc1, fc2 = (int(m.sum()) for m in topk_masks(weights, budget(total, density)))
            rows.append({"density": density, "seed": seed, "fc1_kept": fc1, "fc2_kept": fc2})
    return pd.DataFrame(rows)


def chance_runs(finals: pd.DataFrame) -> pd.DataFrame:
    """Per thinner density (the study's scenarios below sparse60): the projection's final runs and
    how many end at chance (last test accuracy at most :data:`CHANCE_ACC`). ``finals`` are
    final-run records (:func:`helpers.evidence.analysis.final_frame`)."""
    from ..constraints.scenarios import get_scenario
    from ..study.definition import THINNER
    runs = finals[finals["scenario"].isin(THINNER) & (finals["sparsity_strategy"] == "projection")]
    last = runs.sort_values("epoch").groupby("run_id").tail(1)
    last = last.assign(density=[get_scenario(n).density for n in last["scenario"]],
                       at_chance=last["test_acc"] <= CHANCE_ACC)
    return (last.groupby("density").agg(runs=("run_id", "nunique"), at_chance=("at_chance", "sum"))
            .reset_index().sort_values("density", ascending=False))


def _pct(density: float) -> str:
    return f"{100 * density:g}\\%"


def density_sentence(results: pd.DataFrame, chance: pd.DataFrame, support: pd.DataFrame) -> str:
    """The best mean test accuracy under the projection at each density (chance where no method's
    mean is above it), the runs that end at chance, and, where the projection's start keeps no fc1
    weight at any seed, why (LaTeX). ``results``: :func:`helpers.evidence.analysis.accuracy_vs_density`;
    ``chance``: :func:`chance_runs`; ``support``: :func:`projection_support_at_init`."""
    proj = results[(results["sparsity_strategy"] == "projection") & (results["density"] < 1)]
    if not len(proj):
        return ""
    best = proj.loc[proj.groupby("density")["test_acc_mean"].idxmax()].sort_values("density", ascending=False)
    items = [f"chance at {_pct(r.density)}" if r.test_acc_mean <= CHANCE_ACC else
             f"{r.test_acc_mean:.2f}\\% at {_pct(r.density)} ({tex(r.method)})" for r in best.itertuples()]
    text = "Under the projection the highest mean test accuracy among the methods run is " + ", ".join(items[:-1]) + \
        (" and " if len(items) > 1 else "") + items[-1]
    failing = chance[chance["at_chance"] > 0]
    if not len(failing):
        return text + "."
    text += (": " + " and ".join(f"{int(r.at_chance)} of {int(r.runs)} final runs at {_pct(r.density)}"
                                 for r in failing.itertuples())
             + f" end at chance (test accuracy at most {CHANCE_ACC:g}\\%).")
    starts = support.groupby("density").agg(fc1_kept=("fc1_kept", "max")).reset_index()
    empty = starts[starts["density"].isin(failing["density"]) & (starts["fc1_kept"] == 0)]
    if not len(empty):
        return text
    only_fc2 = " and ".join(_pct(d) for d in sorted(empty["density"], reverse=True))
    text += (" From the default initialisation, at each of the runs' seeds, the projection keeps only fc2 "
             f"weights at {only_fc2} (fc2's are drawn from $\\pm 1/\\sqrt{{120}}$, fc1's from $\\pm 1/\\sqrt{{256}}$), so fc1's output "
             "is the same for every image")
    pruned = sorted(results.loc[results["sparsity_strategy"].isin(("gradual", "finetune")), "density"].unique())
    if pruned:
        text += ("; gradual pruning and prune-then-fine-tune, which start dense, run at "
                 + " and ".join(_pct(d) for d in pruned) + " only")
    return text + "."


def _start_support(finals: pd.DataFrame, densities) -> pd.DataFrame:
    """:func:`projection_support_at_init` at the seeds of the sparse runs in ``finals``."""
    seeds = sorted(int(s) for s in finals.loc[finals["scenario"].str.startswith("sparse"), "seed"].unique())
    return projection_support_at_init(densities, seeds)


def density_findings(finals: pd.DataFrame) -> str:
    """:func:`density_sentence` from final-run records alone (the support at the runs' seeds)."""
    from . import analysis as A
    results = A.accuracy_vs_density(finals)
    chance = chance_runs(finals)
    support = _start_support(finals, chance["density"]) if len(chance) else \
        pd.DataFrame(columns=["density", "seed", "fc1_kept", "fc2_kept"])
    return density_sentence(results, chance, support) if len(results) else ""


def chance_table(finals: pd.DataFrame) -> pd.DataFrame:
    """:func:`chance_runs` beside the projection's start at each density: the fc1 and fc2 weights
    kept from the default initialisation (the fewest fc1 and most fc2 over the runs' seeds)."""
    chance = chance_runs(finals)
    if not len(chance):
        return chance
    start = _start_support(finals, chance["density"]).groupby("density").agg(
        fc1_kept_at_start=("fc1_kept", "min"), fc2_kept_at_start=("fc2_kept", "max")).reset_index()
    return chance.merge(start, on="density").sort_values("density", ascending=False)
