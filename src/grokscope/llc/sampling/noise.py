"""The chains' Gaussian noise: one independent stream per chain, a function of (chain key, step).

On a CPU the normals come from Philox4x32-10 counters through Box–Muller (Salmon et al. 2011;
cuRAND's Philox4_32_10; numpy's Philox is its 64-bit sibling), as llc/sampling/noise_native.c
defines them: element e of step s of the chain whose 64-bit key is k depends only on (k, s, e),
so a chain's noise is the same alone or batched, in any block of steps, on any thread; the C code
is about twice as fast as torch's generator. :func:`reference_normals` computes the same numbers in
numpy (the tests' reference). Without a C compiler (or with ``GROKSCOPE_NATIVE=0``), and on an
accelerator, torch operations compute the same stream for every chain at once, a block of steps at
a time (:class:`CounterNoise`): a GPU and a CPU draw the same normals for the same keys, to float
rounding.
"""

from __future__ import annotations

import ctypes
from typing import Sequence

import numpy as np
import torch

from ... import native

M0, M1 = 0xD2511F53, 0xCD9E8D57  # Philox4x32's multipliers
W0, W1 = 0x9E3779B9, 0xBB67AE85  # and its key increments (Weyl sequence)
LOW = 0xFFFFFFFF
LANES, GROUPS = 8, 4  # the layout of llc/sampling/noise_native.c: a chunk is GROUPS * LANES counters
CHUNK = 4 * GROUPS * LANES  # normals per chunk
NOISE_BLOCK_ELEMENTS = 1 << 22  # on an accelerator, per chain: one block of noise holds at most this many numbers


