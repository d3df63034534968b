"""The diagnostics layer: convergence statistics (R-hat, ESS), whether chains have settled, the
status of an estimate and its summary. Draws on the sampling layer's records only; imports no torch
where a figure needs just the status (health.py)."""
