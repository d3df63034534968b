"""Per-sample posterior statistics (REFERENCE §11): loss gain, loss kernel, Bayesian influence and
susceptibilities, from the draws of the LLC estimator's chains."""

from .estimate import PosteriorCheckpoint, PosteriorResult, posterior_statistics

__all__ = ["PosteriorCheckpoint", "PosteriorResult", "posterior_statistics"]
