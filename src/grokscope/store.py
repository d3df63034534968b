"""The run directory on disk: a writer lock, safetensors checkpoints, metrics, manifest.
File names come from :mod:`grokscope.layout`."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import stat
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from .atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from .errors import CheckpointError, RunLockedError
from .layout import CHECKPOINT_PATTERN, RunPaths
from .version import __version__

METRIC_COLUMNS = ["step", "train_loss", "test_loss", "train_acc", "test_acc"]
TEXT_LIMIT = 256 << 20  # a run's JSON and CSV files are kilobytes to a few megabytes
CHECKPOINT_LIMIT = 4 << 30  # the largest built-in model's checkpoint is about 1 MB


def check_inside(path: Path, root: Path, error: type[Exception] = CheckpointError) -> None:
    """Raise one ``error`` when ``path``, its symlinks resolved, leads outside ``root`` (a run or
    sweep directory from elsewhere must not make grokscope read, or embed, other files)."""
    real, base = os.path.realpath(path), os.path.realpath(root)
    if os.path.commonpath([real, base]) != base:
        raise error(f"{path} leads outside {root} (to {real}); refused")


def read_bounded(path: Path, limit: int, error: type[Exception] = CheckpointError, root: Path | None = None) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, or one ``error`` naming it: missing,
    a directory, a device or FIFO (opened without blocking, never read), too large, or (given
    ``root``) leading outside ``root``."""
    if root is not None:
        check_inside(path, root, error)
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise error(f"missing file: {path}") from None
    except OSError as err:
        raise error(f"cannot read {path} ({err.strerror})") from None
    try:
        info = os.fstat(handle)
        if stat.S_ISDIR(info.st_mode):
            raise error(f"{path} is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{path} is not a regular file (a device, FIFO or socket); refused")
        if info.st_size > limit:
            raise error(f"{path} is {info.st_size} bytes, more than the {limit} such a file may be; refused")
        with os.fdopen(os.dup(handle), "rb") as stream:
            data = stream.read(limit + 1)
        if len(data) > limit:
            raise error(f"{path} grew past {limit} bytes while being read; refused")
        return data
    except OSError as err:
        raise error(f"cannot read {path} ({err.strerror})") from None
    finally:
        os.close(handle)


class RunLock:
    """An exclusive, non-blocking lock on a run directory, released by the OS if the process dies."""

    def __init__(self, run_dir: Path):
        self.path = RunPaths(run_dir).lock
        self._handle: Any = None

    def __enter__(self) -> "RunLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a+")
        except OSError as err:
            raise RunLockedError(f"cannot write to {self.path.parent} ({err.strerror})") from None
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.seek(0)
            holder = self._handle.read().strip() or "unknown"
            self._handle.close()
            raise RunLockedError(f"{self.path.parent} is being written by another process (PID {holder}); "
                                 "wait for it to finish") from None
        # the holder's PID, for the message above; a killed holder's lock is released by the OS
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(str(os.getpid()))
        self._handle.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Atomically write a safetensors file."""
    contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, save_safetensors_bytes(contiguous, metadata=metadata))


def load_tensors(path: Path, expected_shapes: dict[str, tuple[int, ...]] | None = None,
                 root: Path | None = None) -> dict[str, torch.Tensor]:
    """Read a safetensors file (inside ``root`` when given); report a missing, truncated or
    mismatched file by its path."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    data = read_bounded(path, CHECKPOINT_LIMIT, root=root)
    try:
        tensors = load_safetensors_bytes(data)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"checkpoint {path} is truncated or not a safetensors file ({err})") from None
    if expected_shapes is not None:
        check_shapes(tensors, expected_shapes, str(path))
    return tensors


def read_metadata(path: Path, root: Path | None = None) -> dict[str, str]:
    """The string metadata stored in a safetensors file's header (inside ``root`` when given)."""
    if root is not None:
        check_inside(path, root)
    if path.exists() and not path.is_file():
        raise CheckpointError(f"{path} is not a regular file; refused")
    try:
        with safe_open(str(path), "pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"cannot read {path} ({err})") from None


def check_shapes(tensors: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], source: str) -> None:
    """Raise CheckpointError naming ``source`` when keys, shapes or dtypes (float32 weights) differ from ``expected``."""
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise CheckpointError(f"checkpoint {source} does not fit the model: missing {missing}, unexpected {extra}")
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != tuple(shape):
            raise CheckpointError(
                f"checkpoint {source} does not fit the model: {name} has shape "
                f"{tuple(tensors[name].shape)}, expected {tuple(shape)}"
            )
        if tensors[name].dtype != torch.float32:
            raise CheckpointError(f"checkpoint {source}: {name} is stored as {tensors[name].dtype}, expected float32 weights "
                                  "(a damaged or hand-edited file)")


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint in the run, by step."""
    folder = RunPaths(run_dir).checkpoints
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = CHECKPOINT_PATTERN.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def write_metrics(run_dir: Path, rows: list[dict[str, float]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (int(row[k]) if k == "step" else f"{row[k]:.8g}") for k in METRIC_COLUMNS})
    atomic_write_text(RunPaths(run_dir).metrics, buffer.getvalue())


def read_text(path: Path, error: type[Exception] = CheckpointError, root: Path | None = None) -> str:
    """A text file's contents, or one ``error`` naming the file (missing, a directory, a device or
    FIFO, larger than TEXT_LIMIT, not UTF-8, outside ``root`` when given)."""
    path = Path(path)
    try:
        return read_bounded(path, TEXT_LIMIT, error, root).decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from None


def read_csv_rows(path: Path, columns: list[str], root: Path | None = None) -> list[dict[str, str]]:
    """The rows of a CSV file with a header holding ``columns`` (inside ``root`` when given); a
    short, long or headerless row is named by file and line."""
    rows = []
    reader = csv.DictReader(io.StringIO(read_text(path, root=root)))
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
        raise CheckpointError(f"{path}: the header lacks {missing} (not a grokscope table, or damaged)")
    for line, row in enumerate(reader, start=2):
        if None in row or any(value is None for value in row.values()):
            cells = sum(value is not None for key, value in row.items() if key is not None) + len(row.get(None) or [])
            raise CheckpointError(f"{path}, line {line}: {cells} cells where the header has "
                                  f"{len(reader.fieldnames)} (a cut-short or damaged row)")
        rows.append(row)
    return rows


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    path = RunPaths(run_dir).metrics
    if not path.exists():
        return []
    rows = []
    for line, row in enumerate(read_csv_rows(path, METRIC_COLUMNS, run_dir), start=2):
        try:
            rows.append({k: (int(row[k]) if k == "step" else float(row[k])) for k in METRIC_COLUMNS})
        except ValueError:
            raise CheckpointError(f"{path}, line {line}: not a number in {dict((k, row[k]) for k in METRIC_COLUMNS)}") from None
    return rows


def read_json(path: Path, root: Path | None = None) -> Any:
    """A JSON file's value (inside ``root`` when given), or one CheckpointError naming the file."""
    try:
        return json.loads(read_text(path, root=root))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON ({err})") from None


def write_manifest(run_dir: Path, config_hash: str, complete: bool, command: str | None = None, **extra: object) -> None:
    """Provenance of a run: package and torch versions, config hash, the command that made it
    (as its caller states it: the CLI line, a sweep point, or the Python API), completeness."""
    atomic_write_json(
        RunPaths(run_dir).manifest,
        {
            "package": "grokscope",
            "version": __version__,
            "torch_version": torch.__version__,
            "config_hash": config_hash,
            "command": command,
            "complete": complete,
            **extra,
        },
    )
