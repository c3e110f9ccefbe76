"""Registry entries for the optimizers torch.optim already provides."""
from __future__ import annotations

import torch

from .registry import OptimizerSpec
from .rules import AdamRule, AdamWRule, NAdamRule, RAdamRule, SGDRule

LR = (1e-4, 1.0, "log")
ADAPTIVE_LR = (1e-4, 3e-2, "log")
WD = (1e-6, 1e-2, "log")


def _sgd(model, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov,
                           weight_decay=weight_decay)


def _torch(cls):
    def factory(model, **hp):
        return cls(model.parameters(), **hp)
    return factory


def _lbfgs(model, lr, history_size, max_iter, weight_decay):
    from .lbfgs_l2 import LBFGSWithDecay
    return LBFGSWithDecay(model.parameters(), lr=lr, history_size=history_size, max_iter=max_iter,
                          line_search_fn="strong_wolfe", weight_decay=weight_decay)


SPECS = [
    OptimizerSpec("sgd", "sgd", _sgd, {"lr": 0.05, "weight_decay": 0.0},
                  {"lr": LR}, "mini-batch SGD: x <- x - lr g_B", elementwise=True, rule=SGDRule),
    OptimizerSpec("sgd_basic", "sgd", _sgd, {"lr": 0.005, "weight_decay": 0.0},
                  {"lr": (1e-4, 1e-1, "log")}, "basic SGD, one sample per step", batch_size=1,
                  elementwise=True, max_epochs=1, rule=SGDRule),
    OptimizerSpec("gd", "sgd", _sgd, {"lr": 0.5, "weight_decay": 0.0},
                  {"lr": (1e-2, 3.0, "log")}, "full-batch gradient descent", batch_size="full",
                  elementwise=True, decays=False, rule=SGDRule),
    OptimizerSpec("heavy_ball", "momentum", _sgd,
                  {"lr": 0.02, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0},
                  {"lr": LR, "momentum": [0.8, 0.9, 0.95]},
                  "Polyak heavy ball: v <- mu v + g; x <- x - lr v", elementwise=True, rule=SGDRule),
    OptimizerSpec("nesterov", "momentum", _sgd,
                  {"lr": 0.02, "momentum": 0.9, "nesterov": True, "weight_decay": 0.0},
                  {"lr": LR, "momentum": [0.8, 0.9, 0.95]},
                  "Nesterov: v <- mu v + g; x <- x - lr (g + mu v)", elementwise=True, rule=SGDRule),
    OptimizerSpec("adam", "momentum", _torch(torch.optim.Adam),
                  {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
                  {"lr": ADAPTIVE_LR}, "Adam (Kingma & Ba 2015), L2 coupled", elementwise=True,
                  rule=AdamRule),
    OptimizerSpec("adamw", "momentum", _torch(torch.optim.AdamW),
                  {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
                  {"lr": ADAPTIVE_LR}, "AdamW, decoupled weight decay (Loshchilov & Hutter 2019)",
                  elementwise=True, rule=AdamWRule),
    OptimizerSpec("nadam", "momentum", _torch(torch.optim.NAdam),
                  {"lr": 2e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
                  {"lr": ADAPTIVE_LR}, "NAdam: Adam with Nesterov momentum (Dozat 2016)",
                  elementwise=True, rule=NAdamRule),
    OptimizerSpec("radam", "momentum", _torch(torch.optim.RAdam),
                  {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
                  {"lr": ADAPTIVE_LR}, "RAdam: variance-rectified Adam (Liu et al. 2020)",
                  elementwise=True, rule=RAdamRule),
    OptimizerSpec("lbfgs", "second_order", _lbfgs,
                  {"lr": 1.0, "history_size": 20, "max_iter": 5, "weight_decay": 0.0},
                  {"lr": (0.1, 1.0, "log"), "history_size": [10, 20, 50]},
                  "L-BFGS with strong-Wolfe line search on large fixed batches",
                  batch_size=4096, decays=False, version=2),
]
