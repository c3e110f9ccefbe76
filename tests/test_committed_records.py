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
