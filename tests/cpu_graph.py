"""A CPU stand-in for CUDA graphs, with the semantics the engine's graphed step relies on.

``capture(fn)`` records the aten operations of one call of ``fn`` (the backward pass's too)
and then undoes its effects: every storage the call wrote to that existed before it is
restored, as a CUDA capture runs nothing. ``replay()`` runs the recorded operations again on
the same tensors: tensors from before the capture are read and written where they are (their
current values), tensors made during the capture are made anew, and Python values (scalars,
shapes, branches taken) stay as they were at the capture. The captured outputs are
overwritten with the replay's, as a CUDA graph's static outputs are. Operations a CUDA capture
forbids (host synchronisation, data-dependent shapes, tensors from Python data) raise
:class:`CaptureError`.

So a step that rebinds a state tensor, reads a Python value that changes between steps, or
syncs with the host gives different results under replay than run eagerly, here as on a GPU.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves, tree_map

from helpers.engine.graphed_step import WARMUP_CALLS

FORBIDDEN = {"aten::_local_scalar_dense", "aten::is_nonzero", "aten::nonzero", "aten::masked_select",
             "aten::lift_fresh", "aten::unique_dim", "aten::_unique2"}


class CaptureError(RuntimeError):
    """An operation that a CUDA graph capture does not allow."""


class _Recorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: list[tuple] = []
        self.saved: dict[int, tuple] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func._schema.name in FORBIDDEN:
            raise CaptureError(f"{func._schema.name} synchronises with the host or has a data-dependent shape")
        for i, argument in enumerate(func._schema.arguments):
            if argument.alias_info is not None and argument.alias_info.is_write:
                value = args[i] if i < len(args) else kwargs.get(argument.name)
                for t in tree_leaves(value):
                    if isinstance(t, torch.Tensor):
                        storage = t.untyped_storage()
                        self.saved.setdefault(storage.data_ptr(), (storage, storage.clone()))
        out = func(*args, **kwargs)
        self.ops.append((func, args, kwargs, out))
        return out


class CpuGraph:
    """One captured call (see the module docstring)."""

    def __init__(self, fn, backend=None):
        self.backend = backend
        recorder = _Recorder()
        with recorder:
            self.out = fn()
        self.ops = recorder.ops
        for storage, before in recorder.saved.values():
            storage.copy_(before)

    @torch.no_grad()
    def replay(self):
        if self.backend is not None:
            self.backend.replays += 1
        now: dict[int, torch.Tensor] = {}

        def current(x):
            return now.get(id(x), x) if isinstance(x, torch.Tensor) else x

        for func, args, kwargs, out in self.ops:
            result = func(*tree_map(current, args), **tree_map(current, kwargs))
            for old, new in zip(tree_leaves(out), tree_leaves(result)):
                if isinstance(old, torch.Tensor):
                    now[id(old)] = new
        for old in tree_leaves(self.out):
            if isinstance(old, torch.Tensor) and id(old) in now:
                old.copy_(now[id(old)])
        return self.out


class CpuGraphs:
    """The backend :class:`helpers.engine.graphed_step.GraphedStep` takes, on a CPU; counts
    captures and replays. ``warmup_calls``: eager calls of a step before its capture."""

    def __init__(self, warmup_calls: int = WARMUP_CALLS):
        self.captures = self.replays = 0
        self.warmup_calls = warmup_calls

    def warmup(self):
        return nullcontext()

    def capture(self, fn):
        self.captures += 1
        return CpuGraph(fn, self)
