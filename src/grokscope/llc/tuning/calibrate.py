"""Choosing the SGLD step size from the data, without the true λ: a batched grid of cells, each
estimated until its chains settle (llc/estimator.py), and one documented rule that picks a cell by
the evidence of step-size bias alone (docs/validation.md).

The rule is RULE below; results carry it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ...errors import ConfigError
from ...run import Run
from ...text import number
from ...thresholds import FLAT_TOLERANCE, MALA_MIN_ACCEPTANCE, PRECONDITIONED_STEPS
from ..config import BUDGET_FACTOR, SGLDConfig
from ..diagnostics.health import BOUNDED, LEFT, shows_bias
from ..estimator import sample_llc
from ..result import CheckpointLLC
from ..runs.checkpoints import select_checkpoints
from ..sampling.objective import LossFn
from . import preconditioned

BRACKET_EPSILONS = tuple(10.0**k for k in range(-9, 0))
BRACKET_STEPS, BRACKET_CHAINS = 500, 4  # the bracketing chains (MALA measured on every 5th move after burn-in)
GRID_OFFSETS = tuple(2.0**j for j in range(-3, 4))  # short chains misjudge ε₀ both ways (sgld over, RMSprop under)
RULE = """\
1. Bracket (when no ε grid is given): short chains (500 steps, continued while unsettled to at
   most 8 × 500, whatever the estimate's cap; at most 4 chains) at ε = 1e-9, 1e-8, ..., 1e-1 in one
   batched run; ε₀ is the last ε, counting up, before the first whose chains diverge or whose MALA
   acceptance falls below MALA_MIN_ACCEPTANCE.
2. Grid: ε₀·2^j for j = −3..3 with the estimate's own chains, in one batched run; each cell's
   chains continue until they settle or reach the step cap. A cell is biased when its chains
   diverge or do not move, its MALA acceptance falls below MALA_MIN_ACCEPTANCE, w* is not a
   minimum or its λ̂ is bounded by the localisation (then so is every cell at its nβ and γ: the
   elasticity is the posterior's); it is settled when its status is ok or imprecise
   (llc/diagnostics/health.py), unless another unbiased cell reads higher (as in step 3) and shows
   that the chains need more time ε × steps than it ran: it had not settled, or settled only
   imprecisely, after at least as long a time, or it settled only after its first block, and half
   its time is longer; then the cell "settled too soon".
   Too few draws never disqualify a step size: more steps cure that, and the cell got them.
3. Flatness, of settled cells: a settled cell is "not flat" when its λ̂ differs from the λ̂ of the
   next smaller unbiased cell by more than FLAT_TOLERANCE and by more than two standard errors of
   the paired per-chain differences. So a cell settled at the smallest ε is checked against the
   next smaller unbiased cell whose chains reached their cap unsettled (smaller steps settle more
   slowly), else it is "not checked".
4. Choose the largest ε of the first run, counting up, of unbiased cells whose λ̂ stays flat from
   cell to cell and against the run's first cell, made of settled cells except that its first may
   be a cell unsettled at its cap (a reference for flatness only); the run needs two cells. A jump
   ends a run and the search goes on from the cell after it. A run whose largest cell settled
   only imprecisely (few effective draws: slow to explore, as in step 2) gives way to the next
   run, counting up, whose largest cell is ok; without one it stands. When no run exists there is no
   estimate: the choice is None, with the reason and the range of λ̂ over the settled unbiased
   cells (when there are any), never a number that looks like an estimate.
5. When no step size passes and no cell's bias belongs to the posterior (bounded by the
   localisation, chains that left the basin), and the model's curvature is computed (at most
   QUADRATIC_FLOOR_MAX_PARAMS parameters, all sampled, a built-in loss, γ > 0, no weight decay):
   steps 2-4 again on chains preconditioned by the curvature at w* (llc/tuning/preconditioned.py),
   at the floor probe's step sizes, from PRECONDITIONED_STEPS steps up to PRECONDITIONED_MAX_STEPS.
   Its choice, if any, is the estimate (sampler "preconditioned"); else there is none."""  # a constant, not the docstring: python -OO drops those


@dataclass
class Cell:
    epsilon: float
    nbeta: float
    gamma: float
    llc_mean: float | None
    llc_std: float | None
    llc_per_chain: list[float | None]
    r_hat: float | None
    ess_bulk: float | None
    ess_tail: float | None
    mala_acceptance: float | None
    drift: float | None
    frac_below_init: float | None
    diverged_chains: int
    status: str
    steps_used: int | None
    flags: list[str]
    biased: bool = False  # diverged, did not move, MALA below the band, w* not a minimum, or bounded by the localisation
    mcse: float | None = None
    gamma_elasticity: float | None = None
    quadratic_floor: float | None = None

    @classmethod
    def of(cls, setting: Mapping[str, float], entry: CheckpointLLC, biased: bool) -> "Cell":
        fields = {name: getattr(entry, name) for name in cls.__dataclass_fields__ if name not in setting and name != "biased"}
        return cls(**setting, **fields | {"flags": list(entry.flags)}, biased=biased)

    @property
    def settled(self) -> bool:
        """Settled and unbiased: its λ̂ is evidence about the step size."""
        return self.llc_mean is not None and not self.biased and self.status in ("ok", "imprecise")


def calibrate(run: Run, base: SGLDConfig, checkpoint: str = "last", epsilons: Sequence[float] | None = None,
              nbeta_factors: Sequence[float] = (1.0,), gammas: Sequence[float] | None = None, progress: bool = False) -> dict:
    """:func:`calibrate_llc` at one checkpoint of a stored run, on its training set."""
    step = select_checkpoints(run, checkpoint)[-1]
    data = run.dataset()
    report = calibrate_llc(run.new_model(), (data.train_x, data.train_y), run.state_dict(step), base, epsilons,
                           nbeta_factors, gammas, checkpoint_id=step, progress=progress)
    return {"checkpoint": checkpoint, "step": step, **report}


def calibrate_llc(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    params: Mapping[str, torch.Tensor] | None,
    base: SGLDConfig,
    epsilons: Sequence[float] | None = None,
    nbeta_factors: Sequence[float] = (1.0,),
    gammas: Sequence[float] | None = None,
    loss: str | LossFn = "cross_entropy",
    checkpoint_id: int = 0,
    masks: Mapping[str, torch.Tensor] | None = None,
    progress: bool = False,
) -> dict:
    """Estimate λ̂ at ``params`` (default: the model's weights) over an ε (× nβ factor × γ) grid,
    every cell's chains in ONE batched run (a cell's numbers equal its estimate alone), and choose a
    cell by the module's rule. Without ``epsilons`` the grid is placed by a MALA bracket first.
    ``masks`` (as :func:`estimate_llc` takes them) restrict what is sampled."""
    weights = dict(params) if params is not None else {n: p.detach() for n, p in model.named_parameters()}
    base = base.model_copy(update=dict(mala=True, floor_probe=False))  # a cell is evidence on ε; the estimate is probed
    default_nbeta, convention = base.resolve_nbeta(int(data[1].shape[0]))
    bracket = None
    if epsilons is None:
        bracket = _bracket(model, data, weights, base, loss, checkpoint_id, masks, progress)
        epsilons = [bracket["epsilon"] * offset for offset in GRID_OFFSETS]
    if not epsilons or any(not (e > 0) for e in epsilons):
        raise ConfigError(f"epsilons={list(epsilons)}: give positive step sizes")
    grid = [dict(epsilon=float(e), gamma=float(g), nbeta=default_nbeta * f)
            for g in gammas or (base.gamma,) for f in nbeta_factors for e in sorted(epsilons)]
    result = sample_llc(model, data, [weights] * len(grid), loss=loss, config=base,
                          checkpoint_ids=[checkpoint_id] * len(grid), per_set=grid, masks=masks, progress=progress)
    cells = judged_cells(list(zip(grid, result.entries)), base.n_steps)
    recommended = recommend(cells, default_nbeta, base.gamma)
    fallback = None
    if recommended["epsilon"] is None and not _posterior_bias(cells) and preconditioned.applies(model, base, loss, masks):
        fallback = _preconditioned(model, data, weights, base, loss, default_nbeta, checkpoint_id)
        if fallback is not None:
            why = f"plain SGLD: {recommended['why']}; preconditioned chains: {fallback['recommended']['why']}"
            recommended = ({**fallback["recommended"], "sampler": "preconditioned", "why": why}
                           if fallback["recommended"]["epsilon"] is not None else {**recommended, "flags": [why], "why": why})
    return {
        "default_nbeta": default_nbeta,
        "nbeta_convention": convention,
        "sampler": base.sampler,
        "n_steps": base.n_steps,
        "chains": base.chains,
        "bracket": bracket,
        "max_steps": base.step_cap,
        "cells": _as_rows(cells),
        "preconditioned": fallback,
        "recommended": recommended,
        "rule": RULE,
    }


def judged_cells(grid: list[tuple[dict, CheckpointLLC]], first_block: int) -> list[Cell]:
    """Each (setting, entry) of a grid as a cell, with the rule's flags (steps 2 and 3)."""
    cells = [Cell.of(setting, entry, _biased(entry)) for setting, entry in grid]
    _flag_bounded_rows(cells)
    _flag_settled_too_soon(cells, first_block)
    _flag_not_flat(cells)
    return cells


