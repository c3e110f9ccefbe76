"""The engine: run configurations, the training loop (any K) and learning-rate schedules.

``ENGINE_VERSION`` changes whenever a change of the engine moves recorded numbers (part of
every run id through the study's versions). 2: one loop for every K (stacked rules at K = 1
too), the oracle budget enforced within a step, schedules planned over the budget.
"""
ENGINE_VERSION = 2
