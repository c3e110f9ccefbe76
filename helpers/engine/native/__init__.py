"""LeNet-5's two convolution blocks as compiled CPU kernels, for K models at once.

``conv1_pool_relu.c`` and ``conv2_pool_relu.c`` each compute ``relu(max_pool2d(conv2d(x, w, b), 2))``
and its gradients (weight and bias; conv2 also its input's) without storing the convolution
output or zero-filling its gradient, which under oneDNN are the largest costs of a CPU step
at batch 64. Same function and gradient as the grouped path, ties in a pooling window included
(the first maximum takes the gradient); only the float rounding differs.

They are built on first use with the C compiler (``cc``, ``-O3 -march=native``, under
``build/native/``, keyed by the sources, the flags and this CPU's instruction sets) and used
for float32 tensors on CPUs with AVX-512 (F, BW, VL). Elsewhere, or with the environment
variable ``FMNIST_NATIVE=0``, :func:`available` is False and the engine keeps its PyTorch path;
:func:`unavailable_reason` says why.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch

from ...runtime import ROOT

SOURCES = (Path(__file__).with_name("conv1_pool_relu.c"), Path(__file__).with_name("conv2_pool_relu.c"))
HEADERS = (Path(__file__).with_name("pool_relu.h"),)
FLAGS = ("-O3", "-march=native", "-shared", "-fPIC")
NEEDED = ("avx512f", "avx512bw", "avx512vl")
SWITCH = "FMNIST_NATIVE"
_long, _ptr = ctypes.c_long, ctypes.c_void_p


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@functools.cache
def _build() -> tuple[ctypes.CDLL | None, str]:
    if os.environ.get(SWITCH, "1") == "0":
        return None, f"{SWITCH}=0"
    if platform.machine() not in ("x86_64", "AMD64"):
        return None, f"not an x86-64 CPU ({platform.machine()})"
    flags = _cpu_flags()
    missing = [f for f in NEEDED if f not in flags]
    if missing:
        return None, f"this CPU lacks {', '.join(missing)}"
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        return None, "no C compiler (cc) on PATH"
    key = hashlib.sha256(b"".join(s.read_bytes() for s in SOURCES + HEADERS) + " ".join(FLAGS).encode()
                         + " ".join(sorted(flags)).encode())
    target = ROOT / "build" / "native" / key.hexdigest()[:16] / "liblenet_native.so"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".so", delete=False) as tmp:
            done = subprocess.run([compiler, *FLAGS, *map(str, SOURCES), "-o", tmp.name], capture_output=True, text=True)
            if done.returncode != 0:
                os.unlink(tmp.name)
                reason = f"{compiler} failed on {' '.join(s.name for s in SOURCES)}: {done.stderr.strip()[:500]}"
                warnings.warn(f"the compiled conv kernels are off, the engine runs PyTorch's layers: {reason}")
                return None, reason
            os.replace(tmp.name, target)
    lib = ctypes.CDLL(str(target))
    lib.conv1_pool_relu_forward.argtypes = [_ptr, _long, _ptr, _ptr, _ptr, _ptr, _long, _long]
    lib.conv1_pool_relu_backward.argtypes = [_ptr, _long, _ptr, _ptr, _ptr, _long, _long, _ptr, _ptr]
    lib.conv2_pool_relu_forward.argtypes = [_ptr, _ptr, _ptr, _ptr, _ptr, _long, _long]
    lib.conv2_pool_relu_backward.argtypes = [_ptr, _ptr, _ptr, _ptr, _ptr, _long, _long, _ptr, _ptr, _ptr]
    return lib, ""


def available() -> bool:
    return _build()[0] is not None


def unavailable_reason() -> str:
    return _build()[1]


def applies(x: torch.Tensor) -> bool:
    """Whether the engine takes the kernel for these images (float32 on a CPU, kernel built)."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and available()


class Conv1PoolReLU(torch.autograd.Function):
    """``relu(max_pool2d(conv2d(x_k, w_k, b_k), 2))`` of K models: ``x`` [K, B, 1, 28, 28] (or
    [B, 1, 28, 28] seen by every model with ``shared``), ``w`` [K, 6, 1, 5, 5], ``b`` [K, 6];
    returns [B, K * 6, 12, 12], channels-last. No gradient for ``x``."""

    @staticmethod
    def forward(ctx, x, w, b, shared):
        lib = _build()[0]
        k = w.shape[0]
        batch = x.shape[0] if shared else x.shape[1]
        x = x.contiguous()
        w, b = w.detach().contiguous(), b.detach().contiguous()
        out = torch.empty(batch, 12, 12, k * 6)
        which = torch.empty(k, batch, 6, 12, 12, dtype=torch.uint8)
        stride = 0 if shared else batch * 784
        lib.conv1_pool_relu_forward(x.data_ptr(), stride, w.data_ptr(), b.data_ptr(), out.data_ptr(),
                                    which.data_ptr(), k, batch)
        ctx.stride = stride
        ctx.save_for_backward(x, out, which)
        return out.permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad):
        x, out, which = ctx.saved_tensors
        k, batch = which.shape[:2]
        grad = grad.contiguous(memory_format=torch.channels_last)
        dw = torch.empty(k, 6, 1, 5, 5)
        db = torch.empty(k, 6)
        _build()[0].conv1_pool_relu_backward(x.data_ptr(), ctx.stride, grad.data_ptr(), out.data_ptr(),
                                             which.data_ptr(), k, batch, dw.data_ptr(), db.data_ptr())
        return None, dw, db, None


class Conv2PoolReLU(torch.autograd.Function):
    """``relu(max_pool2d(conv2d(h_k, w_k, b_k), 2))`` of K models, flattened as fc1 reads it:
    ``h`` [B, K * 6, 12, 12] channels-last (conv1's block), ``w`` [K, 16, 6, 5, 5], ``b`` [K, 16];
    returns [K, B, 256]."""

    @staticmethod
    def forward(ctx, h, w, b):
        lib = _build()[0]
        k, batch = w.shape[0], h.shape[0]
        h = h.permute(0, 2, 3, 1).contiguous()
        w, b = w.detach(), b.detach().contiguous()
        w_by_tap = w.permute(0, 3, 4, 2, 1).contiguous()
        out = torch.empty(k, batch, 256)
        which = torch.empty(k, batch, 4, 4, 16, dtype=torch.uint8)
        lib.conv2_pool_relu_forward(h.data_ptr(), w_by_tap.data_ptr(), b.data_ptr(), out.data_ptr(), which.data_ptr(),
                                    k, batch)
        ctx.save_for_backward(h, w, out, which)
        return out

    @staticmethod
    def backward(ctx, grad):
        h, w, out, which = ctx.saved_tensors
        k, batch = out.shape[:2]
        grad = grad.contiguous()
        w8 = torch.zeros(k, 16, 5, 5, 8)
        w8[..., :6] = w.permute(0, 1, 3, 4, 2)
        dh = torch.empty(batch, 12, 12, k * 6)
        dw8 = torch.empty(k, 16, 5, 5, 8)
        db = torch.empty(k, 16)
        _build()[0].conv2_pool_relu_backward(h.data_ptr(), grad.data_ptr(), out.data_ptr(), which.data_ptr(),
                                             w8.data_ptr(), k, batch, dh.data_ptr(), dw8.data_ptr(), db.data_ptr())
        return dh.permute(0, 3, 1, 2), dw8[..., :6].permute(0, 1, 4, 2, 3), db
