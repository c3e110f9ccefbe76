"""The machinery of the family notebooks' checks (tests/notebook_numbers.py), in a few seconds: the
checked-cell comparison that replaces nbval for them, nbval's skip list, the committed values.
The executions themselves: tests/test_notebook_numbers_<notebook>.py."""
import importlib.util
import json
from pathlib import Path

import nbformat
import pytest
from notebook_numbers import CASES, EXPECTED, NOTEBOOKS, cases_of, checked_differences, sanitize_patterns

TESTS = Path(__file__).resolve().parent


def notebook(path: Path, outputs: list, source: str = "# NBVAL_CHECK_OUTPUT\nprint(1)") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1", outputs=[nbformat.v4.new_output("stream", name="stdout", text="free 1\n")]),
                nbformat.v4.new_code_cell(source, outputs=outputs)]
    nbformat.write(nb, str(path))
    return path


def stdout(text):
    return nbformat.v4.new_output("stream", name="stdout", text=text)


def test_checked_cells_compared_as_nbval_does(tmp_path):
    ref = notebook(tmp_path / "ref.ipynb", [stdout("rows 3\n"), stdout("took 1.5 s\n")])
    same = notebook(tmp_path / "same.ipynb", [stdout("rows 3\ntook 22 s\n")])  # coalesced, sanitized
    assert checked_differences(same, ref) == []
    other = notebook(tmp_path / "other.ipynb", [stdout("rows 4\ntook 1.5 s\n")])
    assert checked_differences(other, ref)
    stderr = notebook(tmp_path / "stderr.ipynb", [stdout("rows 3\ntook 1.5 s\n"),
                                                   nbformat.v4.new_output("stream", name="stderr", text="bar\n")])
    assert checked_differences(stderr, ref), "nbval compares stderr of a checked cell too"
    moved = notebook(tmp_path / "moved.ipynb", [stdout("rows 3\n")], source="# NBVAL_CHECK_OUTPUT\nprint(2)")
    assert checked_differences(moved, ref)
    image = {"image/png": "AAAA", "text/plain": "<Figure>"}
    with_png = notebook(tmp_path / "png.ipynb", [nbformat.v4.new_output("display_data", data=image)])
    image["image/png"] = "BBBB"
    other_png = notebook(tmp_path / "png2.ipynb", [nbformat.v4.new_output("display_data", data=image)])
    assert checked_differences(other_png, with_png) == [], "images are not compared (nbval without --nbdime)"


def test_sanitize_rules_read_from_the_nbval_file():
    assert ("0x[0-9a-f]+", "ADDRESS") in sanitize_patterns()


def test_nbval_skips_exactly_the_notebooks_executed_here():
    spec = importlib.util.spec_from_file_location("notebooks_conftest", NOTEBOOKS / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    assert sorted(conftest.collect_ignore) == sorted(f"{name}.ipynb" for name in CASES)
    for name in CASES:
        assert (NOTEBOOKS / f"{name}.ipynb").is_file(), name
        assert (TESTS / f"test_notebook_numbers_{name}.py").is_file(), f"no test file executes {name}"
        assert checked_differences(NOTEBOOKS / f"{name}.ipynb", NOTEBOOKS / f"{name}.ipynb") == []


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_case_has_committed_values(name):
    values = json.loads(EXPECTED.read_text())
    members = CASES[name][0]["members"]
    cases = cases_of(name)
    assert cases[0] == "defaults"
    for scenario in CASES[name][1]:
        assert scenario in cases or (scenario == "standard" and "defaults" in cases), (name, scenario)
        assert set(values[f"{name}/{scenario}"]) == set(members), (name, scenario)
