"""nbval collects the notebooks here (pyproject.toml: testpaths, ``--nbval-lax``), except the
family notebooks: each of them is executed once, by tests/test_notebook_numbers_<notebook>.py, which
compares its ``# NBVAL_CHECK_OUTPUT`` cells as nbval does (the sanitize rules of sanitize.cfg) and
checks its trained numbers (tests/notebook_numbers.py). nbval still runs 00_starter_baseline,
50_sparsity and 90_summary."""

FAMILY_NOTEBOOKS = ("10_sgd", "20_momentum", "30_noise_reduction", "40_second_order")
collect_ignore = [f"{name}.ipynb" for name in FAMILY_NOTEBOOKS]
