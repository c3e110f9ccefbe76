import gzip
import shutil

import pytest
import torch

from helpers.problem import data as D
from helpers.problem.data import DataError, find_data_dir, load, read_verified, stratified_split


@pytest.fixture
def copy_dir(tmp_path):
    src = find_data_dir()
    for name in D.FILES:
        shutil.copy(src / f"{name}.gz", tmp_path / f"{name}.gz")
    return tmp_path


def test_real_files_verify_and_have_the_official_split(small_data):
    full = load(device="cpu")
    assert full.train.x.shape == (60_000, 1, 28, 28) and full.test.x.shape == (10_000, 1, 28, 28)
    assert full.train.x.min() == 0 and full.train.x.max() == 1
    assert torch.bincount(full.test.y).tolist() == [1000] * 10
    assert torch.bincount(full.train.y).tolist() == [6000] * 10
    assert len(small_data.train) == 6000 and len(small_data.test) == 10_000


def test_standardize_scaling_uses_training_statistics():
    x = load(device="cpu", scaling="standardize").train.x
    assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 1e-3


def test_missing_file_names_it_and_the_fix(copy_dir):
    (copy_dir / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*apt-get install -y dataset-fashion-mnist"):
        find_data_dir(copy_dir)


def test_truncated_file(copy_dir):
    path = copy_dir / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz.*truncated or corrupted"):
        read_verified(copy_dir, "train-labels-idx1-ubyte")


def test_corrupted_content_fails_md5(copy_dir):
    path = copy_dir / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[100] = (raw[100] + 1) % 10
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match="MD5 .* expected 15d484375f8d13e6eb1aabb0c3f46965"):
        read_verified(copy_dir, "t10k-labels-idx1-ubyte")


def test_wrong_size_is_reported(copy_dir):
    path = copy_dir / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-8]))
    with pytest.raises(DataError, match="holds 10000 bytes, expected 10008"):
        read_verified(copy_dir, "t10k-labels-idx1-ubyte")


def test_uncompressed_files_are_accepted(copy_dir):
    path = copy_dir / "t10k-labels-idx1-ubyte.gz"
    (copy_dir / "t10k-labels-idx1-ubyte").write_bytes(gzip.decompress(path.read_bytes()))
    path.unlink()
    assert len(read_verified(copy_dir, "t10k-labels-idx1-ubyte")) == 10_008


def test_environment_variable_is_searched(copy_dir, monkeypatch):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(copy_dir))
    assert find_data_dir() == copy_dir


@pytest.mark.parametrize("setting", ["does-not-exist", "empty", "partial"])
def test_environment_variable_that_lacks_the_files_is_an_error_naming_it(setting, copy_dir, tmp_path,
                                                                          monkeypatch):
    chosen = {"does-not-exist": tmp_path / "nowhere", "empty": tmp_path / "empty", "partial": copy_dir}[setting]
    if setting == "empty":
        chosen.mkdir()
    if setting == "partial":
        (copy_dir / "train-images-idx3-ubyte.gz").unlink()
    monkeypatch.setenv("FASHION_MNIST_DIR", str(chosen))
    expected = "does not exist" if setting == "does-not-exist" else "train-images-idx3-ubyte"
    with pytest.raises(DataError, match=rf"FASHION_MNIST_DIR={chosen}.*{expected}[\s\S]*unset FASHION_MNIST_DIR"):
        find_data_dir()
    with pytest.raises(DataError, match=str(chosen)):  # no silent fallback to the Debian files
        load(device="cpu", train_fraction=0.01)


def test_validation_holdout_is_stratified_disjoint_and_seeded():
    labels = load(device="cpu").train.y
    kept, held = stratified_split(labels, 10_000, seed=3)
    assert len(held) == 10_000 and len(kept) == 50_000
    assert not set(kept.tolist()) & set(held.tolist())
    counts = torch.bincount(labels[held], minlength=10)
    assert counts.min() >= 999 and counts.max() <= 1001
    assert torch.equal(held, stratified_split(labels, 10_000, seed=3)[1])
    assert not torch.equal(held, stratified_split(labels, 10_000, seed=4)[1])


def test_bad_arguments_raise_early():
    with pytest.raises(ValueError, match="unknown scaling"):
        load(scaling="zscore")
    with pytest.raises(ValueError, match="train_fraction"):
        load(train_fraction=0)
