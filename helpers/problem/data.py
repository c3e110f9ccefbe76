"""Find, verify and load Fashion-MNIST into device tensors; draw batches; carve a hold-out.

The four IDX files come from a directory given as an argument, else from ``FASHION_MNIST_DIR``
when it is set (then only from there: a setting that does not hold the files is an error), else
from the Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``).
Nothing is downloaded. Every file is checked before use: its
decompressed size and MD5 must match the official Fashion-MNIST content (Debian re-packs
the ``.gz`` wrappers, so the wrapper's own MD5 is not a stable check).
"""
from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "FASHION_MNIST_DIR"
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
N_TRAIN, N_TEST = 60_000, 10_000

# name -> (decompressed bytes, MD5 of the decompressed bytes, IDX magic, leading dimension)
FILES = {
    "train-images-idx3-ubyte": (47_040_016, "f4a8712d7a061bf5bd6d2ca38dc4d50a", 2051, N_TRAIN),
    "train-labels-idx1-ubyte": (60_008, "9018921c3c673c538a1fc5bad174d6f9", 2049, N_TRAIN),
    "t10k-images-idx3-ubyte": (7_840_016, "8181f5470baa50b63fa0f6fddb340f0a", 2051, N_TEST),
    "t10k-labels-idx1-ubyte": (10_008, "15d484375f8d13e6eb1aabb0c3f46965", 2049, N_TEST),
}
FIX_HINT = (f"install the Debian package (as root: apt-get install -y dataset-fashion-mnist, "
            f"which provides {DEBIAN_DIR}) or set {ENV_VAR} to a directory holding the four "
            f"official files ({', '.join(n + '[.gz]' for n in FILES)})")


class DataError(RuntimeError):
    """A Fashion-MNIST file is missing, truncated or corrupted."""


def find_data_dir(path: str | os.PathLike | None = None) -> Path:
    """The directory holding the four files: ``path`` if given, else ``$FASHION_MNIST_DIR`` if
    set, else Debian's. An explicit choice that lacks the files is an error naming it (no
    fallback to another directory)."""
    if path is not None:
        directory, source = Path(path), "the given path"
    elif os.environ.get(ENV_VAR):
        directory, source = Path(os.environ[ENV_VAR]), f"{ENV_VAR}={os.environ[ENV_VAR]}"
    else:
        directory, source = DEBIAN_DIR, "the Debian package's directory"
    fix = FIX_HINT + (f", or unset {ENV_VAR} to use {DEBIAN_DIR}" if source.startswith(ENV_VAR) else "")
    if not directory.is_dir():
        what = "does not exist" if not directory.exists() else "is not a directory"
        raise DataError(f"Fashion-MNIST directory {directory} ({source}) {what}. Fix: {fix}.")
    missing = [n for n in FILES if _file_in(directory, n) is None]
    if missing:
        raise DataError(f"Fashion-MNIST files not found in {directory} ({source}): "
                        f"{', '.join(missing)} missing. Fix: {fix}.")
    return directory


def _file_in(directory: Path, name: str) -> Path | None:
    for candidate in (directory / f"{name}.gz", directory / name):
        if candidate.is_file():
            return candidate
    return None


def read_verified(directory: Path, name: str) -> bytes:
    """Read one IDX file (gzipped or not) and check size, MD5 and header; raise DataError otherwise."""
    size, md5, magic, count = FILES[name]
    path = _file_in(directory, name)
    if path is None:
        raise DataError(f"{directory / (name + '.gz')} is missing. Fix: {FIX_HINT}.")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path} cannot be decompressed ({exc}); expected a gzip of the official "
                        f"{name}. The file is truncated or corrupted. Fix: {FIX_HINT}.") from exc
    if len(raw) != size:
        raise DataError(f"{path} holds {len(raw)} bytes, expected {size} for {name}: the file is "
                        f"truncated or not Fashion-MNIST. Fix: {FIX_HINT}.")
    digest = hashlib.md5(raw).hexdigest()
    if digest != md5:
        raise DataError(f"{path} has MD5 {digest} (of its decompressed content), expected {md5}: the "
                        f"file is corrupted or not Fashion-MNIST. Fix: {FIX_HINT}.")
    head = np.frombuffer(raw[:8], dtype=">i4")
    if head[0] != magic or head[1] != count:
        raise DataError(f"{path} has IDX header {tuple(head)}, expected ({magic}, {count}). Fix: {FIX_HINT}.")
    return raw


