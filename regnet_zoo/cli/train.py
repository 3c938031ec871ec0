"""``regnet-zoo fit|validate|test|predict``: Lightning training and evaluation (see docs/training.md).

    regnet-zoo fit --config recipes/demo_digits.yaml
    regnet-zoo fit --config recipes/regnetx_1.6gf_100ep.yaml --data.root /data/imagenet
    regnet-zoo validate --config recipes/demo_digits.yaml --ckpt_path last

The arguments go unchanged to LightningCLI (``regnet_zoo.lightning.cli.run``), whose ``--help`` and
``--print_config`` they are. Accuracy of published weights on an image folder is ``regnet-zoo eval``.
"""

from __future__ import annotations

import argparse

COMMANDS = {
    "fit": "train with Lightning (LightningCLI; --config recipes/*.yaml)",
    "validate": "validate a checkpoint with Lightning (--ckpt_path)",
    "test": "test a checkpoint with Lightning",
    "predict": "predict with Lightning (CSV of top-k classes)",
}


def register(subparsers) -> None:
    for name, help_ in COMMANDS.items():
        p = subparsers.add_parser(name, help=help_, add_help=False)  # --help is LightningCLI's
        p.set_defaults(handler=run_lightning, pass_through=True)


def run_lightning(args: argparse.Namespace) -> int:
    """``regnet-zoo fit|validate|test|predict ARGS``: LightningCLI with ``args.argv``."""
    from regnet_zoo.lightning.cli import run

    return run(args.command, args.argv)
