from dataclasses import replace

import pytest

from grokscope.llc.tuning.calibrate import Cell, _flag_bounded_rows, _flag_not_flat, _flag_settled_too_soon, recommend
from grokscope.thresholds import FLAT_TOLERANCE, MALA_MIN_ACCEPTANCE


def cell(eps, llc, status="ok", biased=False, per_chain=None):
    per_chain = per_chain if per_chain is not None else [None if llc is None else llc + d for d in (-0.1, 0.0, 0.1)]
    return Cell(eps, 100.0, 5.0, llc, 1.0, per_chain, 1.0, 500.0, 500.0, 0.5 if biased else 0.95, 0.0, 0.0, 0, status, 1000, [], biased)


def test_recommends_the_largest_settled_epsilon_of_a_flat_run():
    cells = [cell(1e-4, 50.0), cell(2e-4, 51.0), cell(4e-4, 52.0), cell(8e-4, 80.0, biased=True), cell(1.6e-3, None, "none", True)]
    rec = recommend(cells, 100.0, 5.0)
    assert rec["epsilon"] == 4e-4 and rec["flat_from"] == 1e-4 and "flat run" in rec["why"]


def test_a_cell_unsettled_at_its_cap_is_a_reference_for_flatness_only():
    """Smaller steps settle more slowly: the first settled cell may be checked against one that ran out of steps."""
    cells = [cell(1e-4, 48.0, "unreliable"), cell(2e-4, 50.0, "unreliable"), cell(4e-4, 51.0), cell(8e-4, 60.0)]
    rec = recommend(cells, 100.0, 5.0)
    assert rec["epsilon"] == 4e-4 and rec["flat_from"] == 2e-4
    assert recommend(cells[:2], 100.0, 5.0)["epsilon"] is None  # unsettled cells alone never make a choice


def test_too_few_draws_never_disqualify_a_step_size():
    """Unsettled cells are skipped (they had their budget), and imprecise ones still count as settled."""
    cells = [cell(1e-4, 40.0, "unreliable"), cell(2e-4, 50.0, "imprecise"), cell(4e-4, 51.0, "unreliable"), cell(8e-4, 51.5)]
    assert recommend(cells, 100.0, 5.0)["epsilon"] == 8e-4


def test_past_the_first_jump_no_epsilon_is_trusted_even_on_a_second_plateau():
    cells = [cell(1e-4, 50.0), cell(2e-4, 51.0), cell(4e-4, 52.0), cell(8e-4, 300.0), cell(1.6e-3, 305.0), cell(3.2e-3, 306.0)]
    assert recommend(cells, 100.0, 5.0)["epsilon"] == 4e-4


def test_a_slow_creep_of_small_steps_ends_the_run():
    creeping = [cell(1e-4 * 2**k, 100.0 + 4 * k) for k in range(5)]
    assert recommend(creeping, 100.0, 5.0)["epsilon"] == 2e-4  # 104 is within 5% of the run's first (100), 108 is not


def test_a_lone_settled_cell_is_no_evidence_and_no_cell_gives_no_estimate():
    """No fallback: without two flat settled cells the choice is None, with the reason and the range."""
    rising = [cell(1e-4, 50.0), cell(2e-4, 60.0), cell(4e-4, 75.0), cell(8e-4, 95.0, biased=True)]
    rec = recommend(rising, 100.0, 5.0)
    assert rec["epsilon"] is None and rec["llc_mean"] is None and rec["status"] == "none"
    assert rec["range"] == [50.0, 75.0] and "not flat" in rec["why"]
    unsettled = [cell(1e-4, 50.0, "unreliable"), cell(2e-4, 55.0, "unreliable"), cell(4e-4, 90.0, biased=True)]
    rec = recommend(unsettled, 100.0, 5.0)
    assert rec["epsilon"] is None and rec["range"] is None and "no cell settled" in rec["why"]
    # a jump after a lone cell starts the run again from the cell after the jump
    assert recommend([cell(1e-4, 30.0), cell(2e-4, 50.0), cell(4e-4, 51.0)], 100.0, 5.0)["epsilon"] == 4e-4


