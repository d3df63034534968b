"""A model's minibatch cross-entropy and its gradient under B stacked parameter sets in one C call
(models/mlp_native.c, models/transformer_native.c, built per shape by grokscope/native.py).

Every kernel takes one struct: the chain and example counts, the parameters [B, ...] in a fixed
order, the minibatch (x [B, ., m, 2], y [B, ., m], read in place through their chain strides), the
per-chain losses and the gradients, then the kernel's own settings (the transformer's α).
"""

from __future__ import annotations

import ctypes

import torch

from ..errors import ConfigError


def step_structure(name: str, n_params: int, settings: tuple[tuple[str, type], ...] = ()) -> type[ctypes.Structure]:
    """The ctypes mirror of a kernel's argument struct with ``n_params`` parameter arrays."""
    fields = [("chains", ctypes.c_int64), ("examples", ctypes.c_int64), ("params", ctypes.c_void_p * n_params),
              ("x", ctypes.c_void_p), ("x_stride", ctypes.c_int64), ("y", ctypes.c_void_p), ("y_stride", ctypes.c_int64),
              ("loss", ctypes.c_void_p), ("grads", ctypes.c_void_p * n_params), *settings]
    return type(name, (ctypes.Structure,), {"_fields_": fields})


class CompiledCrossEntropy:
    """Loss [B] and d loss / d params of B stacked models in one call: the numbers of the model's
    torch forward with the closed-form cross-entropy gradient, up to float rounding; every chain
    is computed on its own, so a chain's numbers do not depend on the others in the call.

    ``names`` lists the parameters in the kernel's order (None where this shape has none: the C
    code gets a null pointer); ``settings`` are the struct's trailing fields' values."""

    def __init__(self, library: ctypes.CDLL, function: str, structure: type[ctypes.Structure],
                 names: tuple[str | None, ...], settings: tuple = ()):
        self.fn = getattr(library, function)
        self.fn.argtypes = [ctypes.POINTER(structure)]
        self.fn.restype = ctypes.c_int
        self.structure, self.names, self.settings = structure, names, settings

    def accepts(self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> bool:
        """What the C code reads: float32 parameters and int64 tokens and targets, in CPU memory."""
        first = params[self.names[0]]
        return first.device.type == "cpu" and first.dtype == torch.float32 and x.dtype == y.dtype == torch.int64

    def __call__(self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss [B] and the gradient of every parameter on x [B, m, 2], y [B, m]."""
        loss, grads = self.in_order(params, x, y)
        return loss, {name: g for name, g in zip(self.names, grads) if name is not None}

    def in_order(self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, list]:
        """Loss [B] and the gradients as the kernel returns them, one per entry of ``names``."""
        if x.stride(-1) != 1 or x.stride(-2) != 2:
            x = x.contiguous()
        y = y if y.stride(-1) == 1 else y.contiguous()
        inputs = [None if name is None else params[name].contiguous() for name in self.names]
        grads = [None if t is None else torch.empty_like(t) for t in inputs]
        loss = torch.empty(x.shape[0])
        arrays = ctypes.c_void_p * len(self.names)
        step = self.structure(x.shape[0], x.shape[1], arrays(*(t.data_ptr() if t is not None else None for t in inputs)),
                              x.data_ptr(), x.stride(0), y.data_ptr(), y.stride(0), loss.data_ptr(),
                              arrays(*(g.data_ptr() if g is not None else None for g in grads)), *self.settings)
        status = self.fn(ctypes.byref(step))
        if status == -2:
            raise ConfigError(f"a token or target outside 0..{inputs[0].shape[1] - 1}: the data do not fit this model")
        if status != 0:
            raise MemoryError("no memory for the compiled step's scratch buffers")
        return loss, grads
