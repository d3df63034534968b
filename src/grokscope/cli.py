"""``grokscope`` command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import sys

from .errors import GrokscopeError


def parse_set_options(items: list[str]) -> dict[str, object]:
    """``--set key=value`` options as typed overrides: a value is JSON when it parses as JSON
    (numbers, true/false, lists), a string otherwise."""
    import json

    from .errors import ConfigError

    overrides: dict[str, object] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, text = (part.strip() for part in item.split("=", 1))
        try:
            overrides[key] = json.loads(text)
        except json.JSONDecodeError:
            overrides[key] = text
    return overrides


def _cmd_train(args: argparse.Namespace) -> None:
    from .config import build_config
    from .training import train

    config = build_config(args.preset, args.config, parse_set_options(args.set), args.seed)
    train(config, args.out, progress=not args.quiet, command=args.command_line)


def _cmd_import_legacy(args: argparse.Namespace) -> None:
    from .legacy import import_legacy

    run = import_legacy(args.params_json, args.checkpoint_dir, args.out)
    print(f"imported {len(run.steps)} checkpoints into {run.path}")
    print(run.summary_line())


def _sgld_from_args(args: argparse.Namespace):
    from .llc.config import NBETA_CONVENTIONS, sgld_config

    names = ("gamma", "epsilon", "steps", "batch_size", "chains", "burn_in", "restrict_to_orth_grad", "weight_decay",
             "params", "seed", "device", "save_samples", "sampler", "rmsprop_alpha", "rmsprop_eps", "step_metrics", "mala")
    settings = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if "steps" in settings:
        settings["n_steps"] = settings.pop("steps")
    if args.nbeta is not None:
        settings["nbeta"] = args.nbeta if args.nbeta in NBETA_CONVENTIONS else _number(args.nbeta, "--nbeta")
    return sgld_config(**settings)


def _number(text: str, flag: str) -> float:
    from .errors import ConfigError

    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{flag}={text!r}: expected a number, 'n/ln n' or 'm/ln m'") from None


def _cmd_llc(args: argparse.Namespace) -> None:
    import json

    from .llc.stored import run_llc, save_llc
    from .run import load_run

    run = load_run(args.run)
    config = _sgld_from_args(args)
    result = run_llc(run, config, args.checkpoints, progress=not args.json)
    json_path, figure_path = save_llc(run, result)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    print(f"{'step':>6} {'llc_mean':>10} {'llc_std':>8} {'r_hat':>6} {'diverged':>8}")
    for e in result.entries:
        if e.llc_mean is None:
            print(f"{e.step:>6} {'null':>10}  {e.reason}")
            continue
        print(f"{e.step:>6} {e.llc_mean:10.3f} {e.llc_std:8.3f} {e.r_hat or float('nan'):6.3f} {e.diverged_chains:>8}")
    print(f"sampler {result.settings['sampler']}, nβ = {result.settings['nbeta']:.4g} ({result.settings['nbeta_convention']}); "
          f"wrote {json_path} and {figure_path}")


def _cmd_calibrate(args: argparse.Namespace) -> None:
    from .llc.calibrate import calibrate, plot_calibration
    from .png import save_figure
    from .run import load_run
    from .store import atomic_write_json

    run = load_run(args.run)
    config = _sgld_from_args(args)
    report = calibrate(run, config, args.checkpoint, gammas=tuple(args.gammas) if args.gammas else None, progress=True)
    atomic_write_json(run.paths.calibration, report)
    save_figure(plot_calibration(report), run.paths.figure("calibration"))
    for cell in report["cells"]:
        mean = "diverged" if cell["llc_mean"] is None else f"{cell['llc_mean']:.3f}"
        flags = ", ".join(cell["flags"]) or "healthy"
        print(f"eps={cell['epsilon']:<8g} nbeta={cell['nbeta']:<10.4g} gamma={cell['gamma']:<6g} llc={mean:<10} {flags}")
    rec = report["recommended"]
    print("recommended: " + ("none (no healthy cell)" if rec is None else f"epsilon={rec['epsilon']:g} nbeta={rec['nbeta']:.4g} gamma={rec['gamma']:g}"))


def _cmd_validate(args: argparse.Namespace) -> None:
    from .llc.validate import run_case, suite

    print(f"{'case':<28} {'true':>8} {'estimate':>10} {'± std':>8} {'rel err':>8}")
    for case in suite(quick=args.quick, grid=args.grid):
        row = run_case(case, device=args.device, sampler=args.sampler)
        estimate = "diverged" if row["estimate"] is None else f"{row['estimate']:10.4g}"
        rel = "" if row["rel_error"] is None else f"{100 * row['rel_error']:+7.1f}%"
        print(f"{row['case']:<28} {row['true']:8.4g} {estimate:>10} {row['std'] or 0:8.3g} {rel:>8}", flush=True)


def _cmd_analyze(args: argparse.Namespace) -> None:
    import time

    from .analysis import analyze_run, save_analysis
    from .run import load_run

    run = load_run(args.run)
    start = time.perf_counter()
    analysis = analyze_run(run, progress=not args.quiet)
    written = save_analysis(run, analysis)
    print(f"key frequencies: {analysis.key_frequencies}; final verdict: {analysis.final_verdict} "
          f"(formed at step {analysis.circuit_formed_at}); {len(analysis.steps)} checkpoints in {time.perf_counter() - start:.1f} s")
    last = analysis.checkpoints[-1].circuit
    print(f"final: gradient symmetricity {last['gradient_symmetricity']:.3f}, distance irrelevance "
          f"{last['distance_irrelevance']:.3f}, frequency doubling {last['frequency_doubling']}")
    print(f"wrote {len(written)} files under {run.path}")


def _cmd_report(args: argparse.Namespace) -> None:
    from .layout import RunPaths, SweepPaths
    from .report import build_run_report, build_sweep_report

    run, sweep = RunPaths(args.path), SweepPaths(args.path)
    if sweep.is_sweep():
        print(f"wrote {build_sweep_report(sweep.root)}")
    elif run.is_run():
        print(f"wrote {build_run_report(run.root)}")
    else:
        raise GrokscopeError(f"{args.path} is neither a run directory ({RunPaths.config}) nor a sweep directory ({SweepPaths.spec})")


def _cmd_sweep(args: argparse.Namespace) -> None:
    from .layout import SweepPaths
    from .sweeps import load_spec, run_sweep

    spec = load_spec(args.spec)
    outcome = run_sweep(spec, args.out, args.executor, args.address, args.workers, args.threads, progress=not args.quiet)
    if outcome.failed:
        raise GrokscopeError(f"{len(outcome.failed)} of {len(outcome.rows)} points failed (see the error column of {SweepPaths(outcome.path).results}); rerun to retry them")


def _cmd_demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    run_demo(args.out, progress=not args.quiet, command=args.command_line)


def _add_sgld_flags(parser: argparse.ArgumentParser) -> None:
    from .llc.kernels import KERNELS

    parser.add_argument("run", help="run directory")
    parser.add_argument("--sampler", choices=list(KERNELS), help="the SGLD kernel (default sgld)")
    parser.add_argument("--rmsprop-alpha", dest="rmsprop_alpha", type=float, help="rmsprop_sgld: squared-gradient decay (default 0.99)")
    parser.add_argument("--rmsprop-eps", dest="rmsprop_eps", type=float, help="rmsprop_sgld: preconditioner eps (default 0.1)")
    parser.add_argument("--gamma", type=float, help="localisation strength γ (default 5)")
    parser.add_argument("--epsilon", type=float, help="step size ε (default 1e-3)")
    parser.add_argument("--steps", type=int, help="SGLD steps per chain (default 3000)")
    parser.add_argument("--batch-size", dest="batch_size", type=int, help="minibatch size m (default 64)")
    parser.add_argument("--chains", type=int, help="chains per checkpoint (default 4)")
    parser.add_argument("--burn-in", dest="burn_in", type=int, help="steps discarded (default 25%%)")
    parser.add_argument("--nbeta", help="'n/ln n' (default), 'm/ln m', or a number")
    parser.add_argument("--restrict-to-orth-grad", dest="restrict_to_orth_grad", action="store_true", default=None)
    parser.add_argument("--weight-decay", dest="weight_decay", type=float, help="Gaussian prior strength")
    parser.add_argument("--params", help="sample only these: component names (MLP: embedding, layer1, output; transformer: "
                        "embed, head0.., attn, mlp, unembed; comma-separated) or a regex over parameter names")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", help="cpu or cuda")
    parser.add_argument("--save-samples", dest="save_samples", type=int, help="parameter snapshots kept per chain (for the report's PCA)")
    parser.add_argument("--step-metrics", dest="step_metrics", action="store_true", default=None,
                        help="record per chain the norms of each step's gradient, localisation, weight-decay and noise terms and |w - w*|")
    parser.add_argument("--mala", action="store_true", default=None, help="also record the MALA acceptance rate")


def build_parser() -> argparse.ArgumentParser:
    from .config import PRESETS
    from .llc.kernels import KERNELS
    from .sweeps.executors import EXECUTORS

    parser = argparse.ArgumentParser(prog="grokscope", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a preset (with overrides) into a run directory")
    train.add_argument("--preset", default="example", help=f"one of: {', '.join(PRESETS)}")
    train.add_argument("--config", help="JSON file of overrides (flat keys or task/model/training sections)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one field (repeatable)")
    train.add_argument("--seed", type=int, help="training seed")
    train.add_argument("--out", required=True, help="run directory (rerun the same command to resume)")
    train.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    train.set_defaults(func=_cmd_train)

    legacy = sub.add_parser("import-legacy", help="import a run of the original study's code")
    legacy.add_argument("params_json")
    legacy.add_argument("checkpoint_dir")
    legacy.add_argument("--out", required=True)
    legacy.set_defaults(func=_cmd_import_legacy)

    llc = sub.add_parser("llc", help="estimate the LLC of a run's checkpoints (all chains batched)")
    _add_sgld_flags(llc)
    llc.add_argument("--checkpoints", default="all", help="all, last, or indices such as 0,5,-1")
    llc.add_argument("--json", action="store_true", help="print the results as JSON")
    llc.set_defaults(func=_cmd_llc)

    calibrate = sub.add_parser("calibrate", help="grid over epsilon and nbeta with health flags")
    _add_sgld_flags(calibrate)
    calibrate.add_argument("--checkpoint", default="last", help="last, or a checkpoint index")
    calibrate.add_argument("--gammas", type=float, nargs="+", help="also vary gamma over these values")
    calibrate.set_defaults(func=_cmd_calibrate)

    analyze = sub.add_parser("analyze", help="Fourier anatomy and Pizza/Clock verdicts at every checkpoint")
    analyze.add_argument("run", help="run directory")
    analyze.add_argument("--quiet", action="store_true")
    analyze.set_defaults(func=_cmd_analyze)

    report = sub.add_parser("report", help="build report.html for a run or a sweep from stored results (computes nothing expensive)")
    report.add_argument("path", help="run directory or sweep directory")
    report.set_defaults(func=_cmd_report)

    sweep = sub.add_parser("sweep", help="train and measure a grid of runs (p, train_frac, sizes, labels, seeds)")
    sweep.add_argument("spec", help="a YAML/JSON sweep spec, or a built-in one: sweep-p, sweep-frac")
    sweep.add_argument("--out", required=True, help="sweep directory (rerun the same command to resume)")
    sweep.add_argument("--executor", default="local", choices=list(EXECUTORS), help="local worker processes (default) or Ray tasks")
    sweep.add_argument("--address", help="Ray cluster address (default: start a local one)")
    sweep.add_argument("--workers", type=int, help="parallel units (default: cores / threads)")
    sweep.add_argument("--threads", type=int, default=1, help="torch threads per unit (default 1)")
    sweep.add_argument("--quiet", action="store_true")
    sweep.set_defaults(func=_cmd_sweep)

    demo = sub.add_parser("demo", help="train the example preset, estimate its LLC, analyse it, write the report")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--quiet", action="store_true")
    demo.set_defaults(func=_cmd_demo)

    validate = sub.add_parser("validate", help="estimate λ on models with known λ and print the errors")
    validate.add_argument("--quick", action="store_true", help="skip the larger deep linear networks")
    validate.add_argument("--grid", action="store_true", help="every normal crossing with powers up to 3")
    validate.add_argument("--device", default="cpu")
    validate.add_argument("--sampler", default="sgld", choices=list(KERNELS), help="the SGLD kernel (default sgld)")
    validate.set_defaults(func=_cmd_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    import shlex

    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.command_line = "grokscope " + shlex.join(argv)
    try:
        args.func(args)
    except GrokscopeError as err:
        print(f"grokscope: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.command in RESUMABLE:
            print("grokscope: interrupted; rerun the same command to resume", file=sys.stderr)
        else:
            print(f"grokscope: interrupted; `grokscope {args.command}` does not resume: rerun it to start again", file=sys.stderr)
        return 130
    return 0


RESUMABLE = ("train", "sweep", "demo")  # commands whose rerun continues where an interrupted one stopped


if __name__ == "__main__":
    sys.exit(main())
