"""Seeded training with evenly spaced safetensors checkpoints, resumable bit for bit.

Adam on cross-entropy, minibatches drawn with replacement from a generator seeded by the run's seed.
Weight decay is really switched off for the last ``no_weight_decay_steps`` steps (the original
study's switch had no effect, REFERENCE §6). After every checkpoint the optimiser and generator
state are saved, so an interrupted run resumes and ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from .config import RunConfig, check_device, parse_config
from .errors import ConfigError
from .models import build_model
from .run import Run, load_run
from .seeding import generator
from .store import (
    RunLock,
    atomic_write_text,
    checkpoint_path,
    load_tensors,
    read_json,
    read_metadata,
    read_metrics,
    save_tensors,
    write_manifest,
    write_metrics,
)
from .tasks import ModularDataset, make_dataset

RESUME_FILE = Path("state") / "resume.safetensors"


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Full-batch mean cross-entropy and accuracy."""
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, y).item()
    acc = (logits.argmax(-1) == y).float().mean().item()
    return loss, acc


def metrics_row(model: nn.Module, data: ModularDataset, step: int) -> dict[str, float]:
    """Full-batch train and test loss and accuracy at ``step``."""
    train_loss, train_acc = evaluate(model, data.train_x, data.train_y)
    test_loss, test_acc = evaluate(model, data.test_x, data.test_y)
    return dict(step=step, train_loss=train_loss, test_loss=test_loss, train_acc=train_acc, test_acc=test_acc)


def _weight_decay_at(config: RunConfig, step: int) -> float:
    """Weight decay for the update that takes the model from ``step`` to ``step + 1``."""
    tc = config.training
    return 0.0 if step >= tc.n_steps - tc.no_weight_decay_steps else tc.weight_decay


def _save_resume_state(run_dir: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, batches: torch.Generator) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    state = optimizer.state_dict()["state"]
    for index, name in enumerate(names):
        for key, value in state.get(index, {}).items():
            tensors[f"adam.{name}.{key}"] = torch.as_tensor(value)
    tensors["rng.batches"] = batches.get_state()
    save_tensors(run_dir / RESUME_FILE, tensors, metadata={"step": str(step)})


def _load_resume_state(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, batches: torch.Generator) -> int:
    path = run_dir / RESUME_FILE
    tensors = load_tensors(path)
    step = int(read_metadata(path)["step"])
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    state_dict = optimizer.state_dict()
    state_dict["state"] = {
        index: {key: tensors[f"adam.{name}.{key}"] for key in ("step", "exp_avg", "exp_avg_sq")}
        for index, name in enumerate(names)
        if f"adam.{name}.step" in tensors
    }
    optimizer.load_state_dict(state_dict)
    batches.set_state(tensors["rng.batches"])
    return step


def _prepare_run_dir(config: RunConfig, run_dir: Path) -> bool:
    """Write config/manifest for a new run; check an existing one holds the same config.

    Returns True when the directory already holds a finished run."""
    config_file = run_dir / "config.json"
    if config_file.exists():
        existing = parse_config(read_json(config_file))  # defaults of newer fields filled in
        if existing != config:
            raise ConfigError(
                f"{run_dir} already holds a run with a different config; use another --out "
                "or delete it"
            )
        manifest = read_json(run_dir / "manifest.json") if (run_dir / "manifest.json").exists() else {}
        return bool(manifest.get("complete"))
    atomic_write_text(config_file, config.to_json() + "\n")
    write_manifest(run_dir, config.hash(), complete=False)
    return False


def train(config: RunConfig, out_dir: str | Path, progress: bool = True) -> Run:
    """Train ``config`` into the run directory ``out_dir`` (resuming it if interrupted) and return it."""
    check_device(config.training.device)
    run_dir = Path(out_dir).resolve()
    with RunLock(run_dir):
        if _prepare_run_dir(config, run_dir):
            return load_run(run_dir)
        elapsed = _train_locked(config, run_dir, progress)
    run = load_run(run_dir)
    if progress:
        print(run.summary_line(elapsed))
    return run


def _train_locked(config: RunConfig, run_dir: Path, progress: bool) -> float:
    tc = config.training
    device = torch.device(tc.device)
    data = make_dataset(config.task, tc.seed).to(device)
    model = build_model(config.model, config.task.p, tc.seed).to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer_class = torch.optim.AdamW if tc.optimizer == "adamw" else torch.optim.Adam
    optimizer = optimizer_class(trainable, lr=tc.lr, betas=tc.betas, weight_decay=tc.weight_decay)
    batches = generator(tc.seed, "batches")
    checkpoints = set(tc.checkpoint_steps())

    start = 0
    if (run_dir / RESUME_FILE).exists():
        start = _load_resume_state(run_dir, model, optimizer, batches)
    rows = [r for r in read_metrics(run_dir) if r["step"] <= start]

    def record(step: int) -> None:
        rows.append(metrics_row(model, data, step))

    def save_checkpoint(step: int) -> None:
        save_tensors(checkpoint_path(run_dir, step), model.state_dict(), metadata={"step": str(step), "config_hash": config.hash()})
        write_metrics(run_dir, rows)
        _save_resume_state(run_dir, step, model, optimizer, batches)

    t0 = time.perf_counter()
    if start == 0:
        record(0)
        save_checkpoint(0)
    bar = tqdm(total=tc.n_steps, initial=start, desc="train", unit="step", disable=not progress, file=sys.stderr)
    model.train()
    for step in range(start, tc.n_steps):
        for group in optimizer.param_groups:
            group["weight_decay"] = _weight_decay_at(config, step)
        if tc.full_batch:
            loss = nn.functional.cross_entropy(model(data.train_x), data.train_y)
        else:
            index = torch.randint(data.n_train, (tc.batch_size,), generator=batches).to(device)
            loss = nn.functional.cross_entropy(model(data.train_x[index]), data.train_y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done = step + 1
        if done % tc.eval_every == 0 or done in checkpoints:
            record(done)
            bar.set_postfix(train_acc=f"{rows[-1]['train_acc']:.3f}", test_acc=f"{rows[-1]['test_acc']:.3f}", refresh=False)
        if done in checkpoints:
            save_checkpoint(done)
        bar.update(1)
    bar.close()
    elapsed = time.perf_counter() - t0
    write_manifest(run_dir, config.hash(), complete=True, train_seconds=round(elapsed, 3))
    return elapsed
