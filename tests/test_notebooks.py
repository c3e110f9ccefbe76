"""Notebooks under papermill: parameters cells, unknown-parameter rejection, default execution.

What covers the notebooks, and what does not:

- nbval (configured in pyproject.toml) re-executes 00_starter_baseline, 50_sparsity and 90_summary
  with their defaults (``profile="ci"``) and compares only the cells marked ``# NBVAL_CHECK_OUTPUT``
  (``--nbval-lax``): the study's sizes, the methods' table from the study definition, run ids
  derived from the definition, parameter counts. No trained number is compared there (nbval cannot
  apply a tolerance). It skips the family notebooks (notebooks/conftest.py ``collect_ignore``).
- The family notebooks (10_sgd, 20_momentum, 30_noise_reduction, 40_second_order) are executed by
  tests/test_notebook_numbers_<notebook>.py (one file each, so xdist spreads them; the machinery in
  tests/notebook_numbers.py, checked in seconds by tests/test_notebook_numbers.py): once with their
  defaults, whose ``# NBVAL_CHECK_OUTPUT`` cells are compared with the committed notebook's as nbval
  does (sanitize.cfg applied), then under sparse60 (and l2 for 20_momentum, standard with kfac for
  40_second_order) with one member; the final test accuracy and loss of the committed members are
  compared with tests/data/notebook_numbers.json within a stated tolerance.
- Here: every notebook has a ``parameters`` cell with ``runs_dir`` and ``profile`` (and the family
  notebooks ``scenario``); papermill executes the starter baseline (it trains exactly the starter)
  and the summary with an empty runs folder (it says "no runs yet"); an unknown parameter is
  rejected before anything runs.
- ``make study PROFILE=ci`` (tests/test_sweep.py, tests/test_cli_study.py) runs every notebook in
  its sweep; the other scenarios' thinner budgets run only there.
"""
import json
from pathlib import Path

import nbformat
import papermill
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
BY_NAME = {p.stem: p for p in NOTEBOOKS}
KERNEL = "fmnist-optim"


def printed(path) -> str:
    nb = nbformat.read(str(path), as_version=4)
    return "\n".join(out.get("text", "") if out.get("output_type") == "stream" else out.get("data", {}).get("text/plain", "")
                     for cell in nb.cells for out in cell.get("outputs", []))


@pytest.mark.parametrize("name", ["00_starter_baseline", "90_summary"])
def test_notebook_runs_with_defaults_under_papermill(name, tmp_path, runs_root):
    notebook = BY_NAME[name]
    out = tmp_path / notebook.name
    papermill.execute_notebook(str(notebook), str(out), kernel_name=KERNEL, cwd=str(notebook.parent),
                               progress_bar=False)
    if name == "00_starter_baseline":  # the CI profile's starter: one seed; no tuned runs exist here
        metas = [json.loads(p.read_text()) for p in runs_root.rglob("meta.json")]
        assert [m["config"]["tag"] for m in metas] == ["starter"], metas
        assert "no tuned runs yet" in printed(out)
    else:
        assert "no runs yet" in printed(out)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_parameters_cell_and_scenario_parameter(notebook):
    params = papermill.inspect_notebook(str(notebook))
    assert params, f"{notebook.name} has no cell tagged 'parameters'"
    assert "runs_dir" in params, notebook.name
    assert "profile" in params, f"{notebook.name} does not take the study's profile"
    assert not {"tune_budget", "tune_epochs"} & set(params), f"{notebook.name}: tuning sizes come from the profile"
    if notebook.stem[:2] in ("10", "20", "30", "40"):
        assert "scenario" in params, f"{notebook.name} cannot run other scenarios"


def test_unknown_notebook_parameter_is_rejected_before_running(tmp_path):
    from helpers.study.sweep import SweepSpecError, plan
    with pytest.raises(SweepSpecError, match="no parameter.*learning_rate"):
        plan("quick", notebooks=["00_starter_baseline"], overrides={"learning_rate": 0.1},
             output_dir=tmp_path, runs_dir=str(tmp_path / "runs"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_cell_has_an_id(notebook):
    """nbformat 4.5 cell ids: without them nbformat warns on every read and will refuse the file."""
    cells = json.loads(notebook.read_text())["cells"]
    assert all("id" in cell for cell in cells), f"{notebook.name}: normalise it (nbformat.validator.normalize)"
