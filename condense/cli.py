"""The ``condense`` command: assembles the subcommands of :mod:`condense.commands`.

Answering at once: building the parser, ``--help`` of every command and every ``condense data``
command import neither TensorFlow nor Keras (handlers import what they need). Before a handler
runs, TensorFlow's C++ / absl start-up chatter is switched off (unless ``--verbose``); child
processes inherit the setting through the environment.

Expected failures (bad arguments, missing or bad data, a failed export) end as one line,
``condense COMMAND: error: ...``, exit status 2. Library checks name Python arguments
(``Argument `learning_rate` must be ...; got learning_rate=0.0.``); the line names the
command's flags instead (``--learning-rate``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

from condense.commands import COMMAND_MODULES

# Deferred on purpose: the CLI imports this module to build its parser; what a command runs is imported
# when it runs, so `condense --help` stays fast and never starts TensorFlow.

#: Commands that never import TensorFlow: no logging set-up to do before them.
_NO_TENSORFLOW = ("data", "compare")

_VERBOSE_HELP = "show TensorFlow's own start-up and C++ log lines (silenced by default)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="condense",
        description="Condense clinical deep-learning models (pruning, hLSTM, int8 TFLite) and benchmark them.",
    )
    parser.add_argument("--verbose", action="store_true", help=_VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"condense.commands.{name}").register(sub)
    # `condense train ... --verbose` works too; SUPPRESS keeps a `condense --verbose train` intact.
    for subparser in _subparsers(parser):
        subparser.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=_VERBOSE_HELP)
    return parser


def _subparsers(parser: argparse.ArgumentParser):
    """Every parser below ``parser`` (commands and their actions), depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                yield child
                yield from _subparsers(child)


def _command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the command ``args`` came from (``condense data synth``: the ``synth`` parser)."""
    current = parser
    while True:
        sub = next((a for a in current._actions if isinstance(a, argparse._SubParsersAction)), None)
        name = getattr(args, sub.dest, None) if sub is not None else None
        if name is None or name not in sub.choices:
            return current
        current = sub.choices[name]


def _flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    """``{dest: "--long-flag"}`` for the options of ``parser``."""
    flags = {}
    for action in parser._actions:
        long = [s for s in action.option_strings if s.startswith("--")]
        if long and action.dest not in (argparse.SUPPRESS, "help"):
            flags[action.dest] = max(long, key=len)
    return flags


def flag_worded(message: str, flags: dict[str, str]) -> str:
    """``message`` with the Python argument names in ``flags`` replaced by their flags.

    ``Argument `learning_rate` must be a finite number > 0; got learning_rate=0.0.`` becomes
    ``--learning-rate must be a finite number > 0; got 0.0.``. Only names of this command's
    options are touched, and a plain word (``model``, ``seed``) only where it is marked as a
    name: in backquotes, before ``=``, or opening the message.
    """
    if not flags:
        return message
    names = "|".join(re.escape(n) for n in sorted(flags, key=len, reverse=True))
    flag = lambda m: flags[m.group("name")]  # noqa: E731
    message = re.sub(rf"\b[Aa]rgument `(?P<name>{names})`", flag, message)
    message = re.sub(rf"`(?P<name>{names})`", flag, message)
    # "got learning_rate=0.0" after "--learning-rate must ...": "got 0.0"
    message = re.sub(rf"\bgot (?P<name>{names})=",
                     lambda m: "got " if flag(m) in m.string[: m.start()] else f"got {flag(m)} ", message)
    message = re.sub(rf"(?<![\w\-./`])(?P<name>{names})=", lambda m: flag(m) + " ", message)
    message = re.sub(rf"^(?P<name>{names})\b(?![\-./])", flag, message)
    snake = [n for n in flags if "_" in n]  # learning_rate, prune_after: never an English word
    if snake:
        snakes = "|".join(re.escape(n) for n in sorted(snake, key=len, reverse=True))
        message = re.sub(rf"(?<![\w\-./`])(?P<name>{snakes})\b(?![\-./])", flag, message)
    return message


def _quiet_tensorflow(verbose: bool, command: str) -> None:
    """Silence TensorFlow's C++ log (and absl's) unless ``verbose``; children inherit the env."""
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # 2 still lets E-lines and the absl pre-init warning through
    if command in _NO_TENSORFLOW:
        return
    import logging

    from condense._quiet import import_tensorflow_quietly

    import_tensorflow_quietly()  # what TensorFlow writes before its log level applies
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        import absl.logging
    except ImportError:  # pragma: no cover - absl comes with TensorFlow
        return
    absl.logging.set_verbosity(absl.logging.ERROR)


def _one_line_warnings(command: str):
    """A ``warnings.formatwarning`` writing condense's own warnings as ``condense CMD: warning: ...``."""
    import warnings

    default = warnings.formatwarning
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep

    def formatwarning(message, category, filename, lineno, line=None):
        if os.path.abspath(filename).startswith(package):
            return f"condense {command}: warning: {message}\n"
        return default(message, category, filename, lineno, line)

    return formatwarning


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; errors become one clear line on stderr."""
    import warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_tensorflow(args.verbose, args.command)
    previous_format = warnings.formatwarning
    warnings.formatwarning = _one_line_warnings(args.command)
    try:
        return _run(parser, args)
    finally:
        warnings.formatwarning = previous_format


def _describe(exc: BaseException) -> str:
    """The error's message; an operating-system error as ``PATH: what went wrong`` (no errno)."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        what = exc.strerror[0].lower() + exc.strerror[1:]
        if isinstance(exc, IsADirectoryError):
            what += " (a file was expected)"
        elif isinstance(exc, NotADirectoryError):
            what += " (a folder was expected)"
        return f"{exc.filename}: {what}"
    return str(exc)


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from condense.data import DataError

    expected: tuple[type[BaseException], ...] = (DataError, OSError, ValueError)
    if args.command in ("export", "evaluate", "predict"):
        from condense.export.convert import ExportError

        expected += (ExportError,)
    try:
        return int(args.handler(args) or 0)
    except expected as exc:
        if args.verbose:
            import traceback

            traceback.print_exc()
        message = flag_worded(_describe(exc), _flags(_command_parser(parser, args)))
        print(f"condense {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
