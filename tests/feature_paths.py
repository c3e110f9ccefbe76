"""Comparing a conv path's features of K stacked models with the grouped path's."""
import torch

from helpers.engine import stacked_model


def assert_features_match_grouped(flat, x, shared, features, value_tol: dict, grad_tol: dict) -> None:
    """``features(leaves, x, shared)`` (fc1's input) against the grouped convolutions
    (``stacked_model.features(..., fast=False)``): the values, then every parameter's gradient
    under one random upstream gradient (None on both sides for the fc layers)."""
    leaves = {n: t.clone().requires_grad_() for n, t in stacked_model.unstack(flat).items()}
    want = stacked_model.features(leaves, x, shared, fast=False)
    got = features(leaves, x, shared)
    torch.testing.assert_close(got, want, **value_tol)
    upstream = torch.randn_like(want)
    params = list(leaves.values())
    for a, c in zip(torch.autograd.grad((got * upstream).sum(), params, allow_unused=True),
                    torch.autograd.grad((want * upstream).sum(), params, allow_unused=True)):
        assert (a is None) == (c is None)
        if c is not None:
            torch.testing.assert_close(a, c, **grad_tol)
