"""The ``regnet-zoo`` command: one argparse tree of subcommands, one module per command group.

Convention (every command is added this way):

* A command-group module ``regnet_zoo/cli/<group>.py``, listed in ``GROUPS``, exposes
  ``register(subparsers) -> None``. It adds its sub-parsers with
  ``subparsers.add_parser(NAME, help=ONE_LINE, description=...)`` and sets
  ``parser.set_defaults(handler=run_<cmd>)``; a group of its own (``sweep``) nests
  ``add_subparsers`` the same way.
* A handler is ``def run_<cmd>(args: argparse.Namespace) -> int``: it returns the exit status
  (0 ok, 1 failed, 2 bad input); argparse's own errors exit with 2.
* Importing a cli module stays cheap: no torch, timm or Lightning at module level (``regnet-zoo
  list`` starts without them); heavy imports happen inside the handlers.
* A command whose arguments belong to another parser (Lightning's ``fit``/``validate``/``test``/
  ``predict``, parsed by LightningCLI) adds its sub-parser with ``add_help=False`` and
  ``set_defaults(handler=..., pass_through=True)``; its handler gets them, unparsed and in order,
  as ``args.argv`` (so their ``--help`` and ``--print_config`` are LightningCLI's).

``main`` also turns a missing optional package into ``pip install 'regnet-zoo[EXTRA]'`` (exit 3),
names the closest commands for an unknown one (exit 2) and exits quietly when the reader of its
output goes away (``regnet-zoo list | head``: exit 141, as a process killed by SIGPIPE).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys

from regnet_zoo import __version__

# regnet_zoo/cli/<group>.py, in help order
GROUPS = ("models", "scale", "weights", "evaluate", "train", "sweep", "deploy")

# top-level module -> the extra that installs it
EXTRAS = {"lightning": "train", "jsonargparse": "train", "yaml": "train", "sklearn": "train",
          "matplotlib": "plots", "onnx": "export", "onnxruntime": "export", "onnxscript": "export",
          "ray": "ray"}
SIGPIPE_EXIT = 141  # 128 + SIGPIPE


def positive_int(value: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {n}")
    return n


def fail(command: str, message: object, code: int = 1) -> int:
    """Print ``regnet-zoo COMMAND: MESSAGE`` to stderr and return the exit status ``code``."""
    print(f"regnet-zoo {command}: {message}", file=sys.stderr)
    return code


def build_parser() -> tuple[argparse.ArgumentParser, argparse.Action]:
    """The whole command tree: (top-level parser, its subcommands action, whose ``choices`` are the commands)."""
    parser = argparse.ArgumentParser(
        prog="regnet-zoo", allow_abbrev=False,
        description="RegNet models, weights, training and the design-space method of 'Designing Network Design "
                    "Spaces'. `regnet-zoo COMMAND --help` shows a command's options.")
    parser.add_argument("-V", "--version", action="version", version=f"regnet-zoo {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        importlib.import_module(f"regnet_zoo.cli.{group}").register(commands)
    return parser, commands


def _unknown_command(argv: list[str], commands: argparse.Action) -> str | None:
    """The error for an unknown command in ``argv`` (naming the closest ones), else None."""
    command = next((a for a in argv if not a.startswith("-")), None)
    if command is None or command in commands.choices:
        return None
    close = difflib.get_close_matches(command, list(commands.choices), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown command {command!r}{hint} (choose from {', '.join(commands.choices)})"


def main(argv: list[str] | None = None) -> int:
    """Run ``regnet-zoo ARGV``; returns the exit status (argparse's errors raise ``SystemExit(2)``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, commands = build_parser()
    if (error := _unknown_command(argv, commands)) is not None:
        parser.error(error)
    args, rest = parser.parse_known_args(argv)
    if getattr(args, "pass_through", False):
        args.argv = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        code = int(args.handler(args))
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        if top not in EXTRAS:
            raise
        print(f"regnet-zoo {args.command}: needs the Python package {top!r}, which is not installed; "
              f"install it with: pip install 'regnet-zoo[{EXTRAS[top]}]'", file=sys.stderr)
        return 3
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return SIGPIPE_EXIT


if __name__ == "__main__":
    sys.exit(main())
