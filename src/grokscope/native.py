"""Small C kernels (the models' steps, the chains' noise and SGLD update), compiled on first use and cached.

A kernel's source (a ``.c`` file in the package, named relative to it: ``models/mlp_native.c``) is
compiled once per set of constants (``-DP=53 -DD=12 ...``) with the machine's C compiler (``$CC``,
else cc, gcc or clang) for this CPU (``-march=native``), into ``$GROKSCOPE_NATIVE_CACHE`` (default
``~/.cache/grokscope/native``), under a name hashed from the source (and the headers beside it),
the flags, the constants and the CPU, so an edit or another machine sharing the directory never
loads a stale library. A build takes well under a second; it is written to a temporary file and
renamed, so processes building at once never see half a library.

Every caller keeps its Python path: with no compiler, a failed build, or ``GROKSCOPE_NATIVE=0``,
:func:`load` returns None (a failed build says why, once) and nothing else changes.

The flags are -ffast-math without its finite-math assumption: a diverging chain's inf and nan must
reach the loss, where the sampler flags them.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)
PACKAGE = Path(__file__).parent

FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fno-signed-zeros",
         "-fassociative-math", "-freciprocal-math", "-shared", "-fPIC")


def enabled() -> bool:
    """False when the environment asks for the Python paths (``GROKSCOPE_NATIVE=0``)."""
    return os.environ.get("GROKSCOPE_NATIVE", "1") != "0"


def cache_dir() -> Path:
    return Path(os.environ.get("GROKSCOPE_NATIVE_CACHE") or Path.home() / ".cache" / "grokscope" / "native")


@functools.lru_cache(maxsize=1)
def _cpu_signature() -> str:
    """What -march=native depends on: the machine and its instruction-set flags."""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = ""
    return f"{platform.machine()} {platform.processor()} {flags}"


def library_path(directory: Path, source: str, constants: dict[str, int], compiler: str) -> Path:
    """Where the library of ``source`` built with ``constants`` is cached in ``directory``."""
    path = PACKAGE / source
    texts = [path.read_bytes(), *(header.read_bytes() for header in sorted(path.parent.glob("*.h")))]  # what it may include
    key = repr((texts, FLAGS, sorted(constants.items()), compiler, _cpu_signature())).encode()
    return directory / f"{Path(source).stem}-{hashlib.sha256(key).hexdigest()[:16]}.so"


def compiler() -> str | None:
    """The C compiler's path: ``$CC`` when set, else the first of cc, gcc and clang found; or None."""
    if "CC" in os.environ:
        return shutil.which(os.environ["CC"])
    return next((path for name in ("cc", "gcc", "clang") if (path := shutil.which(name))), None)


@functools.lru_cache(maxsize=None)
def _build_and_load(source: str, constants: tuple[tuple[str, int], ...], compiler: str, directory: Path) -> ctypes.CDLL | None:
    target = library_path(directory, source, dict(constants), compiler)
    if not target.exists():
        tmp = None
        try:  # an unwritable cache, a missing or failing compiler: all end on the torch path
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
            os.close(fd)
            command = [compiler, *FLAGS, *(f"-D{k}={v}" for k, v in constants), "-o", tmp, str(PACKAGE / source), "-lm"]
            subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
            os.replace(tmp, target)
        except (OSError, subprocess.SubprocessError) as error:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            detail = getattr(error, "stderr", None) or error
            log.warning("building %s failed, so its Python path runs instead (slower): %s", source, detail)
            return None
    try:
        return ctypes.CDLL(str(target))
    except OSError as error:  # e.g. a libm without the vector functions the build referred to
        log.warning("loading %s failed, so its Python path runs instead (slower): %s", source, error)
        return None


def load(source: str, **constants: int) -> ctypes.CDLL | None:
    """The compiled library of ``source`` for these shape constants, or None (see the module doc)."""
    if not enabled():
        return None
    path = compiler()
    if path is None:
        log.info("no C compiler found: %s runs on its Python path", source)
        return None
    return _build_and_load(source, tuple(sorted(constants.items())), path, cache_dir())
