"""Seeded training with evenly spaced safetensors checkpoints, resumable bit for bit.

Adam on cross-entropy, minibatches drawn with replacement from a generator seeded by the run's seed.
Weight decay is really switched off for the last ``no_weight_decay_steps`` steps (the original
study's switch had no effect, REFERENCE §6). After every checkpoint the optimiser and generator
state are saved, so an interrupted run resumes and ends with the same weights as an uninterrupted one.
Runs that differ only in seed or label kind can be trained as one stacked computation
(:func:`train_together`, used by sweeps); :func:`train` is that loop with a single run.
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from .atomic import check_path_length, check_writable
from .config import RunConfig, check_device, parse_config
from .errors import CheckpointError, ConfigError, TrainingDivergedError
from .layout import RunPaths
from .memory import check_memory, training_bytes
from .models import batched_forward, build_model
from .run import Run, load_run
from .seeding import generator
from .store import (
    RunLock,
    atomic_write_text,
    load_tensors,
    read_json,
    read_metadata,
    read_metrics,
    save_tensors,
    write_manifest,
    write_metrics,
)
from .tasks import ModularDataset, make_dataset


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Full-batch mean cross-entropy and accuracy."""
    return _loss_and_accuracy(model(x), y)


def _loss_and_accuracy(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    loss = nn.functional.cross_entropy(logits, y).item()
    acc = (logits.argmax(-1) == y).float().mean().item()
    return loss, acc


def metrics_row(model: nn.Module, data: ModularDataset, step: int) -> dict[str, float]:
    """Full-batch train and test loss and accuracy at ``step``."""
    return _row(step, evaluate(model, data.train_x, data.train_y), evaluate(model, data.test_x, data.test_y))


def _row(step: int, train: tuple[float, float], test: tuple[float, float]) -> dict[str, float]:
    return dict(step=step, train_loss=train[0], test_loss=test[0], train_acc=train[1], test_acc=test[1])


def _weight_decay_at(config: RunConfig, step: int) -> float:
    """Weight decay for the update that takes the model from ``step`` to ``step + 1``."""
    tc = config.training
    return 0.0 if step >= tc.n_steps - tc.no_weight_decay_steps else tc.weight_decay


def _lr_at(config: RunConfig, step: int) -> float:
    """Learning rate of the update from ``step`` to ``step + 1``: linear warm-up, then constant."""
    tc = config.training
    return tc.lr * min(1.0, (step + 1) / tc.warmup_steps) if tc.warmup_steps else tc.lr


def shared_settings(config: RunConfig) -> RunConfig:
    """What runs must share to be trained together: everything but the seed and the label kind."""
    return config.model_copy(
        update={
            "task": config.task.model_copy(update={"random_labels": False}),
            "training": config.training.model_copy(update={"seed": 0}),
        }
    )


def check_out_dir(run_dir: Path) -> None:
    """The output directory must be a directory (or not exist yet), nothing above it a file, and
    its files writable (atomic.check_writable)."""
    check_path_length(RunPaths(run_dir).config, flag="--out")
    for path in [run_dir, *run_dir.parents]:
        if path.exists() and not path.is_dir():
            raise ConfigError(f"--out {run_dir}: {path} is a file, not a directory")
    check_writable(RunPaths(run_dir).config, flag="--out")


def check_trainable(config: RunConfig, runs: int = 1) -> None:
    """What can be checked before a run directory is written: the memory the training needs
    (estimated), and a split with pairs on both sides."""
    check_memory(training_bytes(config, runs), f"training p={config.task.p}", "lower p (or the model's width)")
    make_dataset(config.task, config.training.seed)  # refuses an empty training or test set


def _prepare_run_dir(config: RunConfig, run_dir: Path, command: str) -> int | None:
    """Write config/manifest for a new run, or check what an existing one holds before resuming it.

    Returns the step to resume from, or None when the directory already holds a finished run."""
    paths = RunPaths(run_dir)
    if paths.config.exists():
        existing = parse_config(read_json(paths.config, paths.root))  # defaults of newer fields filled in
        if existing != config:
            raise ConfigError(
                f"{run_dir} already holds a run with a different config; use another --out "
                "or delete it"
            )
        manifest = read_json(paths.manifest, paths.root) if paths.manifest.exists() else {}
        if manifest.get("complete"):
            _check_complete(config, paths)
            return None
        return _check_resumable(config, paths)
    atomic_write_text(paths.config, config.to_json() + "\n")
    write_manifest(run_dir, config.hash(), complete=False, command=command)
    return 0


def _check_complete(config: RunConfig, paths: RunPaths) -> None:
    missing = [step for step in config.training.checkpoint_steps() if not paths.checkpoint(step).is_file()]
    if missing:
        raise CheckpointError(f"{paths.root} is marked complete but {len(missing)} checkpoints are missing or not files "
                              f"(e.g. {paths.checkpoint(missing[0])}); delete the run directory to train it again")
    read_metrics(paths.root)  # names the file when it is unreadable


def _check_resumable(config: RunConfig, paths: RunPaths) -> int:
    """The step an interrupted run resumes from, after checking that what it resumes is whole: the
    resume state, every earlier checkpoint, and the metrics rows up to that step."""
    if not paths.resume.exists():
        return 0  # killed before its first checkpoint: start again (the same seed gives the same run)
    try:
        start = int(read_metadata(paths.resume, paths.root)["step"])
    except (KeyError, ValueError):
        raise CheckpointError(f"{paths.resume} has no valid step in its header; delete the run directory to train it again") from None
    shapes = {k: tuple(v.shape) for k, v in build_model(config.model, config.task.p, config.training.seed).state_dict().items()}
    for step in [s for s in config.training.checkpoint_steps() if s <= start]:
        load_tensors(paths.checkpoint(step), shapes, paths.root)  # names a missing, truncated or mismatched file
    have = {int(r["step"]) for r in read_metrics(paths.root)}
    needed = {s for s in evaluation_steps(config) if s <= start}
    if needed - have:
        lost = sorted(needed - have)
        raise CheckpointError(f"{paths.metrics} lacks the rows of steps {lost[0]}–{lost[-1]} that resuming from step {start} "
                              "needs (deleted or cut short?); delete the run directory to train it again")
    return start


def evaluation_steps(config: RunConfig) -> list[int]:
    """Steps with a metrics row: 0, every eval_every steps, and every checkpoint."""
    tc = config.training
    return sorted({0, *range(tc.eval_every, tc.n_steps + 1, tc.eval_every), *tc.checkpoint_steps()})


def train(config: RunConfig, out_dir: str | Path, progress: bool = True, command: str | None = None) -> Run:
    """Train ``config`` into the run directory ``out_dir`` (resuming it if interrupted) and return it.
    ``command`` is what the manifest records as the command that made the run."""
    return train_together([config], [out_dir], progress, command)[0]


def train_together(
    configs: list[RunConfig], out_dirs: list[str | Path], progress: bool = True, command: str | None = None
) -> list[Run]:
    """Train runs that differ only in seed or label kind as ONE stacked computation.

    Each run's parameters are a slice of tensors stacked along a leading dimension; one forward,
    backward and Adam step serve them all (Adam is elementwise, so the runs do not interact).
    Every run keeps its own data split, minibatch generator, checkpoints and resume state, so each
    directory is an ordinary run, and on the CPU a run's weights are the same, bit for bit, whether
    it was trained alone or with others (tested). Finished runs are skipped; interrupted ones resume.
    """
    if len(configs) != len(out_dirs) or not configs:
        raise ConfigError("train_together needs one output directory per config (and at least one)")
    shared = shared_settings(configs[0])
    if any(shared_settings(c) != shared for c in configs):
        raise ConfigError("runs trained together may differ only in training.seed and task.random_labels")
    check_device(configs[0].training.device)
    run_dirs = [Path(d).resolve() for d in out_dirs]
    if len(set(run_dirs)) != len(run_dirs):
        raise ConfigError("train_together: two runs share an output directory")
    for run_dir in run_dirs:
        check_out_dir(run_dir)
    check_trainable(configs[0], len(configs))  # before anything is written
    command = command or "grokscope.train() (Python API)"
    elapsed: dict[Path, float] = {}
    with ExitStack() as locks:
        for run_dir in run_dirs:
            locks.enter_context(RunLock(run_dir))
        starts = {d: _prepare_run_dir(c, d, command) for c, d in zip(configs, run_dirs)}
        by_start: dict[int, list[tuple[RunConfig, Path]]] = {}
        for config, run_dir in zip(configs, run_dirs):
            if starts[run_dir] is not None:
                by_start.setdefault(starts[run_dir], []).append((config, run_dir))
        for start, group in sorted(by_start.items()):
            seconds = _StackedTraining(group, start).run(progress)
            elapsed.update({run_dir: seconds for _, run_dir in group})
    runs = [load_run(d) for d in run_dirs]
    if progress:
        for run in runs:
            finished = "" if run.path in elapsed else " (already complete: nothing to do)"
            print(run.summary_line(elapsed.get(run.path)) + finished)
    return runs


class _StackedTraining:
    """The training loop over S >= 1 runs that share every shape and setting but the seed."""

    def __init__(self, group: list[tuple[RunConfig, Path]], start: int):
        self.configs = [c for c, _ in group]
        self.run_dirs = [d for _, d in group]
        self.start = start
        self.config = self.configs[0]
        tc = self.config.training
        device = torch.device(tc.device)
        p = self.config.task.p
        models = [build_model(c.model, p, c.training.seed) for c in self.configs]
        self.forward = batched_forward(models[0])
        self.trainable = {n: q.requires_grad for n, q in models[0].named_parameters()}
        self.params = {
            name: torch.stack([dict(m.named_parameters())[name].detach() for m in models]).to(device).requires_grad_(grad)
            for name, grad in self.trainable.items()
        }
        optimizer_class = torch.optim.AdamW if tc.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = optimizer_class(
            [t for n, t in self.params.items() if self.trainable[n]], lr=tc.lr, betas=tc.betas, weight_decay=tc.weight_decay
        )
        datasets = [make_dataset(c.task, c.training.seed).to(device) for c in self.configs]
        self.data = {
            part: torch.stack([getattr(d, part) for d in datasets])
            for part in ("train_x", "train_y", "test_x", "test_y")
        }
        self.batches = [generator(c.training.seed, "batches") for c in self.configs]
        if start:
            self._load_resume_states()
        self.rows = [[r for r in read_metrics(d) if r["step"] <= start] if start else [] for d in self.run_dirs]

    def run(self, progress: bool) -> float:
        tc = self.config.training
        checkpoints = set(tc.checkpoint_steps())
        evaluated = set(evaluation_steps(self.config))
        t0 = time.perf_counter()
        if self.start == 0:
            self._record(0)
            self._save_checkpoints(0)
        bar = tqdm(total=tc.n_steps, initial=self.start, desc=f"train x{len(self.configs)}" if len(self.configs) > 1 else "train",
                   unit="step", disable=not progress, file=sys.stderr)
        for step in range(self.start, tc.n_steps):
            for group in self.optimizer.param_groups:
                group["weight_decay"] = _weight_decay_at(self.config, step)
                group["lr"] = _lr_at(self.config, step)
            self.optimizer.zero_grad(set_to_none=True)
            self._minibatch_loss().backward()
            self.optimizer.step()
            done = step + 1
            if done in evaluated:
                self._record(done)
                self._stop_if_diverged(done)
                bar.set_postfix(test_acc=" ".join(f"{rows[-1]['test_acc']:.3f}" for rows in self.rows), refresh=False)
            if done in checkpoints:
                self._save_checkpoints(done)
            bar.update(1)
        bar.close()
        elapsed = time.perf_counter() - t0
        for config, run_dir in zip(self.configs, self.run_dirs):
            command = read_json(RunPaths(run_dir).manifest, run_dir).get("command")
            write_manifest(run_dir, config.hash(), complete=True, command=command, train_seconds=round(elapsed, 3),
                           trained_together=len(self.configs))
        return elapsed

    def _stop_if_diverged(self, step: int) -> None:
        """Stop every run of the group when one's training loss is no longer finite: its metrics
        (up to this step) are written and its manifest records the step; the message names it."""
        diverged = [d for d, rows in zip(self.run_dirs, self.rows) if not math.isfinite(rows[-1]["train_loss"])]
        if not diverged:
            return
        for config, run_dir, rows in zip(self.configs, self.run_dirs, self.rows):
            write_metrics(run_dir, rows)
            command = read_json(RunPaths(run_dir).manifest, run_dir).get("command")
            write_manifest(run_dir, config.hash(), complete=False, command=command,
                           **({"diverged_at_step": step} if run_dir in diverged else {}))
        raise TrainingDivergedError(f"training diverged: the train loss of {', '.join(map(str, diverged))} is not finite at "
                                    f"step {step} (lower lr, or raise the warm-up); metrics up to that step are written")

    def _minibatch_loss(self) -> torch.Tensor:
        """Sum over runs of each run's mean cross-entropy: each run's gradient is its own."""
        x, y = self.data["train_x"], self.data["train_y"]
        if self.config.training.full_batch:
            xb, yb = x, y
        else:
            n_train, size = x.shape[1], self.config.training.batch_size
            index = torch.stack([torch.randint(n_train, (size,), generator=g) for g in self.batches]).to(x.device)
            xb, yb = torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, 2)), torch.gather(y, 1, index)
        logits = self.forward(self.params, xb)
        return sum(nn.functional.cross_entropy(logits[s], yb[s]) for s in range(len(self.configs)))

    @torch.no_grad()
    def _record(self, step: int) -> None:
        train_logits = self.forward(self.params, self.data["train_x"])
        test_logits = self.forward(self.params, self.data["test_x"])
        for s, rows in enumerate(self.rows):
            rows.append(_row(step, _loss_and_accuracy(train_logits[s], self.data["train_y"][s]),
                             _loss_and_accuracy(test_logits[s], self.data["test_y"][s])))

    def _weights(self, s: int) -> dict[str, torch.Tensor]:
        return {name: t[s].detach() for name, t in self.params.items()}

    def _save_checkpoints(self, step: int) -> None:
        for s, (config, run_dir) in enumerate(zip(self.configs, self.run_dirs)):
            save_tensors(RunPaths(run_dir).checkpoint(step), self._weights(s), metadata={"step": str(step), "config_hash": config.hash()})
            write_metrics(run_dir, self.rows[s])
            tensors = {f"model.{k}": v for k, v in self._weights(s).items()}
            for name, param in self.params.items():
                for key, value in self.optimizer.state.get(param, {}).items():
                    tensors[f"adam.{name}.{key}"] = value if key == "step" else value[s]
            tensors["rng.batches"] = self.batches[s].get_state()
            save_tensors(RunPaths(run_dir).resume, tensors, metadata={"step": str(step)})

    def _load_resume_states(self) -> None:
        states = [load_tensors(RunPaths(d).resume, root=d) for d in self.run_dirs]
        for run_dir, tensors in zip(self.run_dirs, states):
            needed = {f"model.{name}" for name in self.params} | {"rng.batches"}
            if needed - set(tensors):
                raise CheckpointError(f"{RunPaths(run_dir).resume} lacks {sorted(needed - set(tensors))}; "
                                      "delete the run directory to train it again")
        with torch.no_grad():
            for name, param in self.params.items():
                param.copy_(torch.stack([t[f"model.{name}"] for t in states]))
                if f"adam.{name}.step" in states[0]:
                    self.optimizer.state[param] = {
                        "step": states[0][f"adam.{name}.step"].clone(),
                        **{key: torch.stack([t[f"adam.{name}.{key}"] for t in states]).to(param.device)
                           for key in ("exp_avg", "exp_avg_sq")},
                    }
        for g, tensors in zip(self.batches, states):
            g.set_state(tensors["rng.batches"])