def _as_rows(cells: list[Cell]) -> list[dict]:
    return [asdict(c) | {"settled": c.settled} for c in cells]


def _posterior_bias(cells: list[Cell]) -> bool:
    """Whether a cell's bias belongs to the posterior at this nβ and γ (bounded by the localisation,
    chains that left the basin), which no other kernel cures."""
    return any(flag.startswith((BOUNDED, LEFT)) for cell in cells for flag in cell.flags)


def _preconditioned(model, data, weights, base: SGLDConfig, loss, nbeta: float, checkpoint_id: int) -> dict | None:
    """Step 5 of the rule: the preconditioned grid's cells and choice (None without a curvature)."""
    grid = preconditioned.preconditioned_grid(model, data, weights, base, loss, nbeta, checkpoint_id)
    if grid is None:
        return None
    cells = judged_cells(grid, PRECONDITIONED_STEPS)
    return {"cells": _as_rows(cells),
            "recommended": recommend(cells, nbeta, base.gamma, f"their cap is {preconditioned.PRECONDITIONED_MAX_STEPS} steps")}


def _biased(entry: CheckpointLLC) -> bool:
    """Whether an estimate shows a bias more steps cannot cure (llc/diagnostics/health.py), or has no estimate."""
    return entry.llc_mean is None or shows_bias(entry.flags)


