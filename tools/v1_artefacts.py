"""Were protocol v1's manufactured results (issue 13) gone in the v2 study? Printed from the records.

Usage: .venv/bin/python tools/v1_artefacts.py [--runs-dir outputs/runs] [--scenario standard]

- RAdam against Adam: v1's short tuning chose a rate at which RAdam's rectifier was still damping
  the step; here both are tuned at full length: their final test accuracy and loss, the
  seed-matched difference (95% t interval) and the chosen rates.
- SARAH and full-batch gradient descent: v1's finals diverged or blew up; here their counts
  (finished / diverged / failed), accuracy, and GD's test loss over its evaluations.
- Annealing of budgeted methods: the schedule is planned over the oracle budget, so the rate at a
  final run's last evaluation is the schedule's end; printed as last lr / chosen lr with the
  epoch and oracle calls at which the run stopped.
- Grid edges: each tuned rate's place on its grid (interior / limit / spent / open).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.evidence import analysis as A  # noqa: E402
from helpers.evidence import statistics as S  # noqa: E402
from helpers.evidence.report_artifacts import main_study, study_inputs  # noqa: E402
from helpers.optimizers import get_spec  # noqa: E402
from helpers.study.readout import choices_table  # noqa: E402

BUDGETED = ("adahessian", "svrg", "sarah", "saga", "newton_cg", "kfac", "shampoo", "lbfgs", "sgd_growing_batch")


def _acc(row) -> str:
    return (f"{row['test_acc_mean']:.2f}% +- {row['test_acc_std']:.2f}, loss {row['test_loss_mean']:.4f} "
            f"({int(row['finished'])}/{int(row['diverged'])}/{int(row['failed'])} finished/diverged/failed)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", default="outputs/runs")
    parser.add_argument("--scenario", default="standard")
    args = parser.parse_args(argv)
    inputs = study_inputs(args.runs_dir)
    final = main_study(A.final_frame(frame=inputs.records), "full", inputs.state)
    final = final[final["scenario"] == args.scenario]
    results = A.final_results(final).set_index("method")
    runs = S.final_runs(final)
    lr = {m: json.loads(g["hparams"].iloc[0]).get("lr") for m, g in final.groupby("method")}

    print(f"scenario {args.scenario}")
    for method in ("adam", "radam"):
        if method in results.index:
            print(f"  {method}: lr {lr[method]:g}; {_acc(results.loc[method])}")
    if {"adam", "radam"} <= set(results.index):
        for metric in ("test_acc", "test_loss"):
            row = S.seed_matched(runs, ("adam", "projection"), metric).set_index("method").loc["radam"]
            print(f"  radam - adam, {metric}: {row['difference']:+.4f} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}] "
                  f"over {int(row['n_pairs'])} seeds")
    for method in ("sarah", "gd"):
        if method in results.index:
            print(f"  {method}: lr {lr[method]:g}; {_acc(results.loc[method])}")
    gd = final[final["method"] == "gd"]
    for run_id, g in gd.groupby("run_id"):
        losses = ", ".join(f"{v:.3g}" for v in g.sort_values("epoch")["test_loss"])
        print(f"  gd {run_id}: test loss by evaluation {losses}")

    print("annealing (last evaluation of each final run: lr / chosen lr, epoch, oracle calls):")
    last = final.sort_values("epoch").groupby("run_id").tail(1)
    for method in BUDGETED:
        rows = last[last["method"] == method]
        if rows.empty:
            continue
        base = rows["hparams"].map(lambda h: json.loads(h).get("lr"))
        ratio = rows["lr"] / base
        schedule = rows["schedule"].iloc[0]
        print(f"  {method} ({schedule}, {get_spec(method).family}): lr ratio {ratio.min():.3g}-{ratio.max():.3g}, "
              f"stopped at epoch {rows['epoch'].min():.2f}-{rows['epoch'].max():.2f}, "
              f"oracle calls {int(rows['oracle_evals'].min()):,}-{int(rows['oracle_evals'].max()):,}")

    if inputs.state is not None:
        choices = choices_table(inputs.state)
        choices = choices[choices["row"] == args.scenario]
        print("grid edges:", choices["edge"].value_counts().to_dict())
        edged = choices[~choices["edge"].isin(["interior", "-"])]
        for _, r in edged.iterrows():
            print(f"  {r['method']} ({r['strategy']}): lr {r['lr']:g}, {r['edge']}, {int(r['extension'])} extension run(s)")
        extended = choices[choices["extension"] > 0]
        print("grids extended:", ", ".join(f"{r['method']} (+{int(r['extension'])})" for _, r in extended.iterrows())
              or "none")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
