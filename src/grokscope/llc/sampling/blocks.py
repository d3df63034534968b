"""Sampling in blocks until settled: the schedule both the estimator and the preconditioned grid use.

Groups of ``chains`` consecutive chains (a parameter set's, or one step size's) run together for
``first`` steps, then blocks that double the steps run so far, up to ``cap``. After each block every
group's record so far is judged; a group whose judge says more steps cannot help, or whose budget is
spent, is done and leaves the batch, so the batch shrinks and the others go on from where they were.
An entry that stopped with more steps still able to help says so in its flags ("budget spent").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Generic, Hashable, Protocol, Sequence, TypeVar

import torch

from .observers import chain_columns, join_blocks


class Judged(Protocol):
    """What the schedule needs of an entry: its flags."""

    flags: list[str]


Group = TypeVar("Group", bound=Hashable)
Entry = TypeVar("Entry", bound=Judged)


@dataclass
class Finished(Generic[Entry]):
    """A group's judged entry and its record over every block it ran."""

    entry: Entry
    record: dict[str, torch.Tensor]


def run_in_blocks(
    groups: Sequence[Group],
    chains: int,
    first: int,
    cap: int,
    run: Callable[[int, int], dict[str, torch.Tensor]],
    judge: Callable[[Group, dict[str, torch.Tensor]], tuple[Entry, bool]],
    keep: Callable[[list[int], list[Group]], None],
    budget: str,
    max_seconds: float | None = None,
) -> dict[Group, Finished[Entry]]:
    """Each group's :class:`Finished`. ``run(start, stop)`` runs the remaining chains over steps
    [start, stop) and returns their block record ([.., B] in chain order, as llc/sampling/observers.py
    records); ``judge(group, record)`` gives the group's entry and whether more steps can help;
    ``keep(rows, groups)`` drops every chain but ``rows`` (the remaining ``groups``' chains);
    ``budget`` names the cap in the flag of an entry that reached it ("budget spent: 24000 {budget}")."""
    blocks: dict[Group, list[dict[str, torch.Tensor]]] = {g: [] for g in groups}
    done: dict[Group, Finished[Entry]] = {}
    active, start, stop, began = list(groups), 0, min(first, cap), time.perf_counter()
    while active:
        recorded = run(start, stop)
        spent = stop >= cap or (max_seconds is not None and time.perf_counter() - began > max_seconds)
        staying = []
        for j, group in enumerate(active):
            own = slice(j * chains, (j + 1) * chains)
            blocks[group].append({key: chain_columns(key, value, own) for key, value in recorded.items()})
            record = join_blocks(blocks[group])
            entry, more_steps_help = judge(group, record)
            if more_steps_help and not spent:
                staying.append(j)
                continue
            if more_steps_help:
                entry.flags.append(f"budget spent: {stop} {budget}")
            done[group] = Finished(entry, record)
            del blocks[group]
        if not staying:
            break
        if len(staying) < len(active):
            active = [active[j] for j in staying]
            keep([j * chains + c for j in staying for c in range(chains)], active)
        start, stop = stop, min(2 * stop, cap)
    return done
