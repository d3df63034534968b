"""Observers: what the SGLD loop records, each in its own preallocated device buffer.

The loop calls ``observe(step, state, loss, loss_grad, noise, batch)`` on every observer with the
state whose loss and gradient on the minibatch ``batch`` = (x, y) [B, m, ...] were just computed
(before the kernel moves it), and reads ``result()`` (CPU tensors) once at the end of a block of
steps. An estimate that continues its chains runs a block at a time with fresh observers;
:func:`chain_columns` and :func:`join_blocks` turn the blocks' results into one record per set.
``noise`` is this step's: on a CPU its tensors are refilled at the next step, so an observer copies
what it keeps. Nothing here syncs with the host
inside the loop. Adding a measurement is one class with these two methods (devinterp's callbacks,
without host syncs); a user's own measurement is a :class:`UserObserver` passed to ``estimate_llc``.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence

import torch

from ...errors import ConfigError
from .kernels import Kernel, KernelState
from .objective import BatchedObjective
from .tree import Tree, flatten, leaves, per_chain_squared_norm

STEP_METRICS = ("gradient", "localisation", "weight_decay", "noise", "distance")


class Observer(Protocol):
    """``uses_noise``: whether ``observe`` reads ``noise``; an observer that says False is given
    None there and lets a CPU loop draw the noise inside the update (llc/sampling/fused.py).
    Observers without the attribute are given the noise."""

    uses_noise: bool

    def observe(self, step: int, state: KernelState, loss: torch.Tensor, loss_grad: Tree, noise: Tree,
                batch: tuple[torch.Tensor, torch.Tensor]) -> None: ...

    def result(self) -> dict[str, torch.Tensor]: ...


class UserObserver(Protocol):
    """A measurement from outside the package: ``estimate_llc(..., observers=[...])``. ``name`` keys
    its record and its entry (``CheckpointLLC.observed[name]``, stored in llc.json); ``make`` builds,
    for each block of steps [start, stop), an Observer whose ``result()`` is ``{name: tensor}`` with
    the steps first and the chains second ([steps, chains, ...]); ``summarise`` turns one parameter
    set's record, its blocks joined ([steps, its chains, ...]), into what its entry keeps (JSON-able).
    The tensors ``observe`` is given are overwritten by the next step (on a GPU, llc/sampling/graphed.py):
    copy what you keep."""

    name: str

    def make(self, start: int, stop: int, n_chains: int, device: torch.device) -> Observer: ...

    def summarise(self, series: torch.Tensor) -> Any: ...


RESERVED = ("losses", "samples", "sample_losses", "step_metrics", "anchor_distance")  # the built-in observers' record keys


def check_user_observers(observers: Sequence[UserObserver]) -> None:
    """Refuse names that would collide with a built-in record or with each other (one line each)."""
    names = [getattr(o, "name", None) for o in observers]
    for name in names:
        if not isinstance(name, str) or not name or name in RESERVED or name.endswith("_steps") \
                or name.startswith(("mala_", "probe_")):
            raise ConfigError(f"observer name {name!r}: give a name of your own (not {', '.join(RESERVED)}, nor one "
                              "ending in _steps or starting with mala_ or probe_)")
    if len(set(names)) != len(names):
        raise ConfigError(f"observers: two observers share a name ({names})")


def chain_columns(key: str, value: torch.Tensor, cols: slice) -> torch.Tensor:
    """The part of one recorded tensor that belongs to chains ``cols`` (the chain dimension of each
    record: none for the lists of steps, last for step metrics, first for MALA sums, else second)."""
    if key.endswith("_steps"):
        return value
    if key == "step_metrics":
        return value[:, :, cols]
    if key.startswith("mala_"):
        return value[cols]
    return value[:, cols]


def join_blocks(blocks: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The records of consecutive blocks of the same chains as one: series joined along their steps,
    MALA sums added, and the mean acceptance as ``mala_acceptance``."""
    joined = {key: torch.cat([b[key] for b in blocks]) for key in blocks[0] if not key.startswith("mala_")}
    if "mala_total" in blocks[0]:
        total, count = sum(b["mala_total"] for b in blocks), sum(b["mala_count"] for b in blocks)
        joined["mala_acceptance"] = total / count.clamp(min=1)
    return joined


class LossTrace:
    """The minibatch loss of every chain at every step of [start, stop): [stop − start, B]. Chains
    never interact, so one diverging disturbs no other (the summary cuts its draws from there on)."""

    uses_noise = False

    def __init__(self, start: int, stop: int, n_chains: int, device: torch.device):
        self.start = start
        self.losses = torch.empty(stop - start, n_chains, device=device)

    def observe(self, step, state, loss, loss_grad, noise, batch) -> None:
        self.losses[step - self.start] = loss

    def result(self) -> dict[str, torch.Tensor]:
        return {"losses": self.losses.cpu()}


