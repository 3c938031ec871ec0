"""``regnet-zoo fit|validate|test|predict``: Lightning training and evaluation (see docs/training.md).

    regnet-zoo fit --config recipes/demo_digits.yaml
    regnet-zoo fit --config recipes/regnetx_1.6gf_100ep.yaml --data.root /data/imagenet
    regnet-zoo validate --config recipes/demo_digits.yaml --ckpt_path last
"""

from __future__ import annotations


def main(command: str, argv: list[str]) -> int:
    from regnet_zoo.lightning.cli import run

    return run(command, list(argv))