def _bracket(model, data, weights, base: SGLDConfig, loss, checkpoint_id: int, masks, progress: bool) -> dict:
    """Short chains over BRACKET_EPSILONS; ε₀ = the last ε, counting up, before the first whose chains
    diverge or whose MALA acceptance falls below MALA_MIN_ACCEPTANCE."""
    steps = min(base.n_steps, BRACKET_STEPS)
    # the default cap of its own first block, never more (a larger --max-steps is the estimate's): MALA acceptance
    # falls as chains spread, so a longer bracket would place the grid lower
    short = base.model_copy(update=dict(n_steps=steps, max_steps=min(BUDGET_FACTOR * steps, base.step_cap), burn_in=steps // 4,
                                        chains=min(base.chains, BRACKET_CHAINS), mala=True,
                                        mala_every=5, save_samples=0, step_metrics=False))
    grid = [dict(epsilon=e) for e in BRACKET_EPSILONS]
    result = sample_llc(model, data, [weights] * len(grid), loss=loss, config=short,
                          checkpoint_ids=[checkpoint_id] * len(grid), per_set=grid, masks=masks, progress=progress)
    acceptance = [None if e.diverged_chains or e.llc_mean is None else e.mala_acceptance for e in result.entries]
    epsilon = BRACKET_EPSILONS[0]
    for eps, a in zip(BRACKET_EPSILONS, acceptance):
        if a is None or a < MALA_MIN_ACCEPTANCE:
            break
        epsilon = eps
    return {"epsilon": epsilon, "n_steps": steps,
            "epsilons": list(BRACKET_EPSILONS), "mala_acceptance": acceptance}


def _rows(cells: list[Cell]) -> list[list[Cell]]:
    """The grid's cells grouped by (nβ, γ): the cells that differ only in ε."""
    rows: dict[tuple[float, float], list[Cell]] = {}
    for cell in cells:
        rows.setdefault((cell.nbeta, cell.gamma), []).append(cell)
    return list(rows.values())


def _flag_bounded_rows(cells: list[Cell]) -> None:
    """When one cell's λ̂ is bounded by the localisation (llc/diagnostics/localisation.py), every cell
    at the same nβ and γ is: the elasticity belongs to the posterior, not to a step size, and a cell
    whose own estimate of it did not clear its error is no evidence against it. Only a cell with no
    other bias counts (a step size too large distorts the elasticity too)."""
    for row in _rows(cells):
        bounded = [c for c in row if any(f.startswith(BOUNDED) for f in c.flags)
                   and not any(shows_bias([f]) and not f.startswith(BOUNDED) for f in c.flags)]
        if not bounded:
            continue
        for cell in row:
            if cell.llc_mean is not None and not cell.biased:
                cell.biased, cell.status = True, "unreliable"
                cell.flags.append(f"{BOUNDED}, as the cell at ε = {bounded[0].epsilon:.3g} shows "
                                  "(the elasticity in γ is the posterior's, not a step size's)")