def test_a_jump_from_the_smaller_settled_neighbour_is_flagged_not_flat():
    step = 1 + 2 * FLAT_TOLERANCE
    cells = [cell(1e-4, 50.0), cell(2e-4, 50.0, "unreliable"), cell(4e-4, 50.0 * (1 + FLAT_TOLERANCE / 2)),
             cell(8e-4, 50.0 * (1 + FLAT_TOLERANCE / 2) * step), cell(1.6e-3, 10.0, biased=True)]
    _flag_not_flat(cells)
    assert [c.flags[0].split(":")[0] if c.flags else None for c in cells] == ["flatness not checked", None, None, "not flat", None]
    _flag_not_flat(low := [cell(1e-4, 30.0, "unreliable"), cell(2e-4, 50.0)])  # against an unsettled smaller cell too
    assert low[1].flags[0].startswith("not flat")
    assert MALA_MIN_ACCEPTANCE < 0.95  # the helper's unbiased acceptance lies in the band


def test_a_jump_within_the_paired_chain_noise_is_not_flagged():
    noisy = [cell(1e-4, 50.0, per_chain=[40.0, 50.0, 60.0]), cell(2e-4, 56.0, per_chain=[60.0, 48.0, 60.0])]
    _flag_not_flat(noisy)  # +12%, but the paired differences (20, -2, 0) do not tell it from noise
    assert noisy[0].flags and not noisy[1].flags


@pytest.mark.slow
def test_the_batched_grid_gives_each_cell_its_estimate_alone(tmp_path):
    from grokscope import build_config, train
    from grokscope.llc import sgld_config
    from grokscope.llc.api import run_llc
    from grokscope.llc.tuning.calibrate import calibrate

    sets = {"p": 13, "train_frac": 0.7, "embed_dim": 6, "hidden_size": 16, "n_steps": 200, "n_checkpoints": 2, "batch_size": 32}
    run = train(build_config("example", overrides=sets), tmp_path / "run", progress=False)
    base = sgld_config(n_steps=120, batch_size=32, chains=2)
    for sampler in ("sgld", "rmsprop_sgld"):
        base = base.model_copy(update={"sampler": sampler})
        report = calibrate(run, base, "last", epsilons=(3e-4, 3e-3), nbeta_factors=(0.5, 2.0), gammas=(1.0, 5.0))
        assert len(report["cells"]) == 8 and report["sampler"] == sampler
        for cell in report["cells"]:
            alone = run_llc(run, base.model_copy(update={k: cell[k] for k in ("epsilon", "nbeta", "gamma")}), "last", progress=False).entries[0]
            assert (cell["llc_mean"], cell["llc_std"], cell["r_hat"], cell["mala_acceptance"]) == (
                alone.llc_mean, alone.llc_std, alone.r_hat, alone.mala_acceptance)
        assert len({c["llc_mean"] for c in report["cells"]}) == 8  # the cells really differ


def test_the_grid_runs_at_the_temperature_the_estimate_uses(tmp_path, tiny_config):
    """A temperature multiplier divides nβ in the calibration's cells as in the estimate that follows."""
    from grokscope import train
    from grokscope.llc import sgld_config
    from grokscope.llc.api import run_llc
    from grokscope.llc.tuning.calibrate import calibrate

    run = train(tiny_config(), tmp_path / "run", progress=False)
    base = sgld_config(n_steps=80, batch_size=16, chains=2, temp_multiplier=2.0)
    report = calibrate(run, base, "last", epsilons=(1e-3,))
    plain = sgld_config(n_steps=80, batch_size=16, chains=2).resolve_nbeta(len(run.dataset().train_y))[0]
    assert report["default_nbeta"] == report["cells"][0]["nbeta"] == plain / 2
    alone = run_llc(run, base.model_copy(update={"epsilon": 1e-3}), "last", progress=False).entries[0]
    assert report["cells"][0]["llc_mean"] == alone.llc_mean


