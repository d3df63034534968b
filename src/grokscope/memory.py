"""Memory estimates: a request too big for this machine is refused (with the estimate and the
setting that helps) or split, before anything is allocated or written."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import torch

from .errors import ConfigError

USABLE_FRACTION = 0.8  # of the memory available now


def available_bytes(device: str | torch.device = "cpu") -> int:
    """Memory this process can still take: on a CPU the smallest of MemAvailable (page cache
    counts as free; else the free pages), the room left under the address-space limit
    (RLIMIT_AS, `ulimit -v`) and under the cgroup's memory.max; on a CUDA device its free memory."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    limits = [_meminfo_available(), _address_space_left(), _cgroup_left()]
    return min(limit for limit in limits if limit is not None)


def _meminfo_available() -> int:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _address_space_left() -> int | None:
    """RLIMIT_AS minus the address space this process already maps (None: no limit)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/statm") as handle:
            mapped = int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        mapped = 0
    return max(0, soft - mapped)


def _cgroup_left() -> int | None:
    """The cgroup (v2) memory.max minus memory.current (None: no limit, or no cgroup v2)."""
    try:
        root = Path("/sys/fs/cgroup")
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((root / "memory.current").read_text()))
    except (OSError, ValueError):
        return None


def gigabytes(n: float) -> str:
    return f"{n / 2**30:.1f} GB"


def check_memory(needed: float, what: str, hint: str, device: str | torch.device = "cpu") -> None:
    available = available_bytes(device)
    if needed > USABLE_FRACTION * available:
        raise ConfigError(f"{what} needs about {gigabytes(needed)} of memory and {gigabytes(available)} is available "
                          f"(the least of free memory, the address-space limit and the cgroup limit); {hint}")


def training_bytes(config, runs: int = 1) -> float:
    """The largest allocation of training: the full-batch evaluation over every pair (logits and
    the hidden activations, about three float32 copies each during the loss)."""
    p = config.task.p
    return 3 * 4 * runs * p * p * (p + config.model.activation_width())
