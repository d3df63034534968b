"""The validation layer: models with a known learning coefficient (truth.py) and the suites that
compare the estimator with them (suite.py)."""
