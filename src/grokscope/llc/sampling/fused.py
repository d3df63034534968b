"""SGLD's update with its noise drawn in the same pass, on a CPU (llc/sampling/noise_native.c:
``sgld_step``): each block of normals is used while it is in registers and cache, not written out
and read back by three more passes. The numbers are the kernel's own, bit for bit
(llc/sampling/kernels/sgld.py computes the same products and sums in the same order), so whether a
step takes this path never changes a chain.

The loop takes it when the kernel is plain SGLD, the noise is the compiled counter-based stream and
no observer reads the noise (``uses_noise = False``); it moves the state in place.
"""

from __future__ import annotations

import ctypes
from typing import Sequence

import torch

from ... import native
from .kernels import SGLD
from .kernels.sgld import SGLDState
from .noise import PhiloxNoise
from .tree import Tree


class FusedSGLDStep:
    """``fused(grad, s)``: the SGLD move at step s of every chain of the state it was made for, in place."""

    def __init__(self, state: SGLDState, noise: PhiloxNoise, function):
        self.names = list(state.w)
        self.noise, self.fn = noise, function
        self.arrays = arrays = ctypes.c_void_p * len(self.names)
        self.sizes = (ctypes.c_int64 * len(self.names))(*(state.w[n][0].numel() for n in self.names))
        self.w = arrays(*(state.w[n].data_ptr() for n in self.names))
        self.pull = arrays(*(state.pull[n].data_ptr() for n in self.names))
        first = self.names[0]
        self.coefficients = [getattr(state, part)[first].reshape(-1).contiguous()
                             for part in ("shrink", "gradient_scale", "noise_scale")]

    @classmethod
    def for_loop(cls, kernel, state, noise, observers: Sequence) -> "FusedSGLDStep | None":
        """The fused step when it applies to this loop (see the module's docstring), else None."""
        if type(kernel) is not SGLD or not isinstance(noise, PhiloxNoise) or noise.fill is None:
            return None
        if any(getattr(observer, "uses_noise", True) for observer in observers):
            return None
        tensors = [t for tree in (state.w, state.pull) for t in tree.values()]
        if not all(t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() for t in tensors):
            return None
        library = native.load("llc/sampling/noise_native.c")
        function = library.sgld_step
        function.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                             ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                             ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        function.restype = None
        return cls(state, noise, function)

    def __call__(self, grad: Tree, step: int) -> None:
        grads = [grad[n] if grad[n].is_contiguous() else grad[n].contiguous() for n in self.names]
        keys = self.noise.keys
        self.fn(keys.ctypes.data, len(keys), step, len(self.names), self.sizes, self.w, self.pull,
                self.arrays(*(g.data_ptr() for g in grads)), *(c.data_ptr() for c in self.coefficients))
