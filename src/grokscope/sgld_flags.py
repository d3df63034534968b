"""The SGLD options of the command line: the flags `llc`, `calibrate` and `validate` share, the
settings they give (and only those), and whether ε is chosen from the data or given."""

from __future__ import annotations

import argparse

from .errors import ConfigError, GrokscopeError


def sgld_from_args(args: argparse.Namespace):
    from .llc.config import sgld_config

    return sgld_config(**sgld_settings(args))


def sgld_settings(args: argparse.Namespace) -> dict:
    """The SGLD settings given on the command line (and only those)."""
    from .llc.config import NBETA_CONVENTIONS
    from .llc.sampling.kernels import option_owners

    names = ("gamma", "epsilon", "steps", "batch_size", "chains", "burn_in", "restrict_to_orth_grad", "weight_decay",
             "params", "seed", "device", "save_samples", "sampler", "step_metrics", "mala", "mala_every",
             "max_steps", "max_seconds", "start_spread", *option_owners())
    settings = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if "steps" in settings:
        settings["n_steps"] = settings.pop("steps")
    if args.nbeta is not None:
        settings["nbeta"] = args.nbeta if args.nbeta in NBETA_CONVENTIONS else _number(args.nbeta, "--nbeta")
    return settings


def _number(text: str, flag: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{flag}={text!r}: expected a number, 'n/ln n' or 'm/ln m'") from None


def auto_choice(args: argparse.Namespace) -> tuple[bool, str | None]:
    """Whether ε is chosen from the data (the default), and when not, why: --epsilon or --no-auto."""
    if args.epsilon is not None:
        if args.auto:
            raise GrokscopeError("--auto chooses epsilon from the data; give it or --epsilon, not both")
        return False, "--epsilon was given"
    if args.no_auto:
        return False, "--no-auto: the default epsilon"
    return True, None


def add_auto_flags(parser: argparse.ArgumentParser, auto_help: str) -> None:
    """--auto and --no-auto, read by :func:`auto_choice`."""
    parser.add_argument("--auto", action="store_true", help=auto_help)
    parser.add_argument("--no-auto", dest="no_auto", action="store_true", help="use the default epsilon instead of choosing it")


def add_sgld_flags(parser: argparse.ArgumentParser) -> None:
    from .llc.config import BUDGET_FACTOR, SGLDConfig
    from .llc.sampling.kernels import KERNELS

    def default(name: str) -> str:  # stated once, in SGLDConfig
        return f"(default {SGLDConfig.model_fields[name].default:g})"

    parser.add_argument("--sampler", choices=list(KERNELS), help="the SGLD kernel (default sgld; rmsprop_sgld at a small "
                        "--rmsprop-eps reads about a tenth high: docs/validation.md)")
    for kernel_name, kernel in KERNELS.items():  # each kernel's own settings, from its Options
        for name, field in kernel.Options.model_fields.items():
            parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=field.annotation,
                                help=f"{kernel_name}: {field.description} (default {field.default:g})")
    parser.add_argument("--gamma", type=float, help=f"localisation strength γ {default('gamma')}")
    parser.add_argument("--epsilon", type=float, help=f"step size ε {default('epsilon')}")
    parser.add_argument("--steps", type=int, help=f"SGLD steps per chain in the first block {default('n_steps')}; "
                        "the chains continue, doubling, until they settle")
    parser.add_argument("--max-steps", dest="max_steps", type=int, help=f"the most SGLD steps per chain (default {BUDGET_FACTOR} × "
                        "--steps; --max-steps equal to --steps: a fixed budget)")
    parser.add_argument("--max-seconds", dest="max_seconds", type=float, help="start no further block of steps after this long")
    parser.add_argument("--batch-size", dest="batch_size", type=int, help=f"minibatch size m {default('batch_size')}")
    parser.add_argument("--chains", type=int, help=f"chains per checkpoint {default('chains')}")
    parser.add_argument("--burn-in", dest="burn_in", type=int, help="steps discarded (default: chosen from the trace, MSER-5)")
    parser.add_argument("--nbeta", help="'n/ln n' (default), 'm/ln m', or a number")
    parser.add_argument("--restrict-to-orth-grad", dest="restrict_to_orth_grad", action="store_true", default=None)
    parser.add_argument("--start-spread", dest="start_spread", type=float,
                        help="every second chain starts at w* + START_SPREAD/√γ · N(0, I), so that R-hat can see chains that "
                        "settled where they began (default 0: all at w*; docs/validation.md)")
    parser.add_argument("--weight-decay", dest="weight_decay", type=float, help="Gaussian prior strength")
    parser.add_argument("--params", help="sample only these: component names (MLP: embedding, layer1, output; transformer: "
                        "embed, head0.., attn, mlp, unembed; comma-separated) or a regex over parameter names")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", help="cpu or cuda")
    parser.add_argument("--save-samples", dest="save_samples", type=int, help="parameter snapshots kept per chain (for the report's PCA)")
    parser.add_argument("--step-metrics", dest="step_metrics", action="store_true", default=None,
                        help="record per chain the norms of each step's gradient, localisation, weight-decay and noise terms and |w - w*|")
    parser.add_argument("--no-mala", dest="mala", action="store_false", default=None,
                        help="skip the MALA acceptance check (it costs one extra gradient every --mala-every steps)")
    parser.add_argument("--mala-every", dest="mala_every", type=int, help="measure the MALA acceptance of every k-th move (default 20)")
