"""sample_llc: the local learning coefficient of one or many parameter sets at given SGLD settings,
in one batched run (llc/api.py's estimate_llc adds the step size chosen from the data).

λ̂(w*) = nβ · ( E_w[L_n(w)] − L_n(w*) )   (Lau et al. 2023, arXiv 2308.12108, eq. 3.3)

E_w is the mean of the post-burn-in minibatch losses along SGLD chains started at w*, and L_n(w*)
is the full-batch training loss. Every chain of every parameter set steps together (sampling/loop.py),
in blocks of steps until each set's chains have settled (diagnostics/).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from functools import partial
from typing import Mapping, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from ..memory import USABLE_FRACTION, available_bytes, gigabytes
from ..version import __version__
from .config import SGLDConfig, sgld_config
from .diagnostics.floor_probe import at_floor, judge, probe_floor, probe_seed
from .diagnostics.quadratic import SetFloor, set_floors
from .diagnostics.summary import non_finite_entry, summarise, thinned_steps
from .result import CheckpointLLC, LLCResult, merge_tensors
from .sampling.data import full_batch_loss_and_grad, stack_data
from .sampling.kernels import (
    ChainSettings,
    Kernel,
    Masked,
    OrthogonalToGradient,
    build_kernel,
    unit_directions,
)
from .sampling.blocks import run_in_blocks
from .sampling.loop import ChainStreams, run_chains
from .sampling.noise import block_length, steps_held
from .sampling.objective import BatchedObjective, LossFn, check_parameter_sets
from .sampling.observers import (
    Distances,
    LossTrace,
    MalaAcceptance,
    Observer,
    ProbeLosses,
    Snapshots,
    StepNorms,
    UserObserver,
    check_user_observers,
)
from .sampling.selection import Selection, select
from .sampling.starts import spread_starts
from .sampling.thread_groups import cpu_workers, map_groups
from .sampling.tree import Tree, tree_map


def sample_llc(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor] | Sequence[tuple[torch.Tensor, torch.Tensor]],
    param_sets: Mapping[str, torch.Tensor] | Sequence[Mapping[str, torch.Tensor]] | None = None,
    loss: str | LossFn = "cross_entropy",
    config: SGLDConfig | None = None,
    checkpoint_ids: Sequence[int] | None = None,
    training_steps: Sequence[int] | None = None,
    progress: bool = False,
    masks: Mapping[str, torch.Tensor] | None = None,
    set_masks: Sequence[Mapping[str, torch.Tensor] | None] | None = None,
    per_set: Sequence[Mapping[str, float]] | None = None,
    probes: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    probe_every: int = 10,
    probe_per_sample: bool = False,
    observers: Sequence[UserObserver] = (),
    **settings: object,
) -> LLCResult:
    """:func:`grokscope.llc.estimate_llc` at the settings given (a number for ε): the arguments are
    documented there (llc/api.py)."""
    if settings.get("epsilon") == "auto":
        raise ConfigError('epsilon="auto" is chosen by grokscope.llc.estimate_llc (llc/api.py), not here')
    cfg = config if config is not None else sgld_config(**settings)
    param_sets = as_param_sets(model, param_sets)
    check_parameter_sets(model, param_sets)
    ids = list(checkpoint_ids) if checkpoint_ids is not None else list(range(len(param_sets)))
    shared_data = isinstance(data, tuple)
    if len(ids) != len(param_sets) or (shared_data and per_set is None and set_masks is None and len(set(ids)) != len(ids)):
        raise ConfigError("checkpoint_ids must give one distinct id per parameter set (of the same data)")
    if training_steps is not None and (isinstance(training_steps, (int, float)) or len(training_steps) != len(param_sets)):
        raise ConfigError(f"training_steps={training_steps!r}: give the training step of each parameter set (one label per set); "
                          "the number of SGLD steps is n_steps")
    labels = [int(step) for step in training_steps] if training_steps is not None else [None] * len(param_sets)
    device = torch.device(cfg.device)
    x, y, sizes = stack_data(data, len(param_sets), device)  # [K, n_max, ...]; set k uses its first sizes[k] rows
    n = min(sizes)
    if cfg.batch_size > n:
        raise ConfigError(f"batch_size={cfg.batch_size} exceeds the {n} training examples" + ("" if len(set(sizes)) == 1 else " of the smallest set"))
    set_configs = _per_set_configs(cfg, per_set, len(param_sets))
    nbetas = [c.resolve_nbeta(n_k) for c, n_k in zip(set_configs, sizes)]
    selection, chain_masks = _selection(model, cfg, masks, set_masks, len(param_sets))

    objective = BatchedObjective(model, loss)
    stacked = {
        name: torch.stack([p[name] for p in param_sets]).to(device=device, dtype=torch.float32)
        for name, _ in model.named_parameters()
    }
    anchors = {name: stacked[name] for name in selection.names}
    fixed = {name: t for name, t in stacked.items() if name not in anchors}
    probe_init = _check_probes(objective, anchors, fixed, probes or {}, probe_every)
    check_user_observers(observers)
    init_loss, init_grad = full_batch_loss_and_grad(objective, anchors, fixed, x, y, sizes, cfg.restrict_to_orth_grad)
    finite = [all(bool(torch.isfinite(t[k]).all()) for t in stacked.values()) for k in range(len(param_sets))]
    floors = set_floors(model, param_sets, finite, selection.names, bool(selection.masks) or chain_masks is not None, cfg,
                        set_configs, [nb for nb, _ in nbetas], x, y, sizes, shared_data, loss)

    constant = getattr(objective.loss, "constant_loss", None)  # the best constant prediction's loss (built-in losses)
    constant_losses = ([None] * len(param_sets) if constant is None else [constant(y[0, : sizes[0]])] * len(param_sets) if shared_data
                       else [constant(y[k, : sizes[k]]) for k in range(len(param_sets))])
    job = _Job(cfg, objective, anchors, fixed, init_grad, x, y, sizes, shared_data, ids, set_configs, per_set is not None,
               nbetas, selection, chain_masks, probes or {}, probe_every, probe_per_sample, list(observers), device, progress)
    n_params = sum(t[0].numel() for t in anchors.values())
    entries: dict[int, CheckpointLLC] = {}
    parts: dict[int, dict[str, torch.Tensor]] = {}
    batches = _batches([k for k in range(len(param_sets)) if finite[k]], job.bytes_per_set(n_params), cfg, device)
    if progress and len(batches) > 1:
        print(f"sampling {sum(map(len, batches))} parameter sets in {len(batches)} batches that fit in memory "
              "(the same numbers as one batch)", file=sys.stderr)
    workers = cpu_workers(device)
    for indices in batches:
        sample = partial(job.sample, labels=labels, init_loss=init_loss, probe_init=probe_init, floors=floors,
                         constant_losses=constant_losses)
        for k, (entry, tensors) in zip(indices, map_groups(sample, indices, workers)):
            entries[k], parts[k] = entry, tensors
    if cfg.floor_probe:
        job.probe_floors(entries, floors, n_params)
    for k in (k for k in range(len(param_sets)) if not finite[k]):
        entries[k] = non_finite_entry(cfg, ids[k], labels[k], float(init_loss[k]))
    order = range(len(param_sets))
    settings_record = {
        **cfg.model_dump(exclude={"kernel_options"}),
        **cfg.kernel_settings(),
        "max_steps": cfg.step_cap,
        "nbeta": nbetas[0][0] if len(set(sizes)) == 1 else [nb for nb, _ in nbetas],
        "nbeta_convention": nbetas[0][1],
        "n_train": n if len(set(sizes)) == 1 else sizes,
        "n_sampled_parameters": selection.record["n_sampled_elements"],
        "sampled_parameters": list(selection.names),
        "selection": selection.record,
        "per_set_settings": per_set is not None,
        "weight_decay_convention": "drift += weight_decay * w (devinterp's; the original study used nbeta * weight_decay * w)",
        "package_version": __version__,
        "torch_version": torch.__version__,
    }
    if probes:
        settings_record["probe_every"] = probe_every
    return LLCResult([entries[k] for k in order], settings_record, **merge_tensors([parts.get(k) for k in order], cfg.chains))


@dataclass
class _Job:
    """Everything one estimate shares across its batches of parameter sets ([K, ...] trees and data)."""

    cfg: SGLDConfig
    objective: BatchedObjective
    anchors: Tree
    fixed: Tree
    init_grad: Tree | None
    x: torch.Tensor
    y: torch.Tensor
    sizes: list[int]  # rows of x, y each set uses
    shared_data: bool
    ids: list[int]
    set_configs: list[SGLDConfig]
    per_set: bool  # whether the sets have settings of their own (then each entry records them)
    nbetas: list[tuple[float, str]]
    selection: Selection
    set_masks: list[dict[str, torch.Tensor]] | None  # per set: name -> mask of the parameter's shape
    probes: Mapping[str, tuple[torch.Tensor, torch.Tensor]]
    probe_every: int
    probe_per_sample: bool
    user_observers: list[UserObserver]
    device: torch.device
    progress: bool

    def bytes_per_set(self, n_params: int) -> float:
        """An estimate of the memory one parameter set's chains take in the loop (float32; int64 indices)."""
        cfg, chains = self.cfg, self.cfg.chains
        block, noise_steps = block_length(n_params), steps_held(n_params, self.device)
        x_row = self.x[0, 0].numel() + self.y[0, 0].numel()
        with torch.no_grad():  # one chain's outputs on one minibatch, for the activations
            one = {n: t[:1] for n, t in {**self.anchors, **self.fixed}.items()}
            outputs = self.objective.forward(one, self.x[:1, : cfg.batch_size]).numel()
        per_chain = (
            noise_steps * n_params * 4  # the noise held at once
            + block * cfg.batch_size * (1 + x_row) * 8  # a block of minibatch indices and the gathered rows
            + 10 * n_params * 4  # position, anchor, pull, gradient, kernel state and temporaries
            + 8 * outputs * 4  # activations of the forward and backward pass
            + cfg.step_cap * 4 + cfg.save_samples * (n_params + 1) * 4
            + (0 if self.shared_data else self.y.shape[1] * x_row * 8)  # the set's own data, per chain
            + sum(p[1].shape[0] * (8 * outputs / cfg.batch_size + (cfg.step_cap // self.probe_every + 1) * 4)
                  for p in self.probes.values())
        )
        return chains * per_chain

    def sample(self, indices: list[int], show_progress: bool, alone: bool, labels, init_loss, probe_init,
               floors, constant_losses) -> list[tuple[CheckpointLLC, dict]]:
        """Run the chains of parameter sets ``indices`` together, in blocks of steps: n_steps, then
        doubling, until each set's chains have settled (or more steps cannot help, or the cap is
        reached); a set that is done leaves the batch. Their entries and saved tensors.
        ``alone``: no other group samples at the same time (then the objective needs no replica)."""
        cfg, chains = self.cfg, self.cfg.chains
        objective = self.objective if alone else self.objective.replica()
        keys = [(cfg.seed, "sgld", self.ids[k], c) for k in indices for c in range(chains)]
        per_chain = partial(_chains_of, indices=indices, chains=chains)
        settings = ChainSettings.broadcast(
            len(keys), self.device,
            **{name: [float(getattr(self.set_configs[k], name)) for k in indices for _ in range(chains)]
               for name in ("epsilon", "gamma", "weight_decay")},
            nbeta=[self.nbetas[k][0] for k in indices for _ in range(chains)],
        )
        anchors, fixed = per_chain(self.anchors), per_chain(self.fixed) if self.fixed else {}
        if self.shared_data:
            x, y = (t[0].expand(len(keys), *t.shape[1:]) for t in (self.x, self.y))
        else:
            x, y = (t[indices].repeat_interleave(chains, dim=0) for t in (self.x, self.y))
        n_params = sum(t[0].numel() for t in anchors.values())
        streams = ChainStreams(keys, [self.sizes[k] for k in indices for _ in range(chains)], cfg.batch_size, n_params, self.device)
        kernel = self.kernel(indices)
        state = kernel.init(anchors, settings)
        if cfg.start_spread:
            masks = kernel.masks if isinstance(kernel, Masked) else {}
            state = replace(state, w=spread_starts(state.w, keys, cfg.start_spread, settings.gamma, masks))
        n_chains = len(keys)

        def run(start: int, stop: int) -> dict[str, torch.Tensor]:
            nonlocal state
            observers = _observers(cfg, kernel, objective, fixed, self.probes, self.probe_every, self.probe_per_sample,
                                   start, stop, n_chains, n_params, self.device)
            observers += [user.make(start, stop, n_chains, self.device) for user in self.user_observers]
            state = run_chains(objective, kernel, state, fixed, x, y, streams, start, stop, observers,
                               progress=self.progress and show_progress)
            return {key: value for observer in observers for key, value in observer.result().items()}

        def summarise_set(k: int, record: dict[str, torch.Tensor]) -> tuple[CheckpointLLC, bool]:
            entry, found = summarise(record, self.ids[k], labels[k], float(init_loss[k]), self.nbetas[k][0], cfg,
                                     _set_record(self.set_configs[k], self.nbetas[k][0]) if self.per_set else None,
                                     {name: float(values[k]) for name, values in probe_init.items()},
                                     None if floors[k] is None else floors[k].floor, constant_losses[k])
            if self.user_observers:
                entry.observed = {user.name: user.summarise(record[user.name]) for user in self.user_observers}
            return entry, found.more_steps_help

        def keep(rows: list[int], active: list[int]) -> None:  # the finished sets leave the batch
            nonlocal state, streams, fixed, x, y, kernel, n_chains
            state, streams, kernel, n_chains = state.take(rows), streams.keep(rows), self.kernel(active), len(rows)
            fixed = tree_map(lambda t: t[rows], fixed) if fixed else {}
            x, y = (x[rows], y[rows]) if not self.shared_data else (x[: len(rows)], y[: len(rows)])

        budget = f"steps (max_steps {cfg.step_cap}" + (f", max_seconds {cfg.max_seconds:g}" if cfg.max_seconds is not None else "") + ")"
        done = run_in_blocks(indices, chains, cfg.n_steps, cfg.step_cap, run, summarise_set, keep, budget, cfg.max_seconds)
        return [(done[k].entry, {key: value for key, value in done[k].record.items()
                                 if key in ("losses", "samples", "sample_losses") or key.startswith("probe_samples/")})
                for k in indices]

    def probe_floors(self, entries: dict[int, CheckpointLLC], floors: list[SetFloor | None], n_params: int) -> None:
        """Probe every ``ok`` estimate at its quadratic floor (llc/diagnostics/floor_probe.py); a plateau
        makes it unreliable."""
        for k, found in enumerate(floors):
            entry = entries.get(k)
            if found is None or entry is None or entry.status != "ok" or not at_floor(entry.llc_mean, found.floor, n_params):
                continue
            rows = 0 if self.shared_data else k
            entry.floor_probe = probe_floor(
                self.objective, {n: t[k] for n, t in self.anchors.items()}, {n: t[k] for n, t in self.fixed.items()},
                self.x[rows, : self.sizes[k]], self.y[rows, : self.sizes[k]], found.eigenvalues, found.eigenvectors, found.floor,
                self.nbetas[k][0], self.set_configs[k].gamma, self.cfg.batch_size, probe_seed(self.cfg.seed, self.ids[k]))
            entry.status = judge(entry.status, entry.flags, entry.floor_probe)

    def kernel(self, indices: list[int]) -> Kernel:
        """The kernel with the constraints of parameter sets ``indices`` (their chains' masks and
        gradient directions, [B, ...] in chain order)."""
        cfg, chains = self.cfg, self.cfg.chains
        kernel = build_kernel(cfg)
        if self.set_masks is None:
            masks = {name: m.to(self.device) for name, m in self.selection.masks.items()}
        else:  # one mask per chain: [B, ...]
            masks = {name: torch.stack([self.set_masks[k][name] for k in indices for _ in range(chains)]).to(self.device)
                     for name in self.selection.names}
        if cfg.restrict_to_orth_grad:
            masked_grad = {n: g * masks[n] if n in masks else g for n, g in self.init_grad.items()}
            kernel = OrthogonalToGradient(kernel, _chains_of(unit_directions(masked_grad), indices, chains))
        if masks:
            kernel = Masked(kernel, masks)
        return kernel


def _chains_of(tree: Tree, indices: list[int], chains: int) -> Tree:
    """Parameter sets ``indices`` of a [K, ...] tree, each repeated for its chains: [len(indices) · chains, ...]."""
    return tree_map(lambda t: t[indices].repeat_interleave(chains, dim=0), tree)


def _batches(indices: list[int], bytes_per_set: float, cfg: SGLDConfig, device: torch.device) -> list[list[int]]:
    """Parameter sets in batches whose chains fit in memory (chains never interact, so a batch's
    numbers do not depend on the split); one set's chains that do not fit are refused."""
    if not indices:
        return []
    budget = USABLE_FRACTION * available_bytes(device)
    if bytes_per_set > budget:
        raise ConfigError(f"the {cfg.chains} chains of one parameter set need about {gigabytes(bytes_per_set)} of memory and "
                          f"{gigabytes(budget)} is usable; lower --chains (or --batch-size, --save-samples)")
    size = max(1, int(budget // bytes_per_set))
    return [indices[i : i + size] for i in range(0, len(indices), size)]


PER_SET_SETTINGS = ("epsilon", "gamma", "nbeta", "weight_decay")


def _selection(model: nn.Module, cfg: SGLDConfig, masks, set_masks, k: int) -> tuple[Selection, list | None]:
    """What is sampled, and with ``set_masks`` each set's full masks over the sampled tensors."""
    if set_masks is None:
        return select(model, cfg.params, masks), None
    if cfg.params is not None or masks is not None:
        raise ConfigError("set_masks gives each parameter set its own masks; do not give params or masks as well")
    if len(set_masks) != k:
        raise ConfigError(f"set_masks: {len(set_masks)} entries for {k} parameter sets")
    every = {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters() if p.requires_grad}
    per_set = []
    for index, own in enumerate(set_masks):
        if own is None:
            per_set.append(every)
            continue
        try:
            select(model, None, own)  # checks names, shapes, dtypes and that something is sampled
        except ConfigError as err:
            raise ConfigError(f"set_masks[{index}]: {err}") from None
        per_set.append(dict(own))
    union = {n: torch.stack([m[n] for m in per_set if n in m]).any(0) for n in every if any(n in m for m in per_set)}
    selection = select(model, None, union)
    full = [{n: m[n] if n in m else torch.zeros_like(every[n]) for n in selection.names} for m in per_set]
    selection.record["per_set_masks"] = [int(sum(int(t.sum()) for t in m.values())) for m in full]
    return selection, full


def _per_set_configs(cfg: SGLDConfig, per_set: Sequence[Mapping[str, float]] | None, k: int) -> list[SGLDConfig]:
    """One validated config per parameter set: ``cfg`` with that set's overrides."""
    if per_set is None:
        return [cfg] * k
    if len(per_set) != k:
        raise ConfigError(f"per_set: {len(per_set)} entries for {k} parameter sets")
    configs = []
    for index, override in enumerate(per_set):
        unknown = sorted(set(override) - set(PER_SET_SETTINGS))
        if unknown:
            raise ConfigError(f"per_set[{index}]: {unknown} cannot differ per set; allowed are {', '.join(PER_SET_SETTINGS)}")
        # a set's own nβ is the value it samples at: the temperature multiplier is already in it
        final_nbeta = {"temp_multiplier": 1.0} if "nbeta" in override else {}
        configs.append(sgld_config(**{**cfg.model_dump(), **override, **final_nbeta}))
    return configs


def _set_record(cfg: SGLDConfig, nbeta: float) -> dict[str, float]:
    return {"epsilon": cfg.epsilon, "gamma": cfg.gamma, "nbeta": nbeta, "weight_decay": cfg.weight_decay}


def _check_probes(objective: BatchedObjective, anchors: Tree, fixed: Tree, probes: Mapping, every: int) -> dict[str, torch.Tensor]:
    """Each probe set's mean loss at every w* [K]; a probe set that does not fit is named before sampling."""
    if probes and every < 1:
        raise ConfigError(f"probe_every={every} must be at least 1")
    init = {}
    for name, probe in probes.items():
        if not (isinstance(probe, tuple) and len(probe) == 2 and all(isinstance(t, torch.Tensor) for t in probe)) or probe[0].shape[0] != probe[1].shape[0]:
            raise ConfigError(f"probe set {name!r} must be a pair (x, y) of tensors with the same number of rows")
        device = next(iter(anchors.values())).device
        try:
            with torch.no_grad():
                init[name] = objective.per_sample_losses(anchors, fixed, probe[0].to(device), probe[1].to(device)).mean(-1).double().cpu()
        except (RuntimeError, IndexError, ValueError) as err:
            raise ConfigError(f"probe set {name!r} (x {tuple(probe[0].shape)}, y {tuple(probe[1].shape)}) does not fit the model: "
                              f"{str(err).splitlines()[0]}") from None
    return init


# ‖w − w*‖² is recorded every this many steps: draws this close are strongly correlated anyway, and
# the covariance with the loss it serves needs hundreds of them, not every step's
DISTANCE_EVERY = 10


def _observers(cfg, kernel, objective, fixed, probes, probe_every, probe_per_sample, start, stop, n_chains, n_params,
               device) -> list[Observer]:
    """The observers of steps [start, stop). Snapshots and step metrics are taken in the first
    block of n_steps (so their number does not depend on how long the chains run)."""
    def within(steps):
        return [s for s in steps if start <= s < stop]

    observers: list[Observer] = [LossTrace(start, stop, n_chains, device), Distances(start, stop, DISTANCE_EVERY, n_chains, device)]
    if cfg.mala:
        observers.append(MalaAcceptance(kernel, objective, fixed, max(start, cfg.warmup_steps), cfg.mala_every, n_chains, device))
    if cfg.save_samples:
        observers.append(Snapshots(within(_snapshot_steps(cfg)), n_chains, n_params, device))
    if cfg.step_metrics:
        observers.append(StepNorms(kernel, within(thinned_steps(cfg.n_steps, cfg.trace_points).tolist()), n_chains, device))
    if probes:
        observers.append(ProbeLosses(objective, fixed, probes, probe_every, probe_per_sample, start, stop, n_chains, device))
    return observers


def _snapshot_steps(cfg: SGLDConfig) -> list[int]:
    if not cfg.save_samples:
        return []
    burn, span = cfg.warmup_steps, cfg.n_steps - 1 - cfg.warmup_steps
    return sorted({burn + round(i * span / max(cfg.save_samples - 1, 1)) for i in range(cfg.save_samples)})


def as_param_sets(model: nn.Module, params: object) -> list[dict[str, torch.Tensor]]:
    if params is None:
        return [{n: p.detach() for n, p in model.named_parameters()}]
    if isinstance(params, Mapping):
        return [dict(params)]
    return [dict(p) for p in params]
