import os

import pytest
import torch

os.environ.setdefault("FMNIST_DEVICE", "cpu")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def small_data():
    """10% of the training images (stratified) and the full test split, on the CPU."""
    from helpers.problem.data import load
    return load(device="cpu", train_fraction=0.1)


@pytest.fixture
def runs_root(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("FMNIST_RUNS_DIR", str(root))
    return root


@pytest.fixture
def one_thread():
    """One torch thread for the test (restored after): tiny problems gain nothing from a second
    thread, and on a shared 2-core machine two threads spin against each other. Test modules
    use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
