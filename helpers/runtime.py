"""Device choice, seeding and the facts every record carries about where it ran."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


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
    """Library versions, commit and hardware, for a record's metadata."""
    import numpy
    device = torch.device(device)
    info = {
        "python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
        "platform": platform.platform(), "hostname": platform.node(), "git_commit": git_commit(),
        "device": str(device), "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    return info
