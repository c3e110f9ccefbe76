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


@pytest.fixture(scope="session")
def data64():
    """80 training and 100 hold-out images of the real data, in float64 (10 steps of 8 per epoch)."""
    from helpers.problem.data import FashionMNIST, Split, load
    data = load(device="cpu", train_fraction=0.01)

    def double(split, a, b):
        return Split(split.x[a:b].double(), split.y[a:b])

    return FashionMNIST(train=double(data.train, 0, 80), test=double(data.test, 0, 100),
                        val=double(data.train, 160, 260))


@pytest.fixture
def runs_root(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("FMNIST_RUNS_DIR", str(root))
    return root


@pytest.fixture
def full_float32():
    """float32 convolutions on CUDA for the test (cuDNN may use TF32 by PyTorch's default, about
    3 decimal digits): the reference the GPU conv paths are compared with. Restored after."""
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = before


@pytest.fixture
def one_thread():
    """One torch thread for the test (restored after): tiny problems gain nothing from a second
    thread, and on a shared 2-core machine two threads spin against each other. Test modules
    use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
