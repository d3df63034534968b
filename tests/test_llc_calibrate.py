from grokscope.llc.calibrate import Cell, recommend


def cell(eps, llc, flags=()):
    return Cell(eps, 100.0, 5.0, llc, 1.0, 1.0, 0.0, 0, list(flags))


def test_recommends_largest_healthy_epsilon_in_flat_region():
    cells = [cell(1e-4, 50.0), cell(3e-4, 52.0), cell(1e-3, 55.0), cell(3e-3, 90.0), cell(1e-2, None, ["diverged"])]
    rec = recommend(cells, 100.0, 5.0)
    assert rec["epsilon"] == 1e-3 and rec["flat_region_epsilons"] == [1e-4, 3e-4, 1e-3]


def test_unhealthy_cells_break_the_flat_region():
    cells = [cell(1e-4, 50.0), cell(3e-4, 51.0, ["draws below L_n(w*)"]), cell(1e-3, 52.0), cell(3e-3, 53.0), cell(1e-2, 54.0)]
    rec = recommend(cells, 100.0, 5.0)
    assert rec["flat_region_epsilons"] == [1e-3, 3e-3, 1e-2]


def test_no_healthy_cell_means_no_recommendation():
    assert recommend([cell(1e-3, None, ["diverged"])], 100.0, 5.0) is None


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
            assert (cell["llc_mean"], cell["llc_std"], cell["r_hat"]) == (alone.llc_mean, alone.llc_std, alone.r_hat)
        assert len({c["llc_mean"] for c in report["cells"]}) == 8  # the cells really differ
