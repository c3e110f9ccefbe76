"""The committed study records keep the protocol's promises (issue 13): no run passes its oracle
budget, and no tuned rate ends on a grid edge that could have been extended."""
import json
from pathlib import Path

import pytest

from helpers.study import planner as PL

RUNS = Path(__file__).resolve().parents[1] / "outputs" / "runs"
METAS = sorted(RUNS.glob("*/meta.json"))


@pytest.mark.skipif(not METAS, reason="no committed records")
def test_no_committed_run_passes_its_oracle_budget():
    over = []
    for path in METAS:
        meta = json.loads(path.read_text())
        budget, final = meta["config"].get("grad_budget"), meta.get("final") or {}
        if budget is not None and final.get("oracle_evals", 0) > budget:
            over.append((meta["run_id"], final["oracle_evals"], budget))
    assert not over, f"runs over their oracle budget: {over}"


@pytest.mark.skipif(not METAS, reason="no committed records")
def test_every_committed_grid_ends_interior_or_at_a_declared_limit():
    state = PL.study_plan(None, "full", RUNS)
    assert state.edges, "the committed records hold no complete grid"
    spent = {key: status for key, status in state.edges.items() if status == "spent"}
    assert not spent, f"best rate on a grid edge after every allowed extension (widen the grid): {spent}"



@pytest.mark.skipif(not METAS, reason="no committed records")
def test_the_main_tables_hold_one_final_configuration_per_method_and_rank_as_the_planner():
    """Tables never choose between final configurations (that would be a choice on the test set):
    the main study's committed finals have one configuration per method, scenario and strategy;
    and the report's hold-out ranking of the standard row (analysis.holdout_scores) is the one
    the planner selected by."""
    from helpers.evidence import analysis as A
    from helpers.evidence.report_artifacts import main_study, study_inputs
    from helpers.study.definition import get_profile
    inputs = study_inputs(RUNS)
    main = main_study(inputs.frame, state=inputs.state)
    configs = main.groupby(["method", "scenario", "sparsity_strategy"])["config_key"].nunique()
    assert (configs == 1).all(), f"several final configurations: {configs[configs > 1].to_dict()}"

    profile = get_profile("full")
    planner = PL._Planner(profile, PL.outcomes(root=RUNS), profile.rows_in(), None, False, None, RUNS)
    planner.run()
    ranking = planner.ranking(planner.catalog["standard"])
    assert ranking, "the standard row has no complete ranking in the committed records"
    report = A.holdout_scores(main_study(inputs.records, state=inputs.state), "standard")
    assert list(zip(report["optimizer"], report["sparsity_strategy"])) == [(m, s) for m, s, _ in ranking]


@pytest.mark.skipif(not METAS, reason="no committed records")
def test_the_committed_records_are_the_complete_study():
    """Issue 12's must-show: with the committed records the definition plans nothing more to train
    (`python -m helpers sweep --profile full --dry-run` plans 0 runs)."""
    state = PL.study_plan(None, "full", RUNS)
    assert not state.runnable and not state.blocked and not state.measurements