def block_length(n_params: int) -> int:
    """Steps drawn per call where noise (on an accelerator) and minibatch indices come in blocks: a
    function of the model size only (never of the number of chains)."""
    return max(1, min(64, NOISE_BLOCK_ELEMENTS // max(n_params, 1)))


def philox4x32_10(counters: np.ndarray, k0: np.ndarray | int, k1: np.ndarray | int) -> np.ndarray:
    """The four 32-bit words of each counter [4, ...] under the key (k0, k1) (broadcast against the
    counters' trailing dimensions): ten Philox rounds in uint64 arithmetic, where every 32 × 32-bit
    product is exact."""
    c0, c1, c2, c3 = (np.asarray(w, dtype=np.uint64) for w in counters)
    k0, k1 = np.asarray(k0, dtype=np.uint64), np.asarray(k1, dtype=np.uint64)
    for _ in range(10):
        p0, p1 = c0 * np.uint64(M0), c2 * np.uint64(M1)
        c0, c1, c2, c3 = (p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & np.uint64(LOW), (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & np.uint64(LOW)
        k0, k1 = (k0 + np.uint64(W0)) & np.uint64(LOW), (k1 + np.uint64(W1)) & np.uint64(LOW)
    return np.stack([c0, c1, c2, c3]).astype(np.uint32)


def reference_normals(keys: Sequence[int], step: int, n: int) -> np.ndarray:
    """[B, n] float32: the normals of step ``step`` of the chains with these keys, as
    llc/sampling/noise_native.c defines them (numpy; the C code agrees to float rounding)."""
    keys = np.asarray(keys, dtype=np.uint64)[:, None]
    chunks = -(-n // CHUNK)
    counter = np.arange(chunks * GROUPS * LANES, dtype=np.uint64)[None, :]
    zeros = np.zeros_like(counter)
    words = philox4x32_10([counter, zeros + (step & LOW), zeros + (step >> 32), zeros], keys & np.uint64(LOW), keys >> np.uint64(32))
    scale, two_pi = np.float32(2.0**-24), np.float32(2 * np.pi)
    outputs = []
    for radius, angle in ((words[0], words[1]), (words[2], words[3])):
        r = np.sqrt(np.float32(-2.0) * np.log(((radius >> 8) + 1).astype(np.float32) * scale))
        a = two_pi * ((angle >> 8).astype(np.float32) * scale)
        outputs += [r * np.cos(a), r * np.sin(a)]
    z = np.stack(outputs, axis=1)  # [B, q, counter], counter = (chunk, group, lane)
    z = z.reshape(len(keys), 4, chunks, GROUPS, LANES).transpose(0, 2, 3, 1, 4)  # element = (chunk, group, q, lane)
    return np.ascontiguousarray(z.reshape(len(keys), -1)[:, :n])


class PhiloxNoise:
    """Each chain's normals at each step [B, P]: one C call for every chain (numpy without a compiler).
    With ``refill``, every call refills and returns the same tensor (the sampler's loop, which cuts
    it into views once); else each call returns a new one."""

    def __init__(self, keys: Sequence[int], n_params: int, refill: bool = False):
        self.keys, self.n_params = np.asarray(keys, dtype=np.uint64), n_params
        self.out = torch.empty(len(self.keys), n_params) if refill else None
        library = native.load("llc/sampling/noise_native.c")
        self.fill = None
        if library is not None:
            self.fill = library.chain_normals
            self.fill.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
            self.fill.restype = None

    def keep(self, rows: Sequence[int]) -> "PhiloxNoise":
        """The noise of chains ``rows`` alone (the same numbers: a function of key and step)."""
        return PhiloxNoise(self.keys[list(rows)], self.n_params, refill=self.out is not None)

    def at(self, step: int) -> torch.Tensor:
        if self.fill is None:
            normals = torch.from_numpy(reference_normals(self.keys, step, self.n_params))
            return normals if self.out is None else self.out.copy_(normals)
        out = self.out if self.out is not None else torch.empty(len(self.keys), self.n_params)
        self.fill(self.keys.ctypes.data, len(self.keys), step, self.n_params, out.data_ptr())
        return out


def philox_normals(keys: torch.Tensor, steps: torch.Tensor, n: int) -> torch.Tensor:
    """[B, T, n] float32: :func:`reference_normals` for chains ``keys`` [B] (int64 holding the 64-bit
    keys' bits) at ``steps`` [T], in torch operations on the keys' device: Philox in int64, where a
    32 × 32-bit product wraps modulo 2^64 and its high word is (p >> 32) & LOW even when p reads
    negative. The same numbers as the C code to float rounding, on a CPU or an accelerator."""
    device = keys.device
    chunks = -(-n // CHUNK)
    counter = torch.arange(chunks * GROUPS * LANES, device=device, dtype=torch.int64).view(1, 1, -1)
    c0 = counter.expand(len(keys), len(steps), -1)
    c1 = (steps & LOW).view(1, -1, 1).expand_as(c0)
    c2 = (steps >> 32).view(1, -1, 1).expand_as(c0)
    c3 = torch.zeros_like(c0)
    k0, k1 = (keys & LOW).view(-1, 1, 1), ((keys >> 32) & LOW).view(-1, 1, 1)
    for _ in range(10):
        p0, p1 = c0 * M0, c2 * M1
        c0, c1, c2, c3 = ((p1 >> 32) & LOW) ^ c1 ^ k0, p1 & LOW, ((p0 >> 32) & LOW) ^ c3 ^ k1, p0 & LOW
        k0, k1 = (k0 + W0) & LOW, (k1 + W1) & LOW
    scale = 2.0**-24
    outputs = []
    for radius, angle in ((c0, c1), (c2, c3)):
        r = torch.sqrt(-2.0 * torch.log(((radius >> 8) + 1).float() * scale))
        a = (2 * np.pi) * ((angle >> 8).float() * scale)
        outputs += [r * torch.cos(a), r * torch.sin(a)]
    z = torch.stack(outputs, dim=2)  # [B, T, q, counter], counter = (chunk, group, lane)
    z = z.view(len(keys), len(steps), 4, chunks, GROUPS, LANES).permute(0, 1, 3, 4, 2, 5)  # element = (chunk, group, q, lane)
    return z.reshape(len(keys), len(steps), -1)[:, :, :n]


class CounterNoise:
    """The C code's counter-based stream in torch operations (:func:`philox_normals`), for an
    accelerator or a CPU without a C compiler: every chain's numbers for a block of steps in one
    batched computation (no generator call per chain), the same numbers as the C code to float
    rounding. Being a function of (key, step, element), any blocking gives the same numbers."""

    def __init__(self, keys: Sequence[int], n_params: int, device: torch.device):
        bits = np.asarray(keys, dtype=np.uint64).view(np.int64)
        self.keys = torch.from_numpy(bits.copy()).to(device)
        self.n_params, self.device = n_params, device
        # int64 words of a block: about 10 × 8 bytes a number live at once, so its size is bounded by chains too
        self.length = max(1, min(block_length(n_params), NOISE_BLOCK_ELEMENTS // max(len(keys) * n_params, 1)))
        self.start, self.block = 0, None

    def keep(self, rows: Sequence[int]) -> "CounterNoise":
        """The noise of chains ``rows`` alone (the same numbers: a function of key and step)."""
        kept = CounterNoise.__new__(CounterNoise)
        kept.keys, kept.n_params, kept.device, kept.length = self.keys[list(rows)], self.n_params, self.device, self.length
        kept.start, kept.block = self.start, None if self.block is None else self.block[list(rows)]
        return kept

    def at(self, step: int) -> torch.Tensor:
        if self.block is None or not self.start <= step < self.start + self.block.shape[1]:
            self.start = step
            steps = torch.arange(step, step + self.length, device=self.device, dtype=torch.int64)
            self.block = philox_normals(self.keys, steps, self.n_params)
        return self.block[:, step - self.start]


def counter_noise_compiled(device: torch.device) -> bool:
    """Whether chains on ``device`` draw the counter-based stream from the C code: on a CPU where it
    is built. Elsewhere torch operations compute the same stream (:class:`CounterNoise`)."""
    return device.type == "cpu" and native.load("llc/sampling/noise_native.c") is not None


def chain_noise(keys: Sequence[int], n_params: int, device: torch.device) -> PhiloxNoise | CounterNoise:
    """The noise source for chains with these 64-bit keys (one each) on ``device``: the compiled
    counter-based stream refilling one tensor, else the same stream in torch operations."""
    if counter_noise_compiled(device):
        return PhiloxNoise(keys, n_params, refill=True)
    return CounterNoise(keys, n_params, device)


def steps_held(n_params: int, device: torch.device) -> int:
    """Steps of noise held in memory per chain at once, at most (for memory estimates)."""
    return 1 if counter_noise_compiled(device) else block_length(n_params)