def _images(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)


def _labels(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype=np.uint8, offset=8)


@dataclass
class Split:
    """One split held as tensors on a device: ``x`` float (N,1,28,28), ``y`` int64 (N,)."""
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: torch.Tensor) -> "Split":
        index = index.to(self.x.device)
        return Split(self.x[index], self.y[index])


@dataclass
class FashionMNIST:
    """The train and test splits, and (optionally) a validation hold-out carved from train."""
    train: Split
    test: Split
    val: Split | None = None
    scaling: str = "unit"

    @property
    def device(self) -> torch.device:
        return self.train.x.device


SCALINGS = ("unit", "standardize")
# Mean and std of the 60,000 training images on the [0, 1] scale.
TRAIN_MEAN, TRAIN_STD = 0.2860, 0.3530


def load(path=None, device: str | torch.device | None = None, scaling: str = "unit",
         val_size: int = 0, val_seed: int = 0, train_fraction: float = 1.0,
         fraction_seed: int = 0) -> FashionMNIST:
    """Load verified Fashion-MNIST onto ``device``.

    ``scaling``: ``"unit"`` divides pixels by 255 as the starter's ``ToTensor()`` does;
    ``"standardize"`` also subtracts the training mean and divides by its std.
    ``val_size`` > 0 moves that many training images (class-stratified, seeded by
    ``val_seed``) into ``val``. ``train_fraction`` < 1 keeps a seeded, stratified share of
    what remains for training (for quick runs); the test split is never touched.
    """
    from ..runtime import default_device
    if scaling not in SCALINGS:
        raise ValueError(f"unknown scaling {scaling!r}; choose one of {SCALINGS}")
    if not 0 < train_fraction <= 1:
        raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
    if not 0 <= val_size < N_TRAIN:
        raise ValueError(f"val_size must be in [0, {N_TRAIN}), got {val_size}")
    directory = find_data_dir(path)
    device = torch.device(device) if device is not None else default_device()
    arrays = {name: read_verified(directory, name) for name in FILES}

    def split(prefix: str) -> Split:
        x = torch.from_numpy(_images(arrays[f"{prefix}-images-idx3-ubyte"]).copy()).float().div_(255)
        if scaling == "standardize":
            x = (x - TRAIN_MEAN) / TRAIN_STD
        y = torch.from_numpy(_labels(arrays[f"{prefix}-labels-idx1-ubyte"]).astype(np.int64))
        return Split(x.to(device), y.to(device))

    train, test = split("train"), split("t10k")
    val = None
    if val_size:
        keep, held = stratified_split(train.y.cpu(), val_size, val_seed)
        train, val = train.subset(keep), train.subset(held)
    if train_fraction < 1:
        keep, _ = stratified_split(train.y.cpu(), len(train) - round(train_fraction * len(train)),
                                   fraction_seed)
        train = train.subset(keep)
    return FashionMNIST(train=train, test=test, val=val, scaling=scaling)


def stratified_split(labels: torch.Tensor, n_out: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into (kept, held-out) with ``n_out`` held out, class proportions preserved."""
    gen = torch.Generator().manual_seed(seed)
    classes = labels.unique()
    per_class = [torch.nonzero(labels == c).flatten() for c in classes]
    shares = [len(ix) * n_out / len(labels) for ix in per_class]
    counts = [int(s) for s in shares]
    by_remainder = sorted(range(len(shares)), key=lambda i: shares[i] - counts[i], reverse=True)
    for i in by_remainder[: n_out - sum(counts)]:
        counts[i] += 1
    held, kept = [], []
    for ix, k in zip(per_class, counts):
        ix = ix[torch.randperm(len(ix), generator=gen)]
        held.append(ix[:k])
        kept.append(ix[k:])
    return torch.cat(kept).sort().values, torch.cat(held).sort().values


def batch_indices(n: int, batch_size: int, generator: torch.Generator, shuffle: bool = True,
                  drop_last: bool = False) -> list[torch.Tensor]:
    """One epoch of index batches drawn by a seeded permutation (the DataLoader's ``shuffle=True``)."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    batches = list(order.split(batch_size))
    if drop_last and len(batches) > 1 and len(batches[-1]) < batch_size:
        batches.pop()
    return batches