def _flag_settled_too_soon(cells: list[Cell], first_block: int) -> None:
    """A settled cell is not trusted (it becomes unreliable) when another unbiased cell shows that
    the chains need more time than it ran, and reads higher (by more than FLAT_TOLERANCE and two
    paired standard errors, :func:`_jump`). Time is ε × steps, the duration of the Langevin dynamics
    the chains discretise; how long chains take to explore does not depend on the step size
    (Roberts & Tweedie 1996: the discretisation adds a bias, not a time scale), and exploring the
    flat directions of a singular minimum raises λ̂. The other cell shows it when it had not settled,
    or settled only imprecisely (few effective draws: slow to explore), after at least as long a
    time; or when it settled only after its first block of ``first_block`` steps, so had not settled
    after half its time, and that half is longer than the settled cell's whole time. A cell whose
    traces look stable after less time, below what longer chains reach, has likely stayed in the
    region it reached first (docs/validation.md, "Settled too soon")."""
    for row in _rows(cells):
        moving = [c for c in row if c.llc_mean is not None and not c.biased and c.steps_used]
        evidence = [(c, "still moving" if not c.settled else "settled only imprecisely", c.epsilon * c.steps_used, False)
                    for c in moving if not c.settled or c.status == "imprecise"]
        evidence += [(c, "not yet settled", c.epsilon * c.steps_used / 2, True) for c in moving
                     if c.status == "ok" and c.steps_used > first_block]
        for cell in [c for c in row if c.settled]:
            ran = cell.epsilon * cell.steps_used
            higher = [(c, how, needed) for c, how, needed, strict in evidence if c is not cell
                      and (needed > ran if strict else needed >= ran) and (change := _jump(cell, c)) is not None and change > 0]
            if higher:
                longest, how, needed = max(higher, key=lambda found: found[2])
                cell.status = "unreliable"
                cell.flags.append(f"settled too soon: after time ε·steps = {ran:.3g}, below the λ̂ {longest.llc_mean:.4g} "
                                  f"of the chains at ε = {longest.epsilon:.3g}, {how} after {needed:.3g}")


def _flag_not_flat(cells: list[Cell]) -> None:
    """Flag each settled cell whose λ̂ is not flat (:func:`_jump`) against the next smaller unbiased
    cell with an estimate (same nβ, γ), settled or not."""
    for row in _rows(cells):
        candidates = sorted((c for c in row if c.llc_mean is not None and not c.biased), key=lambda c: c.epsilon)
        for smaller, cell in zip([None] + candidates, candidates):
            if not cell.settled:
                continue
            if smaller is None:
                cell.flags.append("flatness not checked: no smaller unbiased ε in the grid")
            elif (change := _jump(smaller, cell)) is not None:
                cell.flags.append(f"not flat: λ̂ {change:+.0%} against ε = {smaller.epsilon:.3g} "
                                  f"(> {FLAT_TOLERANCE:.0%} and 2 standard errors)")


def _jump(reference: Cell, cell: Cell) -> float | None:
    """The relative change of λ̂ from ``reference`` to ``cell`` when it exceeds FLAT_TOLERANCE and two
    standard errors of the paired per-chain differences (chain c of every cell shares its
    minibatches and noise), else None."""
    if cell.llc_mean is None or reference.llc_mean is None:
        return None
    pairs = np.array([(a, b) for a, b in zip(cell.llc_per_chain, reference.llc_per_chain) if a is not None and b is not None])
    differences = pairs[:, 0] - pairs[:, 1]
    se = differences.std(ddof=1) / np.sqrt(len(differences)) if len(differences) > 1 else 0.0
    change = cell.llc_mean - reference.llc_mean
    if abs(change) > FLAT_TOLERANCE * abs(reference.llc_mean) and abs(differences.mean()) > 2 * se:
        return change / abs(reference.llc_mean) if reference.llc_mean else float("inf")
    return None


def _flat_runs(candidates: list[Cell]) -> list[list[Cell]]:
    """Every flat run (:func:`_first_flat_run`), counting up in ε: each search starts after the
    last cell of the run before."""
    runs: list[list[Cell]] = []
    while run := _first_flat_run(candidates):
        runs.append(run)
        candidates = candidates[candidates.index(run[-1]) + 1:]
    return runs


def _first_flat_run(candidates: list[Cell]) -> list[Cell]:
    """The first run, counting up in ε, of unbiased cells whose λ̂ stays flat from cell to cell and
    against the run's first, holding a settled cell beyond its first (whose λ̂ may be that of
    chains still unsettled at their cap: it is only the reference), cut after its last settled
    cell; [] when there is none."""
    def closed(run: list[Cell]) -> list[Cell]:
        while run and not run[-1].settled:
            run = run[:-1]
        return run if len(run) >= 2 else []

    run: list[Cell] = []
    for cell in candidates:
        if run and (_jump(run[-1], cell) is not None or _jump(run[0], cell) is not None):
            if closed(run):
                return closed(run)
            run = []
        if not cell.settled and closed(run):
            return closed(run)
        run = [cell] if not cell.settled else run + [cell]
    return closed(run)


