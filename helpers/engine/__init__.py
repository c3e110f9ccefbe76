"""The engine: run configurations, the training loop(s) and learning-rate schedules."""
