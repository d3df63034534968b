"""The ground-truth cases themselves: whether a deep linear teacher's truth is the target at the
suite's n (suite.direction_energies, docs/validation.md "Directions the data cannot resolve")."""

import math

import pytest
import torch

from grokscope.llc.validation.suite import (
    DLN_N,
    FAMILY_SEEDS,
    RESOLVED_FAMILIES_FROM,
    DeepLinear,
    direction_energies,
    dln_case,
    held_out_family,
)
from grokscope.llc.validation.truth import true_llc_dln
from grokscope.thresholds import RESOLVED_ENERGY


def test_a_directions_energy_is_how_much_dropping_it_raises_the_tempered_loss():
    model = DeepLinear([3, 4, 2])
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in model:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g))
    energies = direction_energies(model, 2)
    assert energies == sorted(energies, reverse=True) and len(energies) == 2
    product = model[1].weight.detach().double() @ model[0].weight.detach().double()
    u, s, vh = torch.linalg.svd(product)
    x = torch.rand(DLN_N, 3, generator=g, dtype=torch.float64) * 20 - 10
    nbeta = DLN_N / math.log(DLN_N)
    for i, energy in enumerate(energies):
        dropped = product - s[i] * torch.outer(u[:, i], vh[i])
        rise = ((x @ dropped.T - x @ product.T) ** 2).mean().item()  # the MSE of the teacher without direction i
        assert nbeta * rise == pytest.approx(energy, rel=0.03)


def test_a_teacher_whose_product_hides_a_direction_says_what_its_truth_means():
    case = dln_case([12, 6, 12, 2, 12], 2)  # each layer cut to rank 2 on its own: the product's σ_2 is 8.7e-4
    assert case.energies[0] >= RESOLVED_ENERGY > 1 > case.energies[1]
    assert case.truth == 22 and case.resolved_truth == true_llc_dln([12, 6, 12, 2, 12], 1) == 14
    assert "22" in case.note() and "14" in case.note()
    resolved = dln_case([5, 12, 6], 4)
    assert min(resolved.energies) >= RESOLVED_ENERGY and resolved.resolved_truth is None and resolved.note() is None
    origin = dln_case([4, 3, 7], 0)
    assert origin.energies == [] and origin.resolved_truth is None


def test_families_from_the_resolved_seed_draw_only_teachers_the_data_resolve():
    later = held_out_family(RESOLVED_FAMILIES_FROM)
    assert len(later) == 24 and all(dln_case(w, r).resolved_truth is None for w, r in later)
    earlier = held_out_family(RESOLVED_FAMILIES_FROM - 2)  # the fifth family, drawn before the filter, unchanged
    assert earlier[:2] == [([3, 4, 4, 12], 2), ([6, 3, 2, 3, 11], 2)] and ([12, 6, 12, 2, 12], 2) in earlier
    assert any(dln_case(w, r).resolved_truth is not None for w, r in earlier)


def test_a_family_repeats_no_network_of_an_earlier_one():
    families = [held_out_family(seed) for seed in FAMILY_SEEDS]
    drawn = [(tuple(w), r) for family in families for w, r in family]
    assert len(drawn) == len(set(drawn)) == 24 * len(FAMILY_SEEDS)
    # the thirteenth family's draw met the tenth's [3, 4, 7] r3 and drew another in its place
    assert ([3, 4, 7], 3) in held_out_family(FAMILY_SEEDS[9]) and ([3, 4, 7], 3) not in held_out_family(FAMILY_SEEDS[12])
    assert held_out_family(FAMILY_SEEDS[12])[:2] == [([5, 3, 10, 6], 0), ([9, 11, 4, 9, 7, 6], 0)]
