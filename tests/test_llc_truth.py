import pytest

from grokscope.llc.validation.truth import true_llc_dln, true_llc_reduced_rank

CHECK_VALUES = [
    ([5, 3, 5], 0, 6.5), ([5, 4, 5], 0, 8), ([4, 3, 8], 0, 6), ([8, 3, 4], 0, 6), ([3, 8, 4], 0, 6),
    ([2, 1, 2], 1, 1.5), ([10, 20, 10], 0, 50), ([20, 30, 20], 0, 187.5), ([30, 40, 30], 0, 400),
    ([10, 10, 10, 10], 0, 33.5), ([10, 10, 10, 10], 10, 50), ([3, 4, 5], 0, 5.5), ([3, 4, 5], 3, 7.5),
]


@pytest.mark.parametrize("widths, rank, expected", CHECK_VALUES)
def test_aoyagi_check_values(widths, rank, expected):
    assert true_llc_dln(widths, rank) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("m, n", [(1, 1), (4, 7), (8, 3)])
def test_single_layer_is_regular(m, n):
    assert true_llc_dln([m, n], 0) == m * n / 2


def test_two_layers_equal_reduced_rank_regression_for_all_small_widths():
    for m in range(1, 9):
        for h in range(1, 9):
            for n in range(1, 9):
                for r in range(min(m, h, n) + 1):
                    assert true_llc_dln([m, h, n], r) == pytest.approx(true_llc_reduced_rank(m, h, n, r)), (m, h, n, r)


def test_rank_out_of_range():
    with pytest.raises(ValueError, match="rank"):
        true_llc_dln([3, 2, 3], 3)


def test_integer_learning_coefficients_are_exact():
    # computed in rationals: an integer λ is that integer, not 45.99999999999999
    assert true_llc_dln([10, 10, 10, 10], 5) == 46
    assert true_llc_dln([10, 10, 10, 10], 0) == 33.5