def _timed(eps, llc, steps, status="ok"):
    return replace(cell(eps, llc, status), steps_used=steps)


def test_a_cell_settled_in_less_time_than_an_unsettled_one_is_not_trusted():
    """Time is ε × steps: chains at 1e-4 that look settled after 1000 steps (time 0.1), while those at
    4e-4 still move after 8000 (time 3.2), are not evidence; 2e-4 after 20,000 steps (time 4) is."""
    early, long_run, moving = _timed(1e-4, 3.5, 1000), _timed(2e-4, 5.0, 20000), _timed(4e-4, 5.4, 8000, "unreliable")
    _flag_settled_too_soon([early, long_run, moving], 1000)
    assert early.status == "unreliable" and not early.settled and early.flags[-1].startswith("settled too soon")
    assert long_run.settled and not long_run.flags


def test_a_false_plateau_of_cells_settled_too_soon_gives_no_estimate():
    cells = [_timed(1.25e-7, 3.50, 10000), _timed(2.5e-7, 3.59, 10000), _timed(5e-7, 5.2, 80000, "unreliable"),
             _timed(1e-6, 5.7, 80000, "unreliable"), replace(cell(2e-6, 7.3, "unreliable", biased=True), steps_used=10000)]
    assert recommend(cells, 100.0, 5.0)["epsilon"] == 2.5e-7  # the plateau, without the time check
    _flag_settled_too_soon(cells, 10000)
    assert recommend(cells, 100.0, 5.0)["epsilon"] is None


def test_a_plateau_below_a_longer_imprecise_cell_is_not_trusted():
    """Few effective draws after a long run mean slow exploration, as chains still moving do: the
    third held-out family's [6, 5, 8, 8] r2 settled at 12 within 20,000 steps at the three smallest ε,
    while 1e-8 read 17.0 after 80,000 (imprecise) and 2e-8 17.7 (truth 18)."""
    cells = [_timed(1.25e-9, 12.03, 20000), _timed(2.5e-9, 12.07, 10000), _timed(5e-9, 12.19, 10000),
             _timed(1e-8, 17.01, 80000, "imprecise"), _timed(2e-8, 17.67, 40000), _timed(4e-8, 18.93, 40000)]
    assert recommend(cells, 100.0, 5.0)["epsilon"] == 5e-9
    _flag_settled_too_soon(cells, 10000)
    assert [c.settled for c in cells] == [False, False, False, True, True, True]
    assert "settled only imprecisely" in cells[0].flags[-1]
    assert recommend(cells, 100.0, 5.0)["epsilon"] == 2e-8


def test_an_imprecise_cell_that_ran_for_less_time_flags_nothing():
    cells = [_timed(1e-8, 12.0, 40000), _timed(2e-8, 12.2, 20000), _timed(4e-8, 17.0, 5000, "imprecise")]
    _flag_settled_too_soon(cells, 10000)
    assert all(c.settled for c in cells)


BOUNDED = "bounded by the localisation: d ln λ̂/d ln γ = -0.20 ± 0.02 (< −0.1)"


def test_one_cell_bounded_by_the_localisation_bounds_its_row():
    """The elasticity in γ is the posterior's: a flat run of cells that did not show it is no estimate."""
    cells = [cell(1e-4, 50.0), cell(2e-4, 50.5), cell(4e-4, 51.0), cell(8e-4, 51.2)]
    cells[0] = replace(cells[0], status="unreliable", biased=True, flags=[BOUNDED])
    _flag_bounded_rows(cells)
    assert all(c.biased and c.status == "unreliable" for c in cells)
    assert recommend(cells, 100.0, 5.0)["epsilon"] is None


