from grokscope.llc.calibrate import Cell, _flag_not_flat, recommend
from grokscope.thresholds import FLAT_TOLERANCE, MALA_MIN_ACCEPTANCE


def cell(eps, llc, mala=0.9, flags=(), diverged=0, per_chain=None):
    per_chain = per_chain if per_chain is not None else [None if llc is None else llc + d for d in (-0.1, 0.0, 0.1)]
    return Cell(eps, 100.0, 5.0, llc, 1.0, per_chain, 1.0, 500.0, 500.0, mala, 0.0, 0.0, diverged, list(flags))


def test_recommends_the_largest_healthy_epsilon():
    cells = [cell(1e-4, 50.0, 0.97), cell(2e-4, 51.0, 0.95), cell(4e-4, 52.0, 0.9), cell(8e-4, 80.0, 0.6, ["MALA acceptance 0.60 < 0.8"]),
             cell(1.6e-3, None, None, ["diverged"], diverged=4)]
    rec = recommend(cells, 100.0, 5.0)
    assert rec["epsilon"] == 4e-4 and rec["healthy"] and rec["why"] == "the largest step size of the first run of healthy cells"


def test_past_the_first_jump_no_epsilon_is_trusted_even_on_a_second_plateau():
    cells = [cell(1e-4, 50.0, flags=["flatness not checked"]), cell(2e-4, 51.0), cell(4e-4, 52.0), cell(8e-4, 300.0, flags=["not flat"]),
             cell(1.6e-3, 305.0), cell(3.2e-3, 306.0)]
    assert recommend(cells, 100.0, 5.0)["epsilon"] == 4e-4


def test_a_slow_creep_of_small_steps_ends_the_run():
    creeping = [cell(1e-4, 100.0, flags=["flatness not checked"])] + [cell(1e-4 * 2**k, 100.0 + 4 * k) for k in range(1, 5)]
    assert recommend(creeping, 100.0, 5.0)["epsilon"] == 4e-4  # 108 is within 5% of the run's first (104), 112 is not


def test_without_a_healthy_cell_the_least_bad_is_chosen_and_marked():
    cells = [cell(1e-4, 50.0, 0.97, ["chains disagree: R-hat 1.2 > 1.05"]), cell(2e-4, 55.0, 0.85, ["few effective draws: ESS 40 < 100"]),
             cell(4e-4, 90.0, 0.5, ["MALA acceptance 0.50 < 0.8"])]
    rec = recommend(cells, 100.0, 5.0)
    assert rec["epsilon"] == 2e-4 and not rec["healthy"] and rec["flags"] == ["few effective draws: ESS 40 < 100"]
    exploding = [cell(1e-2, 2.0, 0.95, ["flatness not checked"]), cell(2e-2, 40.0, 0.9, ["not flat"]), cell(4e-2, 900.0, 0.9, ["not flat"])]
    assert recommend(exploding, 100.0, 5.0)["epsilon"] == 1e-2  # a tie goes to flags of too few steps, not of bias
    rec = recommend([cell(1e-4, 90.0, 0.5, ["MALA"]), cell(2e-4, 95.0, 0.3, ["MALA"])], 100.0, 5.0)
    assert rec["epsilon"] == 1e-4 and not rec["healthy"] and "none with MALA acceptance in band" in rec["why"]


def test_a_jump_from_the_smaller_neighbour_is_flagged_not_flat():
    step = 1 + 2 * FLAT_TOLERANCE
    cells = [cell(1e-4, 50.0), cell(2e-4, 50.0 * (1 + FLAT_TOLERANCE / 2)), cell(4e-4, 50.0 * (1 + FLAT_TOLERANCE / 2) * step)]
    _flag_not_flat(cells)
    assert [c.flags[0].split(":")[0] if c.flags else None for c in cells] == ["flatness not checked", None, "not flat"]
    assert MALA_MIN_ACCEPTANCE < 0.9  # the helper's healthy acceptance lies in the band


def test_a_jump_within_the_paired_chain_noise_is_not_flagged():
    noisy = [cell(1e-4, 50.0, per_chain=[40.0, 50.0, 60.0]), cell(2e-4, 56.0, per_chain=[60.0, 48.0, 60.0])]
    _flag_not_flat(noisy)  # +12%, but the paired differences (20, -2, 0) do not tell it from noise
    assert noisy[0].flags and not noisy[1].flags


def test_the_batched_grid_gives_each_cell_its_estimate_alone(tmp_path):
    from grokscope import build_config, train
    from grokscope.llc import sgld_config
    from grokscope.llc.calibrate import calibrate
    from grokscope.llc.stored import run_llc

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
    from grokscope.llc.calibrate import calibrate
    from grokscope.llc.stored import run_llc

    run = train(tiny_config(), tmp_path / "run", progress=False)
    base = sgld_config(n_steps=80, batch_size=16, chains=2, temp_multiplier=2.0)
    report = calibrate(run, base, "last", epsilons=(1e-3,))
    plain = sgld_config(n_steps=80, batch_size=16, chains=2).resolve_nbeta(len(run.dataset().train_y))[0]
    assert report["default_nbeta"] == report["cells"][0]["nbeta"] == plain / 2
    alone = run_llc(run, base.model_copy(update={"epsilon": 1e-3}), "last", progress=False).entries[0]
    assert report["cells"][0]["llc_mean"] == alone.llc_mean
