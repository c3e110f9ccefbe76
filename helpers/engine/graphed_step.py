"""One training step captured once and replayed: CUDA graphs for the stacked engine on a GPU.

On a GPU a LeNet-5 step of a few models costs mostly its kernel launches and Python, not the
arithmetic (README table (f): on an H200, 782 steps take 1.8 s at K = 1 and 2.7 s at K = 32).
A CUDA graph replays a captured step's kernels with one launch. :class:`GraphedStep` runs ``fn(*inputs)`` eagerly for the
first ``warmup`` calls with each ``key``, then captures it once for that key and from then on
copies each call's inputs into the capture's static inputs and replays it.

Contract on ``fn`` (what a capture freezes): every tensor it reads that outlives the call is
read from the same object, every tensor it changes is changed in place, and every Python value
it uses is fixed for a key (a value that changes between steps, such as the scheduled learning
rate, enters as a tensor written in place before the call); no host synchronisation
(``.item()``, ``bool(tensor)``, data-dependent shapes). Rules that meet it say so with
``StackedRule.capturable``; ``tests/cpu_graph.py`` checks them on a CPU by recording and
replaying the step's operations.

On by default nowhere yet: set ``FMNIST_CUDA_GRAPHS=1`` (CUDA devices only) until a GPU run
has compared it with the eager step (``tools/device_speed.sh``).
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import torch

SWITCH = "FMNIST_CUDA_GRAPHS"
WARMUP_CALLS = 3


def wanted(device: torch.device) -> bool:
    """Whether the engine graphs capturable steps on ``device`` (CUDA, with ``FMNIST_CUDA_GRAPHS=1``)."""
    return device.type == "cuda" and os.environ.get(SWITCH, "0") == "1"


class CudaGraphs:
    """The CUDA backend: warm-up calls on a side stream, captures by :class:`torch.cuda.CUDAGraph`."""
    warmup_calls = WARMUP_CALLS

    def __init__(self):
        self.side = torch.cuda.Stream()

    @contextmanager
    def warmup(self):
        self.side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side):
            yield
        torch.cuda.current_stream().wait_stream(self.side)

    def capture(self, fn):
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = fn()
        return _Replay(graph, out)


class _Replay:
    def __init__(self, graph, out):
        self.graph, self.out = graph, out

    def replay(self):
        self.graph.replay()
        return self.out


class GraphedStep:
    """``step(key, inputs)``: ``fn(*inputs)``, eager for a key's first ``warmup`` calls, then
    replayed from one capture per key (see the module docstring for the contract on ``fn``).
    ``warmup``: eager calls per key before its capture (default: the backend's ``warmup_calls``)."""

    def __init__(self, fn, backend, warmup: int | None = None):
        self.fn, self.backend = fn, backend
        self.warmup = backend.warmup_calls if warmup is None else warmup
        self.calls: dict = {}
        self.graphs: dict = {}

    def __call__(self, key, inputs: tuple[torch.Tensor, ...]):
        entry = self.graphs.get(key)
        if entry is None:
            self.calls[key] = self.calls.get(key, 0) + 1
            if self.calls[key] <= self.warmup:
                with self.backend.warmup():
                    return self.fn(*inputs)
            static = tuple(t.clone() for t in inputs)
            entry = self.graphs[key] = (self.backend.capture(lambda: self.fn(*static)), static)
        captured, static = entry
        for s, t in zip(static, inputs):
            s.copy_(t)
        return captured.replay()
