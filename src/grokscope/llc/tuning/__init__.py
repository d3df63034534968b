"""The tuning layer: choosing the SGLD step size from the data (calibrate.py) and estimating with it
(auto.py). Built on the estimator; below the API."""
