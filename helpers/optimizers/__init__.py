"""Optimizers: torch.optim's and our own (one file per method), all in one registry."""
from .registry import FAMILIES, OptimizerSpec, build_optimizer, get_spec, names, registry

__all__ = ["FAMILIES", "OptimizerSpec", "build_optimizer", "get_spec", "names", "registry"]
