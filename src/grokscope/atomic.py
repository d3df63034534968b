"""Files written whole: a reader, or a kill mid-write, never sees half a file. No torch here, so a
figure process (figure_process.py) can write through it without importing torch."""

from __future__ import annotations

import json
import math
import numbers
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .errors import WriteError


NAME_MAX, PATH_MAX = 255, 4096  # Linux's limits on a file name and a path, in bytes
MIN_FREE_BYTES = 16 << 20  # the results of a command are kilobytes to a few megabytes


def check_path_length(path: Path, flag: str = "") -> None:
    """Refuse a path the file system cannot hold (before it is touched: it would raise OSError)."""
    text = os.fsencode(str(Path(path).absolute()))
    if len(text) >= PATH_MAX or any(len(part) > NAME_MAX for part in text.split(b"/")):
        where = f"{flag} " if flag else ""
        raise WriteError(f"{where}{path}: a file name over {NAME_MAX} bytes or a path over {PATH_MAX} cannot be written")


def check_writable(*paths: Path, flag: str = "") -> None:
    """Before anything is computed: each file of ``paths`` can be written (its name and path not
    too long, not an existing directory, its folder creatable and writable, some space free).
    Raises WriteError naming the problem (and ``flag``, the option that chose the place)."""
    where = f"{flag} " if flag else ""
    for path in map(Path, paths):
        check_path_length(path, flag)
        if path.is_dir():
            raise WriteError(f"{where}{path} is a directory where a file must be written; move it away")
        existing = next(folder for folder in path.parents if folder.exists())  # nothing is created here
        if not existing.is_dir():
            raise WriteError(f"{where}cannot create {path.parent}: {existing} is not a directory")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise WriteError(f"{where}cannot create or write into {path.parent} ({existing} is read-only or not ours)")
        free = shutil.disk_usage(existing).free
        if free < MIN_FREE_BYTES:
            raise WriteError(f"{where}only {free >> 20} MB free where {path.name} goes; free some space first")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader (or a kill) never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def json_safe(value: Any) -> Any:
    """NaN and inf become None (JSON has no such numbers), so files stay valid JSON for any reader."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, numbers.Real) and not isinstance(value, int) and hasattr(value, "item"):
        return json_safe(value.item())  # numpy and torch scalars, without importing numpy here
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")
