"""10_sgd: executed once with its defaults (checked cells as nbval compares them, and the committed
numbers it trains), then its other scenarios' numbers. How, and the tolerance: tests/notebook_numbers.py."""
import pytest
from notebook_numbers import cases_of, run_case, shared_runs

NOTEBOOK = "10_sgd"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The session's fresh runs folder of the family notebooks (sparse60 and l2 start from the standard tuning)."""
    return shared_runs(tmp_path_factory)


@pytest.mark.slow
@pytest.mark.parametrize("case", cases_of(NOTEBOOK))
def test_sgd_notebook(case, runs, tmp_path, monkeypatch):
    run_case(NOTEBOOK, case, runs, tmp_path, monkeypatch)
