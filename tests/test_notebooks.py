"""Notebooks under papermill: parameters cells, unknown-parameter rejection, default execution.

nbval (configured in pyproject.toml) re-executes every committed notebook with its defaults and
compares the cells marked ``# NBVAL_CHECK_OUTPUT``; here papermill executes the starter baseline
and the summary (the family notebooks run under papermill in tests/test_sweep.py's sweeps and
in `make study`), so `make test` stays within its time budget.
"""
from pathlib import Path

import papermill
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
BY_NAME = {p.stem: p for p in NOTEBOOKS}
KERNEL = "fmnist-optim"


@pytest.mark.parametrize("name", ["00_starter_baseline", "90_summary"])
def test_notebook_runs_with_defaults_under_papermill(name, tmp_path, runs_root):
    notebook = BY_NAME[name]
    out = tmp_path / notebook.name
    papermill.execute_notebook(str(notebook), str(out), kernel_name=KERNEL, cwd=str(notebook.parent),
                               progress_bar=False)
    assert out.is_file()
    if name == "00_starter_baseline":
        assert len(list(runs_root.rglob("meta.json"))) == 2  # the starter and the tuned recipe


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_parameters_cell_and_scenario_parameter(notebook):
    params = papermill.inspect_notebook(str(notebook))
    assert params, f"{notebook.name} has no cell tagged 'parameters'"
    assert "runs_dir" in params, notebook.name
    if notebook.stem[:2] in ("10", "20", "30", "40"):
        assert "scenario" in params, f"{notebook.name} cannot run other scenarios"


def test_unknown_notebook_parameter_is_rejected_before_running(tmp_path):
    from helpers.study.sweep import SweepSpecError, plan
    with pytest.raises(SweepSpecError, match="no parameter.*learning_rate"):
        plan("quick", notebooks=["00_starter_baseline"], overrides={"learning_rate": 0.1},
             output_dir=tmp_path, runs_dir=str(tmp_path / "runs"))
