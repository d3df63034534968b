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
