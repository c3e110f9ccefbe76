"""LeNet-5's first conv block (conv1 + 2 x 2 max-pool + ReLU) for K models as one Triton kernel.

The unfolded path copies every 5 x 5 patch of every image (25 times the images: 0.5 GB per step
at K = 128, batch 64) before its matmul; this kernel reads the images only and writes the
pooled output. Each program takes BLOCK (image, pooled position) pairs of one model and keeps
the four window positions' sums for the six channels in registers (bias first, then the 25
taps in order), pools them (the first maximum of the window in row-major order wins, and a NaN
wins, as in ``F.max_pool2d``) and applies the ReLU (NaN kept). It stores which window position
won (int8), so the backward kernel reads one input pixel per tap and (position, channel) to
form each program's share of the weight gradient; the shares are summed in a fixed order
(deterministic). conv1's input needs no gradient.

Output layout ``[K, B, 12, 12, 6]``, what :func:`helpers.engine.unfolded_convs.conv_pool_relu`
takes for conv2. The engine uses it on CUDA with ``FMNIST_GPU_CONV=triton``
(:func:`helpers.engine.unfolded_convs.features`). On a CPU it runs only under Triton's
interpreter (``TRITON_INTERPRET=1`` before this module is imported), which the tests use.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 128
POOLED = 144  # 12 x 12 pooled positions per image and channel


@triton.jit
def _forward(x_ptr, w_ptr, b_ptr, y_ptr, arg_ptr, pairs, model_stride, BLOCK: tl.constexpr):
    k = tl.program_id(0)
    pair = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    live = pair < pairs
    image, position = pair // 144, pair % 144
    corner = x_ptr + k * model_stride + image * 784 + (position // 12) * 56 + (position % 12) * 2
    channel = tl.arange(0, 8)
    real = channel < 6
    bias = tl.load(b_ptr + k * 6 + channel, mask=real, other=0.0)
    s00 = tl.zeros([BLOCK, 8], dtype=tl.float32) + bias[None, :]
    s01 = tl.zeros([BLOCK, 8], dtype=tl.float32) + bias[None, :]
    s10 = tl.zeros([BLOCK, 8], dtype=tl.float32) + bias[None, :]
    s11 = tl.zeros([BLOCK, 8], dtype=tl.float32) + bias[None, :]
    for tap in tl.static_range(25):
        w = tl.load(w_ptr + k * 150 + channel * 25 + tap, mask=real, other=0.0)[None, :]
        at = corner + (tap // 5) * 28 + tap % 5
        s00 = s00 + tl.load(at, mask=live, other=0.0)[:, None] * w
        s01 = s01 + tl.load(at + 1, mask=live, other=0.0)[:, None] * w
        s10 = s10 + tl.load(at + 28, mask=live, other=0.0)[:, None] * w
        s11 = s11 + tl.load(at + 29, mask=live, other=0.0)[:, None] * w
    best = s00
    won = tl.zeros([BLOCK, 8], dtype=tl.int8)
    take = (s01 > best) | (s01 != s01)
    best = tl.where(take, s01, best)
    won = tl.where(take, 1, won)
    take = (s10 > best) | (s10 != s10)
    best = tl.where(take, s10, best)
    won = tl.where(take, 2, won)
    take = (s11 > best) | (s11 != s11)
    best = tl.where(take, s11, best)
    won = tl.where(take, 3, won)
    out = tl.where(best < 0, 0.0, best)
    where = (k * pairs + pair)[:, None] * 6 + channel[None, :]
    keep = live[:, None] & real[None, :]
    tl.store(y_ptr + where, out, mask=keep)
    tl.store(arg_ptr + where, won.to(tl.int8), mask=keep)


@triton.jit
def _backward(x_ptr, y_ptr, arg_ptr, g_ptr, dw_ptr, db_ptr, pairs, model_stride, BLOCK: tl.constexpr):
    k = tl.program_id(0)
    block = tl.program_id(1)
    pair = block * BLOCK + tl.arange(0, BLOCK)
    live = pair < pairs
    image, position = pair // 144, pair % 144
    channel = tl.arange(0, 8)
    keep = live[:, None] & (channel < 6)[None, :]
    where = (k * pairs + pair)[:, None] * 6 + channel[None, :]
    y = tl.load(y_ptr + where, mask=keep, other=0.0)
    g = tl.load(g_ptr + where, mask=keep, other=0.0)
    g = tl.where(y <= 0, 0.0, g)
    won = tl.load(arg_ptr + where, mask=keep, other=0).to(tl.int32)
    corner = (x_ptr + k * model_stride + image * 784 + (position // 12) * 56 + (position % 12) * 2)[:, None] \
        + (won // 2) * 28 + won % 2
    share = (k * tl.num_programs(1) + block) * 8
    tl.store(db_ptr + share + channel, tl.sum(g, axis=0))
    for tap in tl.static_range(25):
        x = tl.load(corner + (tap // 5) * 28 + tap % 5, mask=keep, other=0.0)
        tl.store(dw_ptr + (share + channel) * 25 + tap, tl.sum(g * x, axis=0))


class Conv1PoolReLU(torch.autograd.Function):
    """``x``: ``[K, B, 28, 28]`` (or ``[1, B, 28, 28]``, the same images for every model), float32;
    ``w``: ``[K, 6, 1, 5, 5]``; ``b``: ``[K, 6]``. Returns ``[K, B, 12, 12, 6]``."""

    @staticmethod
    def forward(ctx, x, w, b):
        k, n = w.shape[0], x.shape[1]
        x = x.contiguous()
        pairs = n * POOLED
        y = torch.empty(k, n, 12, 12, 6, device=x.device, dtype=x.dtype)
        won = torch.empty(k, n, 12, 12, 6, device=x.device, dtype=torch.int8)
        stride = 0 if x.shape[0] == 1 and k > 1 else n * 784
        grid = (k, triton.cdiv(pairs, BLOCK))
        _forward[grid](x, w.detach().contiguous(), b.detach().contiguous(), y, won, pairs, stride, BLOCK=BLOCK)
        ctx.save_for_backward(x, y, won)
        ctx.stride, ctx.shape = stride, w.shape
        return y

    @staticmethod
    def backward(ctx, grad):
        x, y, won = ctx.saved_tensors
        k, n = y.shape[0], y.shape[1]
        pairs = n * POOLED
        blocks = triton.cdiv(pairs, BLOCK)
        dw = torch.empty(k, blocks, 8, 25, device=y.device, dtype=y.dtype)
        db = torch.empty(k, blocks, 8, device=y.device, dtype=y.dtype)
        _backward[(k, blocks)](x, y, won, grad.contiguous(), dw, db, pairs, ctx.stride, BLOCK=BLOCK)
        return None, dw.sum(1)[:, :6].reshape(ctx.shape), db.sum(1)[:, :6]
