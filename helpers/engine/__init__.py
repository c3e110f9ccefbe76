"""The engine: run configurations, the training loop (any K) and learning-rate schedules.

``ENGINE_VERSION`` changes whenever a change of the engine moves recorded numbers (part of
every run id through the study's versions). 2: one loop for every K (stacked rules at K = 1
too), the oracle budget enforced within a step, schedules planned over the budget. Rounding-level
changes of the forward and backward (grouped convolutions for K models, the CPU layers of
``one_model_cpu`` and ``native``) compute the same function and do not change it: a model's
records already differ by rounding between K = 1 and K > 1, and between CPUs.
"""
ENGINE_VERSION = 2
