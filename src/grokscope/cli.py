"""``grokscope`` command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import sys

from .errors import GrokscopeError


def _cmd_train(args: argparse.Namespace) -> None:
    from .config import build_config
    from .training import train

    config = build_config(args.preset, args.config, args.set, args.seed)
    train(config, args.out, progress=not args.quiet)


def _cmd_import_legacy(args: argparse.Namespace) -> None:
    from .legacy import import_legacy

    run = import_legacy(args.params_json, args.checkpoint_dir, args.out)
    print(f"imported {len(run.steps)} checkpoints into {run.path}")
    print(run.summary_line())


def build_parser() -> argparse.ArgumentParser:
    from .config import PRESETS

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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except GrokscopeError as err:
        print(f"grokscope: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("grokscope: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
