"""``grokscope`` command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import sys

from .atomic import check_writable
from .errors import ConfigError, GrokscopeError
from .figure_process import FigureProcess
from .sgld_flags import add_auto_flags, add_sgld_flags, auto_choice, sgld_from_args, sgld_settings
from .text import number
from .version import __version__

DESCRIPTION = ("Train small networks on a + b mod p and measure what they learn: the local learning coefficient "
               "(LLC) through training, with its health; Fourier modes; Pizza or Clock circuits; stages; sweeps; "
               "an HTML report. Start with `grokscope demo`.")


def parse_set_options(items: list[str]) -> dict[str, object]:
    """``--set key=value`` options as typed overrides: a value is JSON when it parses as JSON
    (numbers, true/false, lists), a string otherwise."""
    import json

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


def _cmd_llc(args: argparse.Namespace) -> None:
    import json

    from .llc.api import run_llc
    from .llc.runs.checkpoints import save_llc
    from .llc.tuning.auto import AUTO_SAMPLER
    from .llc.tuning.calibrate import calibration_lines
    from .run import load_run

    run = load_run(args.run)
    check_writable(run.paths.llc, run.paths.figure("llc"))
    auto, off = auto_choice(args)
    if args.save_draws:
        from .llc.draws import require_arviz

        require_arviz()
    if args.refine is not None:
        return _refine(run, sgld_from_args(args), args)
    if auto and args.sampler is None:
        args.sampler = AUTO_SAMPLER
    config = sgld_from_args(args)
    result = run_llc(run, config, args.checkpoints, progress=not args.json, auto_at=args.auto_at if auto else None)
    if not auto:
        result.settings.update(auto=False, auto_off=off)
    json_path, figure_path = save_llc(run, result, args.figures)
    if args.save_draws:
        from .llc.draws import save_draws

        save_draws(result, run.paths.draws)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    if auto:
        print("\n".join(calibration_lines(result.settings["calibration"])))
    print(f"{'step':>6} {'llc_mean':>10} {'± MCSE':>8} {'steps':>6} {'r_hat':>6} {'MALA':>6}  {'status':<10} reasons")
    for e in result.entries:
        mean = "null" if e.llc_mean is None else f"{e.llc_mean:10.3f}"
        print(f"{e.step:>6} {mean:>10} {number(e.mcse, '8.3f')} {e.steps_used or 0:>6} {number(e.r_hat, '6.3f')} "
              f"{number(e.mala_acceptance, '6.3f')}  {e.status:<10} {'; '.join(e.flags)}")
    epsilon = result.settings["epsilon"]
    print(f"{result.status_line()}; sampler {result.settings['sampler']}, ε = {number(epsilon, '.3g')}, "
          f"nβ = {result.settings['nbeta']:.4g} ({result.settings['nbeta_convention']}); wrote {json_path} and {figure_path}"
          + (f", draws in {run.paths.draws}" if args.save_draws else ""))


def _refine(run, config, args: argparse.Namespace) -> None:
    from .llc.runs.refine import refinements, run_refined, save_refined

    args.refine = refinements(args.refine)
    if args.auto or args.save_draws or config.params is not None:
        raise GrokscopeError(f"--refine {args.refine} estimates each part in turn; it takes neither --auto, --params nor "
                             "--save-draws (it runs at the given or default epsilon)")
    parts = run_refined(run, config, args.refine, args.checkpoints, progress=not args.json)
    json_path, figure_path = save_refined(run, args.refine, parts)
    if args.json:
        import json

        print(json.dumps({name: part.to_dict() for name, part in parts.items()}, indent=2))
        return
    width = max(10, *(len(name) for name in parts))
    print(f"{'step':>6} " + " ".join(f"{name:>{width}}" for name in parts))
    for row in zip(*(part.entries for part in parts.values())):
        print(f"{row[0].step:>6} " + " ".join(number(e.llc_mean, f"{width}.2f") for e in row))
    from .llc.diagnostics.health import status_line

    statuses = [e.status for part in parts.values() for e in part.entries]
    print(f"λ̂ per part ({args.refine}); {status_line(statuses)} (reasons in {json_path.name}); wrote {json_path} and {figure_path}")


def _cmd_posterior(args: argparse.Namespace) -> None:
    from .posterior.run import run_posterior, save_posterior
    from .run import load_run

    run = load_run(args.run)
    check_writable(run.paths.posterior, run.paths.posterior_arrays, run.paths.figure("posterior_kernel"))
    auto, _ = auto_choice(args)
    result = run_posterior(run, sgld_from_args(args), args.checkpoints, args.bins, epsilon_auto=auto, progress=True)
    stored, written = save_posterior(run, result, args.pairs)
    print(f"{'step':>6} {'status':<10} {'draws':>6} {'gain: trained':>14} {'held-out':>9} {'kernel: a+b':>12} {'a-b':>7} {'chance':>7}")
    for row in stored["checkpoints"]:
        print(f"{row['step']:>6} {row['status']:<10} {row['draws']:>6} {number(row.get('loss_gain_trained'), '14.4f')} "
              f"{number(row.get('loss_gain_held_out'), '9.4f')} {number(row.get('kernel_share_sum'), '12.3f')} "
              f"{number(row.get('kernel_share_difference'), '7.4f')} {number(row.get('kernel_share_chance'), '7.4f')}")
    print(f"{stored['status']} (every statistic carries the status of its chains); wrote " + ", ".join(str(p) for p in written))


def _cmd_calibrate(args: argparse.Namespace) -> None:
    from .atomic import atomic_write_json
    from .llc.figures import plot_calibration
    from .llc.tuning.calibrate import calibrate, calibration_lines
    from .plotting import save_figure
    from .run import load_run

    run = load_run(args.run)
    check_writable(run.paths.calibration, run.paths.figure("calibration"))
    config = sgld_from_args(args)
    report = calibrate(run, config, args.checkpoint, epsilons=args.epsilons, nbeta_factors=args.nbeta_factors,
                       gammas=args.gammas, progress=True)
    atomic_write_json(run.paths.calibration, report)
    save_figure(plot_calibration(report), run.paths.figure("calibration"))
    print("\n".join(calibration_lines(report)))


def _cmd_validate(args: argparse.Namespace) -> None:
    import json

    from .atomic import json_safe
    from .llc.tuning.auto import AUTO_SAMPLER
    from .llc.validation.suite import parse_case, run_case, suite

    overrides = sgld_settings(args)
    auto = "epsilon" not in overrides
    if args.auto and not auto:
        raise GrokscopeError("--auto chooses epsilon from the data; give it or --epsilon, not both")
    overrides.setdefault("sampler", AUTO_SAMPLER)
    cases = [parse_case(args.case)] if args.case else suite(quick=args.quick, grid=args.grid)
    if not args.json:
        print(f"step size: {'chosen by the calibration rule (--auto)' if auto else overrides['epsilon']}; sampler {overrides['sampler']}")
        print(f"{'case':<28} {'true':>8} {'estimand':>9} {'estimate':>10} {'± MCSE':>8} {'rel err':>8} {'epsilon':>9} {'steps':>6} {'MALA':>6}  "
              f"{'status':<10} reasons")
    rows = []
    for case in cases:
        row = run_case(case, auto=auto, **overrides)
        rows.append(row)
        if args.json:
            continue
        estimate = "none" if row["estimate"] is None else f"{row['estimate']:10.4g}"
        rel = "" if row["relative_error"] is None else f"{100 * row['relative_error']:+7.1f}%"
        print(f"{row['case']:<28} {row['true']:8.4g} {'—' if row['estimand'] is None else format(row['estimand'], '9.4g'):>9} {estimate:>10} {number(row['mcse'], '8.3g')} {rel:>8} "
              f"{number(row['settings']['epsilon'], '9.3g')} {row['steps_used'] or 0:>6} {number(row['mala_acceptance'], '6.3f')}  "
              f"{row['status']:<10} {'; '.join(_sampler_note(row) + row['flags'] + row['notes'])}", flush=True)
    if args.json:
        keys = ("case", "true", "estimand", "estimand_error", "estimate", "std", "mcse", "relative_error", "status", "kernel", "steps_used", "seconds", "settings", "flags",
                "mala_acceptance", "r_hat", "quadratic_floor", "floor_probe", "resolved_truth", "direction_energies", "notes", "calibration")
        out = [json_safe({k: row[k] for k in keys}) for row in rows]
        print(json.dumps(out[0] if args.case else out, indent=2))
    else:
        from .llc.diagnostics.health import status_line

        print(status_line([row["status"] for row in rows]))


def _sampler_note(row: dict) -> list[str]:
    """Where the estimate came from another sampler than the one named (the calibration's fallback)."""
    if row["kernel"] == row["settings"].get("sampler", "sgld"):
        return []
    return [f"{row['kernel']} chains (the calibration's fallback: plain {row['settings'].get('sampler', 'sgld')} passed no step size)"]


def _cmd_analyze(args: argparse.Namespace) -> None:
    import time

    from .analysis import analyze_run, save_analysis, save_stages, verdict_summary
    from .run import load_run

    run = load_run(args.run)
    check_writable(run.paths.fourier, run.paths.circuit, run.paths.figure("fourier"))
    start = time.perf_counter()
    analysis = analyze_run(run, progress=not args.quiet)
    written = save_analysis(run, analysis)
    print(f"key frequencies: {analysis.key_frequencies}; final verdict: {verdict_summary(analysis.circuit_json())}; "
          f"{len(analysis.steps)} checkpoints in {time.perf_counter() - start:.1f} s")
    last = analysis.checkpoints[-1].circuit
    print(f"final: gradient symmetricity {last['gradient_symmetricity']:.3f}, distance irrelevance "
          f"{last['distance_irrelevance']:.3f}, sum dependence {last['sum_dependence']:.3f}, frequency doubling {last['frequency_doubling']}")
    print(f"wrote {len(written)} files under {run.path}")
    if run.paths.llc.exists():
        try:
            _print_stages(save_stages(run), run)
        except ConfigError as err:  # e.g. an LLC of the last checkpoint only: no curve to split
            print(f"stages: not found ({err})")


def _cmd_stages(args: argparse.Namespace) -> None:
    from .analysis import save_stages
    from .run import load_run

    run = load_run(args.run)
    _print_stages(save_stages(run, args.second_llc), run)


def _print_stages(stages: dict, run) -> None:
    from .analysis.stages import boundary_marks, stage_table

    for steps, phase, trend, description in stage_table(stages):
        print(f"{steps:>11}  {phase:<17} {description}")
    print(f"boundaries: {boundary_marks(stages)}; λ̂ peak at step {stages['llc_peak_step']}, grokking at step {stages['grokking_step']}; "
          f"wrote {run.paths.stages} and {run.paths.figure('stages')}")


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


def build_parser() -> argparse.ArgumentParser:
    from .config import PRESETS

    parser = argparse.ArgumentParser(prog="grokscope", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"grokscope {__version__}")
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
    llc.add_argument("run", help="run directory")
    add_sgld_flags(llc)
    llc.add_argument("--checkpoints", default="all", help="all, last, or indices such as 0,5,-1")
    llc.add_argument("--json", action="store_true", help="print the results as JSON")
    llc.add_argument("--save-draws", dest="save_draws", action="store_true", help="also write each checkpoint's kept draws "
                     "as arviz netCDF (results/draws/draws-<step>.nc; needs the arviz extra)")
    add_auto_flags(llc, "choose epsilon from the data first (the default unless --epsilon or --no-auto is given: a batched "
                   "calibration whose evidence goes into llc.json and the report); uses the auto sampler unless --sampler is given")
    llc.add_argument("--auto-at", dest="auto_at", default="last", help="checkpoints to calibrate at (last, or indices; "
                     "with several the smallest chosen epsilon is used)")
    llc.add_argument("--refine", help="components: the weight-refined LLC of each named component beside the whole model's; "
                     "data:difference[:BINS] (pairs binned by (a-b) mod p, default 8 bins), data:frequency[:BINS] (binned by "
                     "k(a-b) folded, k the final embedding's strongest frequency) or data:trained (train vs held-out pairs): "
                     "the data-refined LLC of each subset; one batched run (results/llc_refined.json)")
    llc.set_defaults(func=_cmd_llc)

    posterior = sub.add_parser("posterior", help="per-pair loss gain, loss kernel, Bayesian influence, susceptibilities")
    posterior.add_argument("run", help="run directory")
    add_sgld_flags(posterior)
    posterior.add_argument("--checkpoints", default="all", help="all, last, or indices such as 0,5,-1")
    posterior.add_argument("--bins", type=int, help="bins of a+b, a-b and the frequency phase (default 8, fewer for small p)")
    posterior.add_argument("--pairs", choices=("all", "train", "held-out"), default="all", help="the loss kernel over these pairs")
    add_auto_flags(posterior, "choose epsilon from the data (the default unless --epsilon or --no-auto)")
    posterior.set_defaults(func=_cmd_posterior)

    calibrate = sub.add_parser("calibrate", help="choose epsilon from the data: a batched grid with health flags and the rule's choice")
    calibrate.add_argument("run", help="run directory")
    add_sgld_flags(calibrate)
    calibrate.add_argument("--epsilons", type=float, nargs="+", help="the epsilon grid (default: placed by a MALA bracket)")
    calibrate.add_argument("--nbeta-factors", dest="nbeta_factors", type=float, nargs="+", default=[1.0],
                           help="also vary nbeta by these factors of its default")
    calibrate.add_argument("--checkpoint", default="last", help="last, or a checkpoint index")
    calibrate.add_argument("--gammas", type=float, nargs="+", help="also vary gamma over these values")
    calibrate.set_defaults(func=_cmd_calibrate)

    analyze = sub.add_parser("analyze", help="Fourier anatomy and Pizza/Clock verdicts at every checkpoint")
    analyze.add_argument("run", help="run directory")
    analyze.add_argument("--quiet", action="store_true")
    analyze.set_defaults(func=_cmd_analyze)

    stages = sub.add_parser("stages", help="developmental stages from the LLC and loss curves (also run by analyze when an LLC curve exists)")
    stages.add_argument("run", help="run directory (with results/llc.json)")
    stages.add_argument("--second-llc", help="llc.json of the same run under another sampler setting: which λ̂ boundaries hold")
    stages.set_defaults(func=_cmd_stages)

    report = sub.add_parser("report", help="build report.html for a run or a sweep from stored results (computes nothing expensive)")
    report.add_argument("path", help="run directory or sweep directory")
    report.set_defaults(func=_cmd_report)

    sweep = sub.add_parser("sweep", help="train and measure a grid of runs (p, train_frac, sizes, labels, seeds)")
    sweep.add_argument("spec", help="a YAML/JSON sweep spec, or a built-in one: sweep-p, sweep-frac, alpha-phase")
    sweep.add_argument("--out", required=True, help="sweep directory (rerun the same command to resume)")
    sweep.add_argument("--executor", default="local", help="local: worker processes (default); ray: Ray tasks")
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
    validate.add_argument("--auto", action="store_true",
                          help="choose every step size by the calibration rule (the default unless --epsilon is given)")
    validate.add_argument("--case", help="one case: dln:WIDTHS:RANK (e.g. dln:5,3,5:1; true λ by Aoyagi's formula), "
                          "crossing:K1,K2 or regular:D")
    validate.add_argument("--json", action="store_true", help="print {true, estimate, std, relative_error, settings, flags} as JSON")
    add_sgld_flags(validate)
    validate.set_defaults(func=_cmd_validate)
    return parser


def main(argv: list[str] | None = None, figures: FigureProcess | None = None) -> int:
    """Run one command; ``figures``, when given, draws its figure (figure_process.py)."""
    import shlex

    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.command_line = "grokscope " + shlex.join(argv)
    args.figures = figures
    try:
        with _writer_lock(args):
            args.func(args)
    except GrokscopeError as err:
        print(f"grokscope: error: {err}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as err:
        if not isinstance(err, MemoryError) and "alloc" not in str(err).lower() and "out of memory" not in str(err).lower():
            raise
        print(f"grokscope: error: out of memory ({str(err).splitlines()[0][:120]}); lower --chains, --batch-size or "
              "--max-steps (llc), or the model size (train)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.command in RESUMABLE:
            print("grokscope: interrupted; rerun the same command to resume", file=sys.stderr)
        else:
            print(f"grokscope: interrupted; `grokscope {args.command}` does not resume: rerun it to start again", file=sys.stderr)
        return 130
    return 0


RESUMABLE = ("train", "sweep", "demo")  # commands whose rerun continues where an interrupted one stopped
LOCKED = {"llc": "run", "posterior": "run", "calibrate": "run", "analyze": "run", "stages": "run", "report": "path"}  # writers: the argument naming their directory


def _writer_lock(args: argparse.Namespace):
    """The run's writer lock for the commands that write into an existing run (a second writer is
    refused, naming the holder); train, sweep and demo take theirs where they write."""
    from contextlib import nullcontext
    from pathlib import Path

    target = getattr(args, LOCKED.get(args.command, ""), None)
    if target is None or not Path(target).is_dir():
        return nullcontext()  # a missing directory is named by the command itself
    from .store import RunLock

    return RunLock(Path(target))


def run() -> None:
    """The ``grokscope`` console command: :func:`main`, and its exit code.

    For ``grokscope llc`` a helper process starts first and imports matplotlib on the other core
    while this one imports torch, then draws llc.png (figure_process.py)."""
    figures = None
    try:
        figures = FigureProcess.start() if sys.argv[1:2] == ["llc"] else None
        code = main(figures=figures)
    except KeyboardInterrupt:  # main handles one during the command; this is one while torch loads
        print("grokscope: interrupted before the command started; nothing was written", file=sys.stderr)
        code = 130
    finally:
        if figures is not None:
            figures.close()
    sys.exit(code)


if __name__ == "__main__":
    run()
