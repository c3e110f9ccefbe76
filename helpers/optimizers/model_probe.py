"""What the latest closure call fed through the model: its batch size and, when asked, its output.

The engine's closure hides its batch; hooks on the model see it. ``size`` is the leading
dimension of the latest input (to count Hessian-vector products in samples). While
``keep_output`` is set, ``output`` holds the latest output z (graph attached) and
``output_grad`` the gradient dL/dz that the closure's backward passes through it (with its
own graph under ``create_graph=True``), which Gauss-Newton products need.
"""
from __future__ import annotations

import torch
from torch import nn


class ModelProbe:
    def __init__(self, model: nn.Module):
        self.size: int | None = None
        self.keep_output = False
        self.output: torch.Tensor | None = None
        self.output_grad: torch.Tensor | None = None
        self._handles = [model.register_forward_pre_hook(self._before),
                         model.register_forward_hook(self._after)]

    def _before(self, module, args):
        if args and torch.is_tensor(args[0]) and args[0].dim() > 0:
            self.size = int(args[0].shape[0])

    def _after(self, module, args, output):
        if not (self.keep_output and torch.is_tensor(output) and output.requires_grad):
            return
        self.output, self.output_grad = output, None

        def keep(grad):
            self.output_grad = grad
        output.register_hook(keep)

    def release(self) -> None:
        self.output = self.output_grad = None

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def samples_of(closure, probe: ModelProbe | None) -> int:
    """Samples behind the latest closure call: its ``batch_size``, else the probe's, else 1."""
    size = getattr(closure, "batch_size", None)
    if size is None and probe is not None:
        size = probe.size
    return int(size) if size else 1
