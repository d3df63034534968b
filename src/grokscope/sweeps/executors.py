"""Where a sweep's units run: worker processes on this machine (default) or tasks on a Ray cluster.

Both yield (task, rows) as units finish. A unit that crashes its worker comes back as failed
rows naming the crash; the other units go on.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Iterator

from ..errors import ConfigError
from .work import UnitTask, failed_row, run_unit

Rows = list[dict[str, Any]]


def _crashed(task: UnitTask, err: BaseException) -> Rows:
    return [failed_row(point, f"worker crashed: {type(err).__name__}: {err}") for point in task.points]


def default_workers(threads: int) -> int:
    return max(1, (os.cpu_count() or 1) // threads)


def exit_with_parent(parent: int, interval: float = 1.0) -> None:
    """In a worker: exit as soon as the sweep process that spawned it is gone (even SIGKILLed, when
    nothing can tell the workers), instead of living on as an orphan."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def run_local(tasks: list[UnitTask], address: str | None, workers: int) -> Iterator[tuple[UnitTask, Rows]]:
    """Units in ``workers`` fresh processes (spawned: no forked torch thread pools), each of which
    exits when this process dies."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=exit_with_parent, initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(run_unit, task): task for task in tasks}
        try:
            for future in as_completed(futures):
                task = futures[future]
                try:
                    yield task, future.result()
                except Exception as err:
                    yield task, _crashed(task, err)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def run_ray(tasks: list[UnitTask], address: str | None, workers: int) -> Iterator[tuple[UnitTask, Rows]]:
    """Units as Ray tasks: on the cluster at ``address``, on the one this process already joined,
    or on a local cluster of ``workers`` CPUs started (and stopped) here."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'grokscope[ray]'") from None
    started = not ray.is_initialized()
    if started:
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as err:
            hint = ""
            if "auth" in repr(err.__cause__).lower():
                hint = " (the cluster uses token authentication: export RAY_AUTH_MODE=token with its token in ~/.ray/auth_token)"
            raise ConfigError(f"cannot start or join a Ray cluster at {address or 'localhost'}: {err}{hint}") from None
    try:
        remote = ray.remote(run_unit)
        pending = {remote.options(num_cpus=task.threads).remote(task): task for task in tasks}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                task = pending.pop(ref)
                try:
                    yield task, ray.get(ref)
                except Exception as err:
                    yield task, _crashed(task, err)
    finally:
        if started:
            ray.shutdown()


# name -> executor(tasks, address, workers). Adding one is a function with that signature plus one
# line here; `grokscope sweep --executor` takes its choices from this.
EXECUTORS = {"local": run_local, "ray": run_ray}
