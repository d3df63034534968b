"""The cut-offs that turn a number into a word, each stated once and read by every module that
uses it (analyses, report, sweeps)."""

# A network has generalised ("grokked") once its test accuracy reaches this; below it no circuit
# has formed and the circuit verdict is "unclear".
GENERALISED_TEST_ACCURACY = 0.9

# Pizza / Clock verdict (REFERENCE §5). These are OUR cut-offs: Zhong et al. (2023) report the two
# metrics per model (e.g. Pizza model A: symmetricity 0.994, distance irrelevance 0.17) but state no
# thresholds; docs/circuits.md shows how verdicts move when the cut-offs move.
PIZZA_SYMMETRICITY = 0.98
PIZZA_MAX_DISTANCE_IRRELEVANCE = 0.5
CLOCK_MIN_DISTANCE_IRRELEVANCE = 0.7