def test_a_bounded_cell_with_another_bias_bounds_only_itself():
    cells = [cell(1e-4, 50.0), cell(2e-4, 50.5), cell(4e-4, 51.0)]
    cells[2] = replace(cells[2], status="unreliable", biased=True, flags=[BOUNDED, "MALA acceptance 0.70 < 0.8: too large"])
    _flag_bounded_rows(cells)
    assert not cells[0].biased and not cells[1].biased
    assert recommend(cells, 100.0, 5.0)["epsilon"] == 2e-4


def test_a_run_ending_on_an_imprecise_cell_gives_way_to_a_later_run_ending_ok():
    """The seventh held-out family's [11, 5, 10] r2 (seen): the first run ended imprecise at 29.7, slow
    to explore; the next, from 5e-7, ended ok at 31.6 (truth 30.5)."""
    cells = [cell(1e-4, 29.0, "unreliable"), cell(2e-4, 29.7, "imprecise"), cell(4e-4, 31.0), cell(8e-4, 31.6), cell(1.6e-3, 40.0)]
    rec = recommend(cells, 100.0, 5.0)
    assert rec["epsilon"] == 8e-4 and rec["status"] == "ok" and "ends on an imprecise cell" in rec["why"]
    # without a later run that ends ok, the imprecise choice stands
    imprecise_later = cells[:3] + [replace(cells[3], status="imprecise"), cells[4]]
    assert recommend(imprecise_later, 100.0, 5.0)["epsilon"] == 2e-4
    assert recommend(cells[:3], 100.0, 5.0)["status"] == "imprecise"



def test_a_cell_that_settled_late_shows_how_long_settling_takes():
    """The ninth held-out family's [8, 7, 12, 3] r2 (truth 11.5): 1.25e-7 and 2.5e-7 settled within
    their first 10,000 steps (time 1.25e-3, 2.5e-3) at 9.1 and 9.4, while 5e-7 had not settled after
    40,000 (time 0.02) and settled at 12.0 after 80,000. Chains that need more than 0.02 cannot have
    settled after 2.5e-3."""
    cells = [_timed(1.25e-7, 9.10, 10000), _timed(2.5e-7, 9.36, 10000), _timed(5e-7, 12.0, 80000),
             replace(cell(1e-6, 12.6, "unreliable", biased=True), steps_used=20000)]
    assert recommend(cells, 100.0, 5.0)["epsilon"] == 2.5e-7
    _flag_settled_too_soon(cells, 10000)
    assert [c.settled for c in cells[:3]] == [False, False, True] and "not yet settled after 0.02" in cells[1].flags[-1]
    assert recommend(cells, 100.0, 5.0)["epsilon"] is None


def test_a_late_cell_whose_unsettled_half_ran_no_longer_flags_nothing():
    """Blocks double, so a cell settled after 20,000 steps was unsettled at 10,000: at twice the ε
    that is the same time as 20,000 steps of the smaller cell, no evidence that it needed more."""
    cells = [_timed(1e-7, 10.0, 20000), _timed(2e-7, 12.0, 20000)]
    _flag_settled_too_soon(cells, 10000)
    assert all(c.settled for c in cells)


def test_the_bracket_does_not_grow_with_the_estimates_cap():
    """A larger --max-steps is the estimate's: the bracket's chains stop at 8 × their 500 steps, so
    the grid does not move (MALA acceptance falls as chains spread)."""
    from grokscope.llc import sgld_config
    from grokscope.llc.tuning.calibrate import _bracket
    from grokscope.llc.validation.suite import regular_case

    model, data = regular_case(d=3, n=400).build()
    weights = {n: p.detach() for n, p in model.named_parameters()}
    brackets = [_bracket(model, data, weights, sgld_config(n_steps=600, batch_size=50, chains=2, mala=True, **cap), "mse", 0, None, False)
                for cap in ({}, {"max_steps": 40_000})]
    assert brackets[0] == brackets[1] and brackets[0]["n_steps"] == 500