class Distances:
    """‖w − w*‖² of every chain at every ``every``-th step of [start, stop) (counted from step 0, so
    blocks join into one series): with the losses of the same steps, how λ̂ responds to γ
    (llc/diagnostics/localisation.py). [S, B], and the steps."""

    uses_noise = False

    def __init__(self, start: int, stop: int, every: int, n_chains: int, device: torch.device):
        self.steps = list(range(-(-start // every) * every, stop, every))
        self.row = {step: i for i, step in enumerate(self.steps)}
        self.values = torch.empty(len(self.steps), n_chains, device=device)

    def observe(self, step, state, loss, loss_grad, noise, batch) -> None:
        row = self.row.get(step)
        if row is not None:
            names = list(state.w)
            self.values[row] = per_chain_squared_norm(torch._foreach_sub(leaves(state.w, names), leaves(state.anchor, names)))

    def result(self) -> dict[str, torch.Tensor]:
        return {"anchor_distance_steps": torch.tensor(self.steps, dtype=torch.long), "anchor_distance": self.values.cpu()}


def potential(loss: torch.Tensor, state: KernelState) -> torch.Tensor:
    """U(w) per chain [B] = nβ L(w) + (γ/2)||w − w*||² + (wd/2)||w||²: the negative log density
    of the localised tempered posterior (Lau et al. 2023)."""
    s, names = state.settings, list(state.w)
    w = leaves(state.w, names)
    distance = per_chain_squared_norm(torch._foreach_sub(w, leaves(state.anchor, names)))
    value = s.per_element("nbeta", loss, loss.dtype) * loss
    value.addcmul_(s.per_element("gamma", loss, loss.dtype), distance, value=0.5)
    return value.addcmul_(s.per_element("weight_decay", loss, loss.dtype), per_chain_squared_norm(w), value=0.5)


class ProposalScale:
    """A Gaussian proposal's scale tree made ready for :func:`log_proposal`: each entry's inverse
    scale (0 where the scale is 0: masked entries do not move and are skipped) and Σ log scale per
    chain over the moving entries. The scale keeps its own (often per-chain) shape: broadcasting
    repeats each of its entries equally often, so Σ log scale is its own sum times that count."""

    def __init__(self, scale: Tree, like: Tree):
        self.tree, self.names = scale, list(like)
        scales = leaves(scale, self.names)
        moving = [s > 0 for s in scales]
        safe = [torch.where(m, s, 1.0) for m, s in zip(moving, scales)]
        self.inverse = [torch.where(m, inverse, 0.0) for m, inverse in zip(moving, torch._foreach_reciprocal(safe))]
        self.log_scale = sum(log.flatten(1).sum(-1) * (like[name][0].numel() // log[0].numel())
                             for name, log in zip(self.names, torch._foreach_log(safe)))


def log_proposal(to: Tree, start: Tree, drift: Tree, scale: ProposalScale) -> torch.Tensor:
    """log q(to | start) per chain, up to a constant, for the Gaussian proposal
    N(start − drift, diag(scale²)), in three ``foreach`` passes over every entry and one reduction."""
    names = scale.names
    z = torch._foreach_sub(leaves(to, names), leaves(start, names))
    torch._foreach_add_(z, leaves(drift, names))
    torch._foreach_mul_(z, scale.inverse)
    return -0.5 * per_chain_squared_norm(z) - scale.log_scale


class MalaAcceptance:
    """Mean Metropolis–Hastings acceptance probability had the move from step t to t + 1 been a MALA
    proposal (Roberts & Tweedie 1996), for any kernel through its ``terms``, at every ``every``-th
    step after ``start``. Both ends are scored with the potential of minibatch t (one extra loss and
    gradient at w_{t+1} per measured move), so the figure reflects the step size, not the change of
    minibatch; it is still the minibatch potential's acceptance, a noisier figure than the full-batch one."""

    uses_noise = False

    def __init__(self, kernel: Kernel, objective: BatchedObjective, fixed: Tree, start: int, every: int,
                 n_chains: int, device: torch.device):
        self.kernel, self.objective, self.fixed, self.start, self.every = kernel, objective, fixed, start, every
        self.total = torch.zeros(n_chains, device=device)
        self.count = torch.zeros(n_chains, dtype=torch.long)
        self.previous = None
        self.scale = None

    def _proposal_scale(self, tree: Tree, like: Tree) -> ProposalScale:
        """``tree`` made ready once for as long as the kernel keeps returning it (SGLD's never changes)."""
        if self.scale is None or self.scale.tree is not tree:
            self.scale = ProposalScale(tree, like)
        return self.scale

    def observe(self, step, state, loss, loss_grad, noise, batch) -> None:
        if self.previous is not None:
            u_old, w_old, drift_old, scale_old, (x, y) = self.previous
            new_loss, new_grad = self.objective.losses_and_grads(state.w, self.fixed, x, y)
            terms = self.kernel.terms(state, new_grad)
            u_new, drift_new = potential(new_loss, state), terms.drift()
            scale_new = self._proposal_scale(terms.noise_scale, state.w)
            forward = log_proposal(state.w, w_old, drift_old, self._proposal_scale(scale_old, state.w))
            log_ratio = (u_old - u_new) + log_proposal(w_old, state.w, drift_new, scale_new) - forward
            self.total += log_ratio.clamp(max=0).exp().nan_to_num(0.0)
            self.count += 1  # a count per chain, so that the chains' sums can part and join
            self.previous = None
        if step >= self.start and (step - self.start) % self.every == 0:
            terms = self.kernel.terms(state, loss_grad)
            # copies: on a GPU the step's tensors are buffers the next step overwrites (llc/sampling/graphed.py)
            kept_w, kept_batch = {n: w.clone() for n, w in state.w.items()}, tuple(t.clone() for t in batch)
            self.previous = (potential(loss, state), kept_w, terms.drift(), terms.noise_scale, kept_batch)

    def result(self) -> dict[str, torch.Tensor]:
        """Per chain: the sum of the acceptance probabilities and the number of moves measured."""
        return {"mala_total": self.total.cpu(), "mala_count": self.count}


class Snapshots:
    """Each chain's flattened parameters [S, B, P] (and minibatch loss [S, B]) at chosen steps."""

    uses_noise = False

    def __init__(self, steps: Sequence[int], n_chains: int, n_params: int, device: torch.device):
        self.index = {step: i for i, step in enumerate(steps)}
        self.samples = torch.empty(len(steps), n_chains, n_params, device=device)
        self.losses = torch.empty(len(steps), n_chains, device=device)

    def observe(self, step, state, loss, loss_grad, noise, batch) -> None:
        if step in self.index:
            self.samples[self.index[step]] = flatten(state.w)
            self.losses[self.index[step]] = loss

    def result(self) -> dict[str, torch.Tensor]:
        return {"samples": self.samples.cpu(), "sample_losses": self.losses.cpu()}


class StepNorms:
    """Per chain at chosen steps (REFERENCE §7, devinterp's ``save_metrics``): the norms of the
    gradient, localisation and weight-decay terms of the move, of the noise actually added, and the
    distance ‖w − w*‖. Buffer [S, len(STEP_METRICS), B]."""

    uses_noise = True

    def __init__(self, kernel: Kernel, steps: Sequence[int], n_chains: int, device: torch.device):
        self.kernel, self.steps = kernel, list(steps)
        self.index = {step: i for i, step in enumerate(steps)}
        self.values = torch.empty(len(steps), len(STEP_METRICS), n_chains, device=device)

    def observe(self, step, state, loss, loss_grad, noise, batch) -> None:
        if step not in self.index:
            return
        terms = self.kernel.terms(state, loss_grad)
        noise_added = {n: terms.noise_scale[n] * noise[n] for n in noise}
        distance = {n: w - state.anchor[n] for n, w in state.w.items()}
        trees = (terms.gradient, terms.localisation, terms.weight_decay, noise_added, distance)
        self.values[self.index[step]] = torch.stack([per_chain_squared_norm(list(t.values())).sqrt() for t in trees])

    def result(self) -> dict[str, torch.Tensor]:
        return {"step_metric_steps": torch.tensor(self.steps, dtype=torch.long), "step_metrics": self.values.cpu()}


class ProbeLosses:
    """Every ``every`` steps, each chain's mean loss on each named probe set (e.g. the test pairs,
    or the pairs of one class), and optionally its per-sample losses: the ground of data-refined
    LLCs and influence measures (REFERENCE §8). Probe sets are shared by all chains."""

    uses_noise = False

    def __init__(
        self, objective: BatchedObjective, fixed: Tree, probes: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
        every: int, per_sample: bool, start: int, stop: int, n_chains: int, device: torch.device,
    ):
        self.objective, self.fixed, self.every, self.per_sample = objective, fixed, every, per_sample
        self.steps = list(range(-(-start // every) * every, stop, every))
        self.row = {step: i for i, step in enumerate(self.steps)}
        self.probes = {name: (x.to(device), y.to(device)) for name, (x, y) in probes.items()}
        self.means = {name: torch.empty(len(self.steps), n_chains, device=device) for name in probes}
        self.samples = {
            name: torch.empty(len(self.steps), n_chains, y.shape[0], device=device) for name, (_, y) in probes.items()
        } if per_sample else {}

    def observe(self, step, state, loss, loss_grad, noise, batch) -> None:
        row = self.row.get(step)
        if row is None:
            return
        with torch.no_grad():
            for name, (x, y) in self.probes.items():
                per_sample = self.objective.per_sample_losses(state.w, self.fixed, x, y)
                self.means[name][row] = per_sample.mean(-1)
                if self.per_sample:
                    self.samples[name][row] = per_sample

    def result(self) -> dict[str, torch.Tensor]:
        out = {"probe_steps": torch.tensor(self.steps, dtype=torch.long)}
        out.update({f"probe_loss/{name}": t.cpu() for name, t in self.means.items()})
        out.update({f"probe_samples/{name}": t.cpu() for name, t in self.samples.items()})
        return out
