"""The cut-offs that turn a number into a word, each stated once and read by every module that
uses it (analyses, report, sweeps)."""

import math

# A network has generalised ("grokked") once its test accuracy reaches this; below it no circuit
# has formed and the circuit verdict is "unclear".
GENERALISED_TEST_ACCURACY = 0.9

# Pizza / Clock verdict (REFERENCE §5). These are OUR cut-offs: Zhong et al. (2023) report the two
# metrics per model (e.g. Pizza model A: symmetricity 0.994, distance irrelevance 0.17) but state no
# thresholds; docs/circuits.md shows how verdicts move when the cut-offs move.
PIZZA_SYMMETRICITY = 0.98
PIZZA_MAX_DISTANCE_IRRELEVANCE = 0.5
CLOCK_MIN_DISTANCE_IRRELEVANCE = 0.7
# A Clock's logits are a function of a + b − c alone (Q = cos(w(a + b − c)): sum dependence 1); a
# Pizza's ideal logits |cos(w(a − b)/2)| cos(w(a + b − c)) read (2/π)²/(1/2) = 0.81, a network at
# initialisation ~0. A Clock verdict needs at least this (docs/circuits.md, "The MLP family").
CLOCK_MIN_SUM_DEPENDENCE = 0.9
# A run's verdict is the one its last this-many checkpoints agree on ("unclear" otherwise): one
# checkpoint can sit on a cut-off, a stretch of training cannot flip back and forth and still count.
VERDICT_STRETCH = 3

# Health of an LLC estimate (llc/diagnostics/health.py), read from the chains alone, without the true λ.
# Rank-normalised split R-hat below this (Vehtari et al. 2021 recommend 1.01; SGLD loss traces of
# a few chains are short and autocorrelated, so we flag at the looser value their §4 also discusses).
R_HAT_MAX = 1.05
# Bulk and tail effective sample sizes, summed over chains, at least this (Vehtari et al. §4: 400,
# i.e. 100 per chain for four chains). On the deep linear networks, chains too slow to reach
# equilibrium showed a plateau of λ̂ across small ε with ESS near 200; equilibrated ones had 400+.
ESS_MIN = 400
# Mean MALA acceptance of the moves (each scored with one minibatch's potential at both ends) at
# least this. REFERENCE §2: near 0.9 is healthy. Below it the step is too large for the potential's
# curvature and λ̂ reads high (deep linear networks: 0.77 → +15%, 0.60 → +111%). Acceptance near 1
# says nothing about settling: it came with errors of −20% and −35% on chains that had not settled
# (docs/validation.md), which the settling checks below catch.
MALA_MIN_ACCEPTANCE = 0.8
# Settling (llc/diagnostics/settling.py): λ̂ of the second half of the kept draws against the first half, and λ̂
# of the whole run against the same chains' run of half the steps, may differ by at most this
# fraction of λ̂ (or by two standard errors of the paired differences). Half the 10% a user should
# be able to trust, so that an estimate still moving by this much is not called settled.
SETTLE_TOLERANCE = 0.05
# The Monte-Carlo standard error of λ̂ (from the batch means) at most this fraction of λ̂: two
# standard errors then stay within the 10% above. Larger: the estimate is "imprecise".
MCSE_MAX_FRACTION = 0.05
# More than this fraction of the post-burn-in draws below L_n(w*) means w* is not a local minimum
# of the sampled loss. Minibatch noise alone puts many draws below it at a true minimum (28-39% on
# the regression cases of the validation suite), but fewer than half while E[L] > L_n(w*).
BELOW_INIT_MAX_FRACTION = 0.5
# λ̂ at neighbouring step sizes (a factor 2 apart) counts as flat unless it changes by more than this
# fraction AND by more than two standard errors of the paired per-chain differences (chain c of
# every cell draws the same minibatches and noise, so the pairs share their noise). With a bias
# linear in ε, a flat pair bounds the larger ε's bias near twice this.
FLAT_TOLERANCE = 0.05

# λ̂ is "bounded by the localisation" when its elasticity in γ, d ln λ̂ / d ln γ (read from the
# draws, llc/diagnostics/localisation.py), lies below minus this by more than two standard errors:
# a 10% stronger γ would lower λ̂ by more than 1%. Developed on the normal crossings of the first
# two held-out families (data seed 0), where the exact target at n = 1000 lies 11-43% below λ with
# elasticities of −0.1 to −0.27 and within 5% of λ at −0.05 and above; deep linear networks at
# n = 1e5 read about −0.001. Judged on crossings never seen (docs/validation.md).
GAMMA_ELASTICITY_MAX = 0.1

# The quadratic floor of λ̂ (llc/diagnostics/quadratic.py) is computed for models with at most this
# many sampled parameters: one Gauss-Newton matrix of P² entries and its eigenvalues (a few seconds
# at P = 500 and n = 1e5 on a 2-core CPU). λ̂ below the floor by more than SETTLE_TOLERANCE of it and
# two Monte-Carlo errors is "not settled" (the same test as the halves and the doubling).
QUADRATIC_FLOOR_MAX_PARAMS = 2000

# The probe of an estimate at its quadratic floor (llc/diagnostics/floor_probe.py): preconditioned
# chains at FLOOR_PROBE_EPSILONS (the step of the flat directions, set on deep linear networks with
# nβ = FLOOR_PROBE_NBETA and scaled by FLOOR_PROBE_NBETA/nβ elsewhere), each of FLOOR_PROBE_CHAINS
# chains and FLOOR_PROBE_STEPS steps, stiff modes' steps capped at FLOOR_PROBE_ETA in their own
# units; λ̂ read at the largest ε with MALA acceptance ≥ FLOOR_PROBE_MALA. Developed on seven seen
# networks, judged on 13 held out (docs/validation.md, "The quadratic floor").
FLOOR_PROBE_EPSILONS = (4.2e-7, 8.3e-7, 1.67e-6, 3.3e-6)
FLOOR_PROBE_NBETA = 1e5 / math.log(1e5)
FLOOR_PROBE_CHAINS = 8
FLOOR_PROBE_STEPS = 32_000
FLOOR_PROBE_ETA = 0.005
FLOOR_PROBE_MALA = 0.95
# Where plain SGLD passes no step size, the same grid on preconditioned chains (llc/tuning/preconditioned.py):
# its first block of steps and its cap (the doubling of plain SGLD's blocks, from the floor probe's
# length halved: its chains at the band's ε crossed the floor within 32,000 steps).
PRECONDITIONED_STEPS = 16_000
PRECONDITIONED_MAX_STEPS = 128_000

# A direction of a deep linear teacher's product (singular value σ) is resolved by n examples when
# dropping it raises nβ·L_n by at least this, nβ·σ²·E[x²]/d_out; where it is of order 1 or less
# the direction cannot be told from zero, and the finite-n target is λ of the lower rank. Fixed from
# the posterior's scale before it was computed for any network but one (docs/validation.md).
RESOLVED_ENERGY = 10.0

# Developmental stages (analysis/stages.py): a turning point of the LLC or test-loss curve counts
# when the curve moves away from it by at least this fraction of the curve's range, and, for λ̂, by
# more than this many standard errors of the difference of two estimates.
STAGE_MIN_SWING_FRACTION = 0.05
STAGE_NOISE_SE = 3.0
# ... and a plateau of λ̂ is at least this many checkpoints whose smoothed values stay within half that swing
STAGE_PLATEAU_POINTS = 3
