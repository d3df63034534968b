"""Memory estimates: a request too big for this machine is refused (with the estimate and the
setting that helps) or split, before anything is allocated or written."""

from __future__ import annotations

import os

import torch

from .errors import ConfigError

USABLE_FRACTION = 0.8  # of the memory available now


def available_bytes(device: str | torch.device = "cpu") -> int:
    """Memory available now: MemAvailable on Linux (page cache counts as free), else free pages;
    on a CUDA device its free memory."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def gigabytes(n: float) -> str:
    return f"{n / 2**30:.1f} GB"


def check_memory(needed: float, what: str, hint: str, device: str | torch.device = "cpu") -> None:
    available = available_bytes(device)
    if needed > USABLE_FRACTION * available:
        raise ConfigError(f"{what} needs about {gigabytes(needed)} of memory and {gigabytes(available)} is available; {hint}")


def training_bytes(config, runs: int = 1) -> float:
    """The largest allocation of training: the full-batch evaluation over every pair (logits and
    the hidden activations, about three float32 copies each during the loss)."""
    p, model = config.task.p, config.model
    width = model.hidden_size if model.kind == "mlp" else (model.d_mlp or 4 * model.d_model) + 4 * model.d_model
    return 3 * 4 * runs * p * p * (p + width)
