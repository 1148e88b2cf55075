"""The ``condense`` command: assembles the subcommands of :mod:`condense.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys

from condense.commands import COMMAND_MODULES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="condense",
        description="Condense clinical deep-learning models (pruning, hLSTM, int8 TFLite) and benchmark them.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"condense.commands.{name}")
        except ModuleNotFoundError as exc:  # a command module not written yet
            if exc.name == f"condense.commands.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; errors become one clear line on stderr."""
    from condense.data import DataError

    parser = build_parser()
    args = parser.parse_args(argv)
    expected = (DataError, FileNotFoundError, ValueError)
    if args.command in ("export", "evaluate", "predict"):
        from condense.export.convert import ExportError

        expected += (ExportError,)
    try:
        return int(args.handler(args) or 0)
    except expected as exc:
        print(f"condense {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
