"""LeNet-5's two conv blocks (conv + 2 x 2 max-pool + ReLU) for K models as Triton kernels.

The unfolded path (:mod:`~helpers.engine.unfolded_convs`) copies every 5 x 5 patch before its
matmul (conv1: 25 times the images, 0.5 GB per step at K = 128 and batch 64; conv2: 0.3 GB);
these kernels read each block's input in place and write only the pooled output. A program
takes BLOCK (image, pooled position) pairs of one model and keeps the four window positions'
sums for all output channels in registers (bias first, then the taps in order), pools them
(the first maximum of the window in row-major order wins, and a NaN wins, as in
``F.max_pool2d``) and applies the ReLU (NaN kept). It stores which window position won (int8);
the backward reads one input pixel per tap and (position, channel) at the winner to form each
program's share of the weight gradient, the shares summed in a fixed order afterwards
(deterministic, no atomics). conv1's input needs no gradient; conv2's is computed from the
routed conv-output gradient (:class:`Conv2PoolReLU`).

Layouts: conv1 takes ``[K, B, 28, 28]`` images and gives ``[K, B, 12, 12, 6]``; conv2 takes that
and gives fc1's input ``[K, B, 256]``. The engine uses them on CUDA with
``FMNIST_GPU_CONV=triton_conv1`` (conv1 only) or ``triton`` (both;
:func:`helpers.engine.unfolded_convs.features`). On a CPU they run only under Triton's
interpreter (``TRITON_INTERPRET=1`` before Triton is imported), which the tests use.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 128
INPUT_BLOCK = 64
POOLED = 144  # 12 x 12 pooled positions per image and channel


@triton.jit
def _pool_first_max(s00, s01, s10, s11):
    """The window's maximum and which of its positions (row-major) holds it: the first maximum,
    or a NaN (as ``F.max_pool2d``)."""
    best = s00
    won = tl.zeros(s00.shape, dtype=tl.int8)
    take = (s01 > best) | (s01 != s01)
    best = tl.where(take, s01, best)
    won = tl.where(take, 1, won)
    take = (s10 > best) | (s10 != s10)
    best = tl.where(take, s10, best)
    won = tl.where(take, 2, won)
    take = (s11 > best) | (s11 != s11)
    best = tl.where(take, s11, best)
    won = tl.where(take, 3, won)
    return best, won


@triton.jit
def _relu(v):
    """max(v, 0), NaN kept (as ``torch.relu``)."""
    return tl.where(v < 0, 0.0, v)


@triton.jit
def _relu_gradient(out, g):
    """The gradient through a ReLU whose output is ``out`` (as ``threshold_backward``: zero where
    out <= 0; a NaN output passes it)."""
    return tl.where(out <= 0, 0.0, g)


@triton.jit
def _conv1_forward(x_ptr, w_ptr, b_ptr, y_ptr, arg_ptr, pairs, model_stride, BLOCK: tl.constexpr):
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
    best, won = _pool_first_max(s00, s01, s10, s11)
    out = _relu(best)
    where = (k * pairs + pair)[:, None] * 6 + channel[None, :]
    keep = live[:, None] & real[None, :]
    tl.store(y_ptr + where, out, mask=keep)
    tl.store(arg_ptr + where, won.to(tl.int8), mask=keep)


@triton.jit
def _conv1_backward(x_ptr, y_ptr, arg_ptr, g_ptr, dw_ptr, db_ptr, pairs, model_stride, BLOCK: tl.constexpr):
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
    g = _relu_gradient(y, g)
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
        _conv1_forward[grid](x, w.detach().contiguous(), b.detach().contiguous(), y, won, pairs, stride, BLOCK=BLOCK)
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
        _conv1_backward[(k, blocks)](x, y, won, grad.contiguous(), dw, db, pairs, ctx.stride, BLOCK=BLOCK)
        return None, dw.sum(1)[:, :6].reshape(ctx.shape), db.sum(1)[:, :6]


@triton.jit
def _conv2_forward(h_ptr, w_ptr, b_ptr, y_ptr, arg_ptr, pairs, BLOCK: tl.constexpr):
    k = tl.program_id(0)
    pair = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    live = pair < pairs
    image, position = pair // 16, pair % 16
    corner = h_ptr + (k * (pairs // 16) + image) * 864 + (position // 4) * 144 + (position % 4) * 12
    out = tl.arange(0, 16)
    bias = tl.load(b_ptr + k * 16 + out)
    s00 = tl.zeros([BLOCK, 16], dtype=tl.float32) + bias[None, :]
    s01 = tl.zeros([BLOCK, 16], dtype=tl.float32) + bias[None, :]
    s10 = tl.zeros([BLOCK, 16], dtype=tl.float32) + bias[None, :]
    s11 = tl.zeros([BLOCK, 16], dtype=tl.float32) + bias[None, :]
    for tap in range(150):
        w = tl.load(w_ptr + k * 2400 + out * 150 + tap)[None, :]
        at = corner + ((tap % 25) // 5) * 72 + (tap % 5) * 6 + tap // 25
        s00 = s00 + tl.load(at, mask=live, other=0.0)[:, None] * w
        s01 = s01 + tl.load(at + 6, mask=live, other=0.0)[:, None] * w
        s10 = s10 + tl.load(at + 72, mask=live, other=0.0)[:, None] * w
        s11 = s11 + tl.load(at + 78, mask=live, other=0.0)[:, None] * w
    best, won = _pool_first_max(s00, s01, s10, s11)
    where = (k * (pairs // 16) + image)[:, None] * 256 + out[None, :] * 16 + position[:, None]
    tl.store(y_ptr + where, _relu(best), mask=live[:, None])
    tl.store(arg_ptr + where, won.to(tl.int8), mask=live[:, None])


@triton.jit
def _conv2_backward_weights(h_ptr, y_ptr, arg_ptr, g_ptr, routed_ptr, dw_ptr, db_ptr, pairs, BLOCK: tl.constexpr):
    k = tl.program_id(0)
    block = tl.program_id(1)
    pair = block * BLOCK + tl.arange(0, BLOCK)
    live = pair < pairs
    image, position = pair // 16, pair % 16
    out = tl.arange(0, 16)
    keep = live[:, None]
    where = (k * (pairs // 16) + image)[:, None] * 256 + out[None, :] * 16 + position[:, None]
    y = tl.load(y_ptr + where, mask=keep, other=0.0)
    g = tl.load(g_ptr + where, mask=keep, other=0.0)
    g = _relu_gradient(y, g)
    won = tl.load(arg_ptr + where, mask=keep, other=0).to(tl.int32)
    row = (position // 4)[:, None] * 2 + won // 2
    column = (position % 4)[:, None] * 2 + won % 2
    tl.store(routed_ptr + ((k * (pairs // 16) + image)[:, None] * 64 + row * 8 + column) * 16 + out[None, :], g,
             mask=keep)
    share = (k * tl.num_programs(1) + block) * 16
    tl.store(db_ptr + share + out, tl.sum(g, axis=0))
    corner = h_ptr + (k * (pairs // 16) + image)[:, None] * 864 + row * 72 + column * 6
    for tap in range(150):
        h = tl.load(corner + ((tap % 25) // 5) * 72 + (tap % 5) * 6 + tap // 25, mask=keep, other=0.0)
        tl.store(dw_ptr + (share + out) * 150 + tap, tl.sum(g * h, axis=0))


@triton.jit
def _conv2_backward_input(routed_ptr, w_ptr, dh_ptr, pixels, BLOCK: tl.constexpr):
    k = tl.program_id(0)
    pixel = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    live = pixel < pixels
    image, place = pixel // 144, pixel % 144
    row, column = place // 12, place % 12
    out = tl.arange(0, 16)
    channel = tl.arange(0, 8)
    real = channel < 6
    grad = tl.zeros([BLOCK, 8], dtype=tl.float32)
    for tap in range(25):
        i, j = tap // 5, tap % 5
        r, c = row - i, column - j
        inside = live & (r >= 0) & (r < 8) & (c >= 0) & (c < 8)
        routed = tl.load(routed_ptr + ((k * (pixels // 144) + image) * 64 + r * 8 + c)[:, None] * 16 + out[None, :],
                         mask=inside[:, None], other=0.0)
        w = tl.load(w_ptr + k * 2400 + out[:, None] * 150 + channel[None, :] * 25 + tap, mask=real[None, :],
                    other=0.0)
        grad = grad + tl.sum(routed[:, :, None] * w[None, :, :], axis=1)
    tl.store(dh_ptr + (k * pixels + pixel)[:, None] * 6 + channel[None, :], grad, mask=live[:, None] & real[None, :])


class Conv2PoolReLU(torch.autograd.Function):
    """``h``: ``[K, B, 12, 12, 6]`` float32 (conv1's block output); ``w``: ``[K, 16, 6, 5, 5]``;
    ``b``: ``[K, 16]``. Returns fc1's input ``[K, B, 256]`` in ``(channel, row, column)`` order.

    Backward: the pooled gradient (through the ReLU) goes to each window's winning position of
    a zero ``[K, B, 8, 8, 16]`` conv-output gradient; the weight and bias gradients are summed
    per program over the winners (one input pixel per tap), and the input gradient is the
    full correlation of that routed gradient with the weights, one input pixel per lane (no
    atomics: deterministic)."""

    @staticmethod
    def forward(ctx, h, w, b):
        k, n = w.shape[0], h.shape[1]
        h = h.contiguous()
        pairs = n * 16
        y = torch.empty(k, n, 256, device=h.device, dtype=h.dtype)
        won = torch.empty(k, n, 256, device=h.device, dtype=torch.int8)
        w_flat = w.detach().reshape(k, 2400).contiguous()
        _conv2_forward[(k, triton.cdiv(pairs, BLOCK))](h, w_flat, b.detach().contiguous(), y, won, pairs,
                                                       BLOCK=BLOCK)
        ctx.save_for_backward(h, w_flat, y, won)
        ctx.shape = w.shape
        return y

    @staticmethod
    def backward(ctx, grad):
        h, w_flat, y, won = ctx.saved_tensors
        k, n = y.shape[0], y.shape[1]
        pairs = n * 16
        blocks = triton.cdiv(pairs, BLOCK)
        routed = torch.zeros(k, n, 8, 8, 16, device=y.device, dtype=y.dtype)
        dw = torch.empty(k, blocks, 16, 150, device=y.device, dtype=y.dtype)
        db = torch.empty(k, blocks, 16, device=y.device, dtype=y.dtype)
        _conv2_backward_weights[(k, blocks)](h, y, won, grad.contiguous(), routed, dw, db, pairs, BLOCK=BLOCK)
        dh = torch.empty_like(h)
        pixels = n * 144
        _conv2_backward_input[(k, triton.cdiv(pixels, INPUT_BLOCK))](routed, w_flat, dh, pixels, BLOCK=INPUT_BLOCK)
        return dh, dw.sum(1).reshape(ctx.shape), db.sum(1)
