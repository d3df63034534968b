"""The chains' noise (llc/sampling/noise.py, llc/sampling/noise_native.c): Philox4x32-10 against Random123's published
known answers, the C code against the numpy reference, and the numbers against N(0, 1)."""

import ctypes

import numpy as np
import pytest
import torch
from compiled import needs_compiler
from scipy import stats

from grokscope import native
from grokscope.llc.sampling.noise import (
    CounterNoise,
    PhiloxNoise,
    philox4x32_10,
    reference_normals,
)

needs_compiler = needs_compiler("the C generator")

# Random123's kat_vectors for philox4x32 with 10 rounds: counter, key, output
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0), (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter, key, expected", KNOWN_ANSWERS)
def test_philox_matches_random123_known_answers(counter, key, expected):
    words = philox4x32_10(np.array(counter, dtype=np.uint64)[:, None], *key)
    assert tuple(int(w) for w in words[:, 0]) == expected


@needs_compiler
@pytest.mark.parametrize("counter, key, expected", KNOWN_ANSWERS)
def test_the_c_philox_matches_random123_known_answers(counter, key, expected):
    library = native.load("llc/sampling/noise_native.c")
    out = (ctypes.c_uint32 * 4)()
    library.philox4x32_10((ctypes.c_uint32 * 4)(*counter), (ctypes.c_uint32 * 2)(*key), out)
    assert tuple(out) == expected


@needs_compiler
@pytest.mark.parametrize("n", [1, 7, 128, 130, 4428])
def test_the_c_generator_gives_the_reference_numbers(n):
    keys = [0, 1, 2**63 - 25, 123456789]
    noise = PhiloxNoise(keys, n)
    assert noise.fill is not None
    for step in (0, 1, 749, 2**32 + 3):  # a step past 2^32 uses the counter's second step word
        ours = noise.at(step).numpy()
        reference = reference_normals(keys, step, n)
        np.testing.assert_allclose(ours, reference, rtol=0, atol=2e-5)  # vector libm against numpy: a few ulps


def test_without_a_compiler_the_reference_runs(monkeypatch):
    monkeypatch.setenv("GROKSCOPE_NATIVE", "0")
    noise = PhiloxNoise([5, 6], 300)
    assert noise.fill is None
    assert torch.equal(noise.at(11), torch.from_numpy(reference_normals([5, 6], 11, 300)))


def test_a_chains_numbers_depend_on_its_key_step_and_element_only():
    together = PhiloxNoise([3, 9, 27], 500)
    alone = PhiloxNoise([9], 200)
    for step in (0, 42):
        assert torch.equal(together.at(step)[1, :200], alone.at(step)[0])  # other chains, a shorter vector
    assert not torch.equal(together.at(0)[1], together.at(1)[1])  # another step, other numbers
    assert not torch.equal(together.at(0)[0], together.at(0)[1])  # another chain, other numbers


def test_the_numbers_are_standard_normal_and_uncorrelated():
    keys, n, steps = list(range(8)), 4428, 64
    noise = PhiloxNoise(keys, n)
    draws = torch.stack([noise.at(step) for step in range(steps)]).double()  # [T, B, n]: 2.3 M numbers
    flat = draws.flatten()
    count = flat.numel()
    assert abs(flat.mean().item()) < 5 / count**0.5
    assert abs(flat.var().item() - 1) < 5 * (2 / count) ** 0.5
    assert stats.kstest(flat[:1_000_000].numpy(), "norm").pvalue > 1e-3
    tail = (flat.abs() > 3).double().mean().item()  # P(|z| > 3) = 0.0027
    assert abs(tail - 0.0026998) < 5 * (0.0027 / count) ** 0.5
    for a, b in ((draws[:-1], draws[1:]), (draws[:, :-1], draws[:, 1:]), (draws[..., :-1], draws[..., 1:])):
        # neighbouring steps, neighbouring chains, neighbouring elements
        r = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()
        assert abs(r) < 5 / a.numel() ** 0.5


@pytest.mark.parametrize("n", [1, 130, 4428])
def test_torch_operations_compute_the_same_stream_on_any_device(n):
    keys = [0, 1, 2**63 - 25, 123456789, 2**64 - 1]  # the top bit set: keys travel as int64 bits
    noise = CounterNoise(keys, n, torch.device("cpu"))  # the path an accelerator takes, run on the CPU
    for step in (0, 1, 749, 2**32 + 3, 750):  # a jump back and forth starts another block
        np.testing.assert_allclose(noise.at(step).numpy(), reference_normals(keys, step, n), rtol=0, atol=2e-5)
    alone = CounterNoise(keys, n, torch.device("cpu")).keep([3])
    assert torch.equal(alone.at(749)[0], noise.at(749)[3])


def test_a_refilled_source_returns_one_tensor_with_each_steps_numbers():
    refilled, fresh = PhiloxNoise([5, 6], 300, refill=True), PhiloxNoise([5, 6], 300)
    first = refilled.at(0)
    assert refilled.at(1) is first  # the sampler cuts it into views once
    assert torch.equal(first, fresh.at(1)) and not torch.equal(first, fresh.at(0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine: the GPU noise is not exercised")
def test_a_gpu_draws_the_cpus_normals_for_the_same_keys():
    keys, n = [0, 7, 2**64 - 1], 4428
    gpu = CounterNoise(keys, n, torch.device("cuda"))
    for step in (0, 3, 2**32 + 3):
        np.testing.assert_allclose(gpu.at(step).cpu().numpy(), reference_normals(keys, step, n), rtol=0, atol=2e-5)
