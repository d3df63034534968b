"""LLC speed: grokscope's batched SGLD against devinterp 1.3.2, and against the machine's floor.

Workload: every checkpoint of a preset's run (default `example`, 26 checkpoints), SGLD γ=5,
ε=1e-3, 3000 steps (750 burn-in), m=64, nβ = n/ln n, with 1, 4 and 16 chains per checkpoint and
grokscope's defaults otherwise (MALA acceptance on every 20th move). devinterp runs the same
checkpoints and settings sequentially, its normal use, in this same process.

The floor, measured in the same run, right before and right after each grokscope workload (this
box's speed drifts by tens of percent within minutes; each workload takes the faster of its two
measurements, the lower floor):
  matmul floor = forward+backward matmul FLOPs per chain-step (counted by torch's FlopCounterMode
                 on one chain) × chain-steps ÷ the float32 matmul rate of a large square matmul;
  noise floor  = one normal number per sampled parameter per chain-step ÷ the fastest rate of
                 normal generation measured here (torch, numpy, grokscope's own Philox generator;
                 one stream, and one per thread).

    python benchmarks/llc_speed.py                             # the full workload (devinterp: ~45 min)
    python benchmarks/llc_speed.py --devinterp-checkpoints 4   # devinterp on 4 evenly spaced
                                                               # checkpoints, scaled to all (marked)
    python benchmarks/llc_speed.py --device cuda --chains 1 4 16 40 --devinterp-checkpoints 0
    python benchmarks/llc_speed.py --variants-only             # per-step cost of rmsprop_sgld, step
                                                               # metrics and MALA relative to plain sgld
    python benchmarks/llc_speed.py --run runs/nanda --as-is    # an existing run's checkpoints, untrained further
    python benchmarks/llc_speed.py --preset clock --epsilon 1e-6   # a transformer, at a step size it does not diverge at

On a GPU the table adds each workload's peak device memory.
"""

from __future__ import annotations

import argparse
import math
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from grokscope import build_config, load_run, train
from grokscope.llc import estimate_llc
from grokscope.llc.sampling.loop import ChainStreams
from grokscope.llc.sampling.noise import PhiloxNoise, block_length
from grokscope.llc.sampling.objective import BatchedObjective

SETTINGS = dict(gamma=5.0, epsilon=1e-3, n_steps=3000, burn_in=750, batch_size=64)
DEVINTERP_CHAINS = (1, 4)  # devinterp at 16 chains a checkpoint would take hours here


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int) -> float:
    """Seconds per call of ``fn`` after two warm-up calls."""
    fn(), fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeats


