"""Device choice, seeding and the facts every record carries about where it ran."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def repo_path(path: str | os.PathLike) -> Path:
    """``path`` made absolute; a relative one is taken from the repository root, so a notebook
    parameter such as ``outputs/runs`` means the same folder wherever the kernel runs."""
    path = Path(path).expanduser()
    return (path if path.is_absolute() else ROOT / path).resolve()


def as_repo_parameter(path: str | os.PathLike) -> str:
    """The inverse for parameters: relative to the repository root when ``path`` lies inside it
    (executed notebooks then name no machine's folders), else absolute."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path == ROOT or ROOT in path.parents else str(path)


def default_device() -> torch.device:
    """CUDA when available (``FMNIST_DEVICE`` overrides), else CPU."""
    name = os.environ.get("FMNIST_DEVICE")
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNG (model initialisation) and return a CPU generator for batch order."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment(device: torch.device | str) -> dict:
    """Library versions, commit and hardware, for a record's metadata; on CUDA also how the
    engine ran the step there (conv path, CUDA graphs, whether cuDNN may use TF32)."""
    import numpy
    device = torch.device(device)
    info = {
        "python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
        "platform": platform.platform(), "hostname": platform.node(), "git_commit": git_commit(),
        "device": str(device), "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        from .engine import graphed_step, unfolded_convs
        info.update(device_name=torch.cuda.get_device_name(device), gpu_conv=unfolded_convs.choice(),
                    cuda_graphs=graphed_step.wanted(device), cudnn_tf32=torch.backends.cudnn.allow_tf32)
    return info