def recommend(cells: list[Cell], nbeta: float, gamma: float, more_steps: str = "more steps (--max-steps) may help") -> dict:
    """The rule's choice at (nβ, γ): the largest ε of the first flat run of at least two settled,
    unbiased cells, or of the next run ending on an ok cell when the first ends on an imprecise
    one; else no choice (epsilon None) with the reason (``more_steps`` when a cell was only unsettled)."""
    at_base = [c for c in cells if np.isclose(c.nbeta, nbeta) and c.gamma == gamma]
    row = sorted(at_base or cells, key=lambda c: c.epsilon)  # every cell when the grid leaves out the base nβ, γ
    settled = [c for c in row if c.settled]
    runs = _flat_runs([c for c in row if c.llc_mean is not None and not c.biased])
    if runs:
        run = next((r for r in runs if r[-1].status == "ok"), runs[0])
        chosen = run[-1]
        passed = "" if run is runs[0] else (f"; the first, ε {runs[0][0].epsilon:.3g} to {runs[0][-1].epsilon:.3g}, "
                                             "ends on an imprecise cell")
        return {"epsilon": chosen.epsilon, "nbeta": chosen.nbeta, "gamma": chosen.gamma, "llc_mean": chosen.llc_mean,
                "llc_std": chosen.llc_std, "mala_acceptance": chosen.mala_acceptance, "status": chosen.status,
                "flags": list(chosen.flags), "flat_from": run[0].epsilon,
                "why": f"the largest step size of the {'first' if run is runs[0] else 'first ok-ending'} flat run of settled cells "
                       f"(ε {run[0].epsilon:.3g} to {chosen.epsilon:.3g}{passed})"}
    values = [c.llc_mean for c in settled]
    if not settled:
        biased = sum(c.biased for c in row)
        why = ("no step size passes: no cell settled without bias within its budget "
               f"({biased} biased, {len(row) - biased} not settled)"
               + (f"; {more_steps}" if biased < len(row) else "; see each cell's reasons"))
    else:
        why = ("no step size passes: λ̂ is not flat over two settled cells"
               f" (settled λ̂ from {min(values):.4g} to {max(values):.4g} at ε {settled[0].epsilon:.3g} to {settled[-1].epsilon:.3g})")
    return {"epsilon": None, "nbeta": nbeta, "gamma": gamma, "llc_mean": None, "llc_std": None, "mala_acceptance": None,
            "status": "none", "flags": [why], "why": why, "range": [min(values), max(values)] if values else None}


def calibration_lines(report: dict) -> list[str]:
    """The evidence of a calibration as text: the bracket, every grid cell with its flags (the
    preconditioned grid's too, when the rule tried it), the choice."""
    lines = []
    bracket = report.get("bracket")
    if bracket:
        pairs = ", ".join(f"{e:g}: {number(a, '.2f')}" for e, a in zip(bracket["epsilons"], bracket["mala_acceptance"]))
        lines.append(f"bracket ({bracket['n_steps']} steps), MALA acceptance per epsilon: {pairs} -> grid around {bracket['epsilon']:g}")
    fallback = report.get("preconditioned")
    for title, cells in (("", report["cells"]), ("preconditioned chains (plain SGLD passed no step size):", fallback and fallback["cells"])):
        if title and cells:
            lines.append(title)
        for cell in cells or []:
            mean = "diverged" if cell["llc_mean"] is None else f"{cell['llc_mean']:.4g}"
            lines.append(f"eps={cell['epsilon']:<10.3g} nbeta={cell['nbeta']:<10.4g} gamma={cell['gamma']:<6g} llc={mean:<10} "
                         f"MALA={number(cell['mala_acceptance'], '.3f')} steps={cell['steps_used'] or 0:<6} {cell['status']:<10} "
                         + "; ".join(cell["flags"]))
    rec = report["recommended"]
    if rec["epsilon"] is None:
        lines.append(f"chosen: none -- {rec['why']}")
    else:
        lines.append(f"chosen: epsilon={rec['epsilon']:.3g} nbeta={rec['nbeta']:.4g} gamma={rec['gamma']:g} "
                     f"{rec.get('sampler', report['sampler'])} ({rec['why']})")
    return lines
