"""Every notebook executes with its CI-sized defaults under papermill (kernel fmnist-optim)."""
from pathlib import Path

import papermill
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
KERNEL = "fmnist-optim"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_with_defaults(notebook, tmp_path, runs_root):
    out = tmp_path / notebook.name
    papermill.execute_notebook(str(notebook), str(out), kernel_name=KERNEL, cwd=str(notebook.parent),
                               progress_bar=False)
    assert out.is_file()
    assert any(p.name == "meta.json" for p in runs_root.rglob("meta.json")) or notebook.stem == "90_summary"


def test_every_notebook_has_a_parameters_cell():
    for notebook in NOTEBOOKS:
        params = papermill.inspect_notebook(str(notebook))
        assert params, f"{notebook.name} has no cell tagged 'parameters'"
        assert "runs_dir" in params or notebook.stem == "90_summary", notebook.name