def matmul_rate(device: torch.device, size: int = 2048) -> float:
    """float32 FLOP/s of a large square matmul on ``device``."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    repeats = 10 if device.type == "cpu" else 200
    return 2 * size**3 / timed(lambda: a @ b, device, repeats)


def normal_rates(device: torch.device, numbers: int = 1 << 23, chunk: int = 1 << 16) -> dict[str, float]:
    """Standard normal float32 numbers per second by each generator this machine offers, each at
    its fastest: ``numbers`` drawn ``chunk`` at a time into a buffer that stays in cache (as the
    sampler draws a step's noise), in one thread and in one stream per thread."""
    rates = {}
    calls = numbers // chunk
    out = torch.empty(chunk, device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    rates["torch.randn, one generator"] = numbers / timed(
        lambda: [torch.randn(chunk, generator=gen, out=out) for _ in range(calls)], device, 3)
    if device.type != "cpu":
        return rates
    threads = torch.get_num_threads()
    outs = [torch.empty(chunk) for _ in range(threads)]
    gens = [torch.Generator().manual_seed(i) for i in range(threads)]
    rates[f"torch.randn, {threads} generators in {threads} threads"] = numbers / timed(lambda: in_threads([
        lambda i=i: [torch.randn(chunk, generator=gens[i], out=outs[i]) for _ in range(calls // threads)] for i in range(threads)
    ]), device, 3)
    host = np.empty(chunk, dtype=np.float32)
    rng = np.random.Generator(np.random.SFC64(0))
    rates["numpy SFC64 ziggurat, one generator"] = numbers / timed(
        lambda: [rng.standard_normal(chunk, np.float32, out=host) for _ in range(calls)], device, 3)
    philox = [PhiloxNoise(range(16 * i, 16 * i + 16), chunk // 16) for i in range(threads)]
    if philox[0].fill is not None:  # grokscope's C generator (llc/sampling/noise_native.c), as the sampler calls it
        rates["grokscope Philox4x32-10 + Box-Muller, one stream"] = numbers / timed(
            lambda: [philox[0].at(step) for step in range(calls)], device, 3)
        rates[f"grokscope Philox4x32-10 + Box-Muller, {threads} streams in {threads} threads"] = numbers / timed(lambda: in_threads([
            lambda i=i: [philox[i].at(step) for step in range(calls // threads)] for i in range(threads)
        ]), device, 3)
    return rates


def floor_rates(device: torch.device) -> tuple[float, str, float]:
    """The matmul rate, and the fastest normal generator's name and rate, measured now."""
    label, rate = max(normal_rates(device).items(), key=lambda item: item[1])
    return matmul_rate(device), label, rate


def in_threads(jobs) -> None:
    workers = [threading.Thread(target=job) for job in jobs]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def flops_per_chain_step(run, device: torch.device) -> float:
    """Matmul FLOPs of one chain's minibatch loss and gradient, as torch counts them (on the torch
    path: the compiled MLP step does the same products where torch cannot see them)."""
    data, model = run.dataset(), run.new_model()
    objective = BatchedObjective(model, "cross_entropy")
    objective.compiled = None
    params = {n: p.detach().unsqueeze(0).to(device) for n, p in model.named_parameters()}
    x, y = (t[: SETTINGS["batch_size"]].unsqueeze(0).to(device) for t in (data.train_x, data.train_y))
    with FlopCounterMode(display=False) as counter:
        objective.losses_and_grads(params, {}, x, y)
    return float(counter.get_total_flops())


def run_grokscope(run, chains: int, device: torch.device, **extra: object) -> float:
    data = run.dataset()
    params = [run.state_dict(s) for s in run.steps]
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    settings = {**SETTINGS, **extra}
    settings["max_steps"] = settings["n_steps"]  # a fixed budget, as devinterp's: the same work on both sides
    start = time.perf_counter()
    estimate_llc(run.new_model(), (data.train_x, data.train_y), params, checkpoint_ids=run.steps, chains=chains,
                 device=str(device), **settings)
    sync(device)
    return time.perf_counter() - start


def stream_seconds(chain_count: int, n_params: int, n_data: int, device: torch.device) -> float:
    """Seconds spent drawing the workload's per-chain minibatch indices and noise alone (as the
    loop on ``device`` draws them, without overlapping anything)."""
    streams = ChainStreams([(0, "bench", c) for c in range(chain_count)], [n_data] * chain_count,
                           SETTINGS["batch_size"], n_params, device)
    length, done = block_length(n_params), 0
    sync(device)
    start = time.perf_counter()
    while done < SETTINGS["n_steps"]:
        index = streams.indices(min(length, SETTINGS["n_steps"] - done)).to(device)
        for step in range(done, done + index.shape[1]):
            streams.noise.at(step)
        done += index.shape[1]
    sync(device)
    return time.perf_counter() - start


def gpu_profile(run, chains: int, device: torch.device, steps: int = 200) -> None:
    """Kernels launched per SGLD step and the share of the wall time the GPU is busy (torch's
    profiler): a small batch is launch-bound when that share is low."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        wall = run_grokscope(run, chains, device, n_steps=steps, burn_in=steps // 4)
    kernels = [e for e in prof.key_averages() if e.device_type == DeviceType.CUDA]
    busy = sum(getattr(e, "self_device_time_total", 0) for e in kernels) / 1e6
    launches = sum(e.count for e in kernels)
    print(f"profile, {chains} chain(s) × {len(run.steps)} checkpoints, {steps} steps: {launches / steps:.0f} kernels a step, "
          f"GPU busy {busy:.2f} s of {wall:.2f} s wall ({100 * busy / wall:.0f}%)")


# (label, extra settings): the kernels and observers whose per-step cost is printed relative to plain sgld
VARIANTS = [
    ("sgld", dict(mala=False)),
    ("rmsprop_sgld", dict(sampler="rmsprop_sgld", epsilon=1e-4, mala=False)),
    ("sgld + step metrics", dict(step_metrics=True, mala=False)),
    ("sgld + MALA on every 20th move (the default)", {}),
    ("sgld + MALA on every move", dict(mala_every=1)),
]


def variant_costs(run, device: torch.device, chains: int = 4, steps: int = 1000) -> None:
    """Per chain-step cost of each kernel/observer variant on the workload's checkpoints."""
    k = len(run.steps)
    print(f"\n| variant ({k} checkpoints × {chains} chains × {steps} steps) | time | µs per chain-step | relative to sgld |")
    print("| --- | --- | --- | --- |")
    base = None
    for label, extra in VARIANTS:
        seconds = run_grokscope(run, chains, device, n_steps=steps, burn_in=steps // 4, **extra)
        base = base or seconds
        print(f"| {label} | {seconds:.1f} s | {1e6 * seconds / (k * chains * steps):.0f} | {seconds / base:.2f}× |", flush=True)


def run_devinterp(run, steps: list[int], chains: int, device: torch.device) -> float:
    from devinterp.optim.sgld import SGLD
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary
    from torch.utils.data import DataLoader, TensorDataset

    data = run.dataset()
    n = data.n_train
    loader = DataLoader(TensorDataset(data.train_x, data.train_y), batch_size=SETTINGS["batch_size"], shuffle=True)

    def evaluate(net, batch):
        x, y = batch
        return torch.nn.functional.cross_entropy(net(x), y)

    start = time.perf_counter()
    for step in steps:
        model = run.model(step).to(device)
        with torch.no_grad():
            init_loss = torch.nn.functional.cross_entropy(model(data.train_x.to(device)), data.train_y.to(device))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            estimate_learning_coeff_with_summary(
                model, loader, evaluate=evaluate, sampling_method=SGLD,
                optimizer_kwargs=dict(lr=SETTINGS["epsilon"], localization=SETTINGS["gamma"], nbeta=n / math.log(n)),
                num_chains=chains, num_draws=SETTINGS["n_steps"] - SETTINGS["burn_in"],
                num_burnin_steps=SETTINGS["burn_in"], init_loss=init_loss, seed=0, verbose=False, device=device,
            )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="example", help="the run whose checkpoints are sampled (trained once, reused)")
    parser.add_argument("--run", default=None, help="where the preset is trained (default runs/bench-PRESET)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--chains", type=int, nargs="+", default=[1, 4, 16], help="chains per checkpoint, one workload each")
    parser.add_argument("--devinterp-checkpoints", default="all",
                        help="'all', N evenly spaced checkpoints (scaled up), or 0 to skip devinterp")
    parser.add_argument("--variants-only", action="store_true", help="only the per-step cost of each kernel and observer")
    parser.add_argument("--as-is", action="store_true", help="sample the run at --run as it stands (no training)")
    parser.add_argument("--profile", type=int, nargs="*", default=[], metavar="CHAINS",
                        help="on a GPU: kernels per step and GPU busy share at these chain counts, then stop")
    parser.add_argument("--steps", type=int, default=SETTINGS["n_steps"], help="SGLD steps per chain (burn-in: a quarter)")
    parser.add_argument("--epsilon", type=float, default=SETTINGS["epsilon"],
                        help="the step size (the transformers diverge at the MLP's 1e-3: use 1e-6)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(2)
    SETTINGS.update(n_steps=args.steps, burn_in=args.steps // 4, epsilon=args.epsilon)

    where = Path(args.run or f"runs/bench-{args.preset}")
    run = load_run(where) if args.as_is else train(build_config(args.preset), where, progress=False)
    k = len(run.steps)
    n_params = sum(p.numel() for p in run.new_model().parameters())
    rate = matmul_rate(device)
    noise = normal_rates(device)
    per_chain_step = flops_per_chain_step(run, device)
    print(f"device: {device}; checkpoints: {k}; parameters: {n_params}; {per_chain_step / 1e6:.3f} MFLOP per chain-step")
    print(f"float32 matmul rate at the start: {rate / 1e9:.1f} GFLOP/s")
    for label, value in noise.items():
        print(f"normal numbers: {value / 1e6:.0f} M/s ({1e9 / value:.3g} ns each) by {label}")

    run_grokscope(run, 1, device, n_steps=100, burn_in=25)  # warm-up (first-call overheads)
    if args.profile:
        for chains in args.profile:
            gpu_profile(run, chains, device)
        return
    if args.variants_only:
        variant_costs(run, device, steps=min(1000, SETTINGS["n_steps"]))
        return
    if args.devinterp_checkpoints == "all":
        dv_steps = run.steps
    else:
        count = int(args.devinterp_checkpoints)
        dv_steps = [run.steps[round(i * (k - 1) / max(count - 1, 1))] for i in range(count)]
    scale = k / len(dv_steps) if dv_steps else 0.0

    rows = []
    for chains in args.chains:
        before = floor_rates(device)
        ours = run_grokscope(run, chains, device)
        after = floor_rates(device)
        rate, (_, noise_label, noise_rate) = max(before[0], after[0]), max(before, after, key=lambda r: r[2])
        print(f"{chains} chain(s): matmul {before[0] / 1e9:.1f} / {after[0] / 1e9:.1f} GFLOP/s, normals "
              f"{1e9 / before[2]:.3g} / {1e9 / after[2]:.3g} ns a number, before / after", flush=True)
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        if device.type == "cuda":
            print(f"{chains} chain(s): drawing the streams alone takes {stream_seconds(k * chains, n_params, run.dataset().n_train, device):.1f} s")
        theirs = run_devinterp(run, dv_steps, chains, device) * scale if dv_steps and chains in DEVINTERP_CHAINS else None
        chain_steps = k * chains * SETTINGS["n_steps"]
        rows.append((chains, ours, theirs, per_chain_step * chain_steps / rate, n_params * chain_steps / noise_rate, chain_steps, peak, noise_label))
        print(f"{chains} chain(s): grokscope {ours:.1f} s" + (f", devinterp {theirs:.1f} s" if theirs else ""), flush=True)

    marker = "" if scale in (0.0, 1.0) else f" (devinterp measured on {len(dv_steps)} of {k} checkpoints, scaled ×{scale:.2f})"
    print(f"\nfastest normals: {', '.join(sorted({row[-1] for row in rows}))}{marker}")
    memory = " peak device memory |" if device.type == "cuda" else ""
    print("| chains/checkpoint | grokscope | devinterp 1.3.2 | speed-up | matmul floor | noise floor | "
          f"grokscope / (matmul + noise floor) | µs per chain-step | chain-steps per second |{memory}")
    print("| --- " * (9 + bool(memory)) + "|")
    for chains, ours, theirs, mm_floor, noise_floor, chain_steps, peak, _ in rows:
        dv = f"{theirs:.0f} s | {theirs / ours:.1f}×" if theirs else "— | —"
        print(f"| {chains} | {ours:.1f} s | {dv} | {mm_floor:.3g} s | {noise_floor:.3g} s | "
              f"{ours / (mm_floor + noise_floor):.2f}× | {1e6 * ours / chain_steps:.1f} | {chain_steps / ours:,.0f} |"
              + (f" {peak:.2f} GiB |" if memory else ""))
    variant_costs(run, device, steps=min(1000, SETTINGS["n_steps"]))


if __name__ == "__main__":
    main()
