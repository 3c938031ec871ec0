"""The ``regnet-zoo`` command: a thin dispatcher to one module per command group.

Each command module defines ``main(command: str, argv: list[str]) -> int`` and is imported only
when its command runs, so ``regnet-zoo list`` starts without loading torch.
"""

from __future__ import annotations

import importlib
import sys

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("regnet_zoo.cli.models", "table of models: name, flops, params, acts"),
    "info": ("regnet_zoo.cli.models", "per-stage depth, width, group width, bottleneck, SE of a model"),
    "download": ("regnet_zoo.cli.weights", "download and verify pretrained weights (NAME[.TAG])"),
    "convert": ("regnet_zoo.cli.weights", "convert pycls/torchvision/transformers/timm weights"),
    "push": ("regnet_zoo.cli.weights", "publish a model or checkpoint to the Hugging Face Hub"),
    "fit": ("regnet_zoo.cli.train", "train with Lightning (LightningCLI; --config recipes/*.yaml)"),
    "validate": ("regnet_zoo.cli.train", "validate: NAME --data DIR (pretrained accuracy) or --config/--ckpt_path"),
    "test": ("regnet_zoo.cli.train", "test a checkpoint with Lightning"),
    "predict": ("regnet_zoo.cli.train", "predict with Lightning"),
    "sweep": ("regnet_zoo.cli.sweep", "design-space sweeps: sample, train, analyze"),
    "export": ("regnet_zoo.cli.deploy", "export to ONNX / TorchScript (fused BN)"),
    "benchmark": ("regnet_zoo.cli.deploy", "throughput and memory vs timm/torchvision/EfficientNet"),
}


# top-level module -> the extra that installs it
EXTRAS = {"lightning": "train", "jsonargparse": "train", "yaml": "train", "sklearn": "train",
          "matplotlib": "plots", "onnx": "export", "onnxruntime": "export", "onnxscript": "export",
          "ray": "ray"}


def _is_model_eval(argv: list[str]) -> bool:
    """`validate NAME --data DIR` (pretrained accuracy) rather than Lightning's `validate --config ...`."""
    lightning_style = any(a.startswith(("--config", "--ckpt_path", "--model.", "--data.", "--trainer."))
                          for a in argv)
    positional = any(not a.startswith("-") for i, a in enumerate(argv)
                     if i == 0 or not argv[i - 1].startswith("--") or "=" in argv[i - 1])
    return not lightning_style and (positional or "--data" in argv)


def usage() -> str:
    lines = ["usage: regnet-zoo COMMAND [ARGS]  (regnet-zoo COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from regnet_zoo import __version__

        print(__version__)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(command, list(COMMANDS), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        print(f"regnet-zoo: unknown command {command!r}{hint}\n\n{usage()}", file=sys.stderr)
        return 2
    module_name = COMMANDS[command][0]
    if command == "validate" and _is_model_eval(rest):
        module_name = "regnet_zoo.cli.evaluate"  # `validate NAME --data DIR`: pretrained accuracy
    try:
        module = importlib.import_module(module_name)
        return int(module.main(command, rest) or 0)
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        if top not in EXTRAS:
            raise
        print(f"regnet-zoo {command}: needs the Python package {top!r}, which is not installed; "
              f"install it with: pip install 'regnet-zoo[{EXTRAS[top]}]'", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
