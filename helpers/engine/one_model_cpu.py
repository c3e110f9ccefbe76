"""One LeNet-5 on a CPU (K = 1): the layers whose oneDNN kernels are slowest at this size, rewritten.

* conv1 + max_pool2d(2) + ReLU (:class:`Conv1PoolReLU`), where the compiled kernel of
  :mod:`helpers.engine.native` does not apply (float64; no AVX-512 or C compiler): each 2 x 2
  pooling window's four positions are four small matmul outputs over the images' even/odd
  row x column phases, so the pooling is an elementwise max and the backward needs no
  zero-filled 24 x 24 gradient. oneDNN's 6-channel pooling and conv1 weight gradient are the two
  slowest kernels of a K = 1 step.
* conv2 (:class:`Conv2d`): oneDNN's forward and weight gradient on channels-last tensors, its
  input gradient as a transposed convolution on contiguous (NCHW) tensors, each layout's
  faster kernel.

Same function and gradient as ``relu(max_pool2d(conv2d(x, w, b), 2))`` and ``conv2d``, ties in a
pooling window included (the first maximum in max_pool2d's scan order takes the gradient);
only the float rounding differs (conv1's bias is added after the max: one add per window).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SIDE = 14  # a 28 x 28 image as four 14 x 14 phase images
PHASE = SIDE * SIDE
PAD = 2 * SIDE + 4  # zeros past the last phase image: every shifted operand stays in range
WINDOW = ((0, 0), (0, 1), (1, 0), (1, 1))  # a pooling window's positions, in max_pool2d's scan order


def _shifted_phases(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``rows[s, 2c + t, P]`` = phase (s, t) of the images (``x[b, 2r + s, 2c' + t]`` flattened over
    (b, r, c')) at flat position P + c, for c in 0..2; and N = B * 196, the output positions."""
    b = x.numel() // 784
    n = b * PHASE
    phases = torch.empty(2, 2, n + PAD, dtype=x.dtype, device=x.device)
    phases[..., n:].zero_()
    phases[..., :n].view(2, 2, b, SIDE, SIDE).copy_(x.reshape(b, SIDE, 2, SIDE, 2).permute(2, 4, 0, 1, 3))
    length, stride = n + 2 * SIDE, n + PAD
    rows = torch.empty(2, 6, length, dtype=x.dtype, device=x.device)
    rows.view(2, 3, 2, length).copy_(phases.as_strided((2, 3, 2, length), (2 * stride, 1, stride, 1)))
    return rows, n


def _operands(rows: torch.Tensor, n: int) -> list[list[torch.Tensor]]:
    """``[q][i]``: the [5, N] input of window position q and kernel row i (output pixel (2r + pi,
    2c + pj) reads row 2r + pi + i, columns 2c + pj .. 2c + pj + 4)."""
    length = rows.shape[-1]
    return [[rows.as_strided((5, n), (length, 1), ((pi + i) % 2 * 6 + pj) * length + SIDE * ((pi + i) // 2))
             for i in range(5)] for pi, pj in WINDOW]


class Conv1PoolReLU(torch.autograd.Function):
    """``relu(max_pool2d(conv2d(x, w, bias), 2))`` for images ``x`` [B, 1, 28, 28] and
    ``w`` [6, 5, 5]: [B, 6, 12, 12], channels-last. No gradient for ``x``."""

    @staticmethod
    def forward(ctx, x, w, bias):
        b = x.numel() // 784
        rows, n = _shifted_phases(x)
        operands = _operands(rows, n)
        kernel_rows = w.unbind(1)
        z = torch.empty(4, 6, n, dtype=x.dtype, device=x.device)
        for q, zq in enumerate(z.unbind(0)):
            torch.mm(kernel_rows[0], operands[q][0], out=zq)
            for i in range(1, 5):
                zq.addmm_(kernel_rows[i], operands[q][i])
        top = torch.maximum(torch.maximum(z[0], z[1]), torch.maximum(z[2], z[3]))
        biased = top + bias.reshape(6, 1)  # the bias is the same at a window's four positions
        out = torch.empty(b, 12, 12, 6, dtype=x.dtype, device=x.device)
        torch.clamp_min(biased.view(6, b, SIDE, SIDE)[..., :12, :12], 0, out=out.permute(3, 0, 1, 2))
        ctx.operands = operands
        ctx.save_for_backward(z, top, biased)
        return out.permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad):
        z, top, biased = ctx.saved_tensors
        operands = ctx.operands
        n = top.shape[1]
        crop = (..., slice(0, 12), slice(0, 12))
        g = torch.zeros_like(top)
        torch.ops.aten.threshold_backward.grad_input(
            grad.transpose(0, 1), biased.view(6, n // PHASE, SIDE, SIDE)[crop], 0,
            grad_input=g.view(6, n // PHASE, SIDE, SIDE)[crop])
        dw = torch.empty(5, 6, 5, dtype=top.dtype, device=top.device)
        db = g.sum(1)
        for q in range(4):
            if q < 3:  # the first maximum takes the gradient; the rest goes on to the next position
                rest = torch.ops.aten.threshold_backward(g, top - z[q], 0)
                here, g = g - rest, rest
            else:
                here = g
            for i, part in enumerate(dw.unbind(0)):
                if q == 0:
                    torch.mm(here, operands[q][i].t(), out=part)
                else:
                    part.addmm_(here, operands[q][i].t())
        return None, dw.transpose(0, 1), db


class Conv2d(torch.autograd.Function):
    """``conv2d(h, w, bias)`` of a channels-last ``h``; the input gradient by ``conv_transpose2d``
    on NCHW tensors, the weight and bias gradients by oneDNN on channels-last ones."""

    @staticmethod
    def forward(ctx, h, w, bias):
        ctx.save_for_backward(h, w)
        return F.conv2d(h, w, bias)

    @staticmethod
    def backward(ctx, grad):
        h, w = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last)
        dh = F.conv_transpose2d(grad.contiguous(), w) if ctx.needs_input_grad[0] else None
        _, dw, db = torch.ops.aten.convolution_backward(grad, h, w, [w.shape[0]], [1, 1], [0, 0], [1, 1], False,
                                                        [0, 0], 1, [False, True, True])
        return dh, dw, db
