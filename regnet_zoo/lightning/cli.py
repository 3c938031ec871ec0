"""``regnet-zoo fit|validate|test|predict``: LightningCLI around ``RegNetClassifier`` and our DataModules, with
the additions of docs/training.md, "The command line" (``best.ckpt`` / ``last.ckpt``, ``--ckpt_path last``, run
folders, linked data, atomic writes, CSV logs, ``TimmSyncBatchNorm``, ``__base__`` recipes, report, export).
"""

from __future__ import annotations

import glob
import json
import os
import sys
import warnings
from typing import Any

import lightning.pytorch as pl
import yaml
from jsonargparse import ActionConfigFile, Path, get_loader
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.plugins.layer_sync import LayerSync
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from regnet_zoo.lightning.callbacks import PredictionWriter, RunReport
from regnet_zoo.lightning.checkpoint_io import AtomicCheckpointIO, local_path
from regnet_zoo.lightning.data import ClassificationDataModule
from regnet_zoo.lightning.errors import DataError, NonFiniteLossError, RecipeError, RunFolderError
from regnet_zoo.lightning.module import RegNetClassifier
from regnet_zoo.lightning.sync_batchnorm import TimmSyncBatchNorm

SUBCOMMANDS = ("fit", "validate", "test", "predict")
CHECKPOINT_NAMES = ("best", "hpc")  # other ckpt_path words Lightning resolves itself
BASE_KEY = "__base__"  # a recipe's top-level key naming the recipe it overrides


def recipe_chain(path: str | os.PathLike) -> list[tuple[str, dict[str, Any]]]:
    """The recipe at ``path`` and the recipes it builds on (``__base__: FILE``, relative to the naming file),
    base first, each ``(path, settings without __base__)``, read with jsonargparse's YAML loader.

    Raises ``RecipeError`` for a base that is missing or unreadable, not a file name, or in a cycle.
    """
    chain: list[tuple[str, dict[str, Any]]] = []
    current, named_by = os.path.abspath(path), None
    while True:
        if any(current == p for p, _ in chain):
            cycle = " -> ".join([*(p for p, _ in reversed(chain)), current])
            raise RecipeError(f"recipe {BASE_KEY} cycle: {cycle}")
        try:
            with open(current, encoding="utf-8") as f:
                settings = get_loader("yaml")(f.read())
        except (OSError, yaml.YAMLError) as e:
            where = f" ({BASE_KEY} of {named_by})" if named_by else ""
            raise RecipeError(f"recipe {current}{where} cannot be read: {e}") from e
        if not isinstance(settings, dict):
            raise RecipeError(f"recipe {current} is not a mapping of settings")
        base = settings.pop(BASE_KEY, None)
        chain.insert(0, (current, settings))
        if base is None:
            return chain
        if not isinstance(base, str) or not base:
            raise RecipeError(f"{BASE_KEY} in {current} must be a file name, got {base!r}")
        current, named_by = os.path.abspath(os.path.join(os.path.dirname(current), base)), current


class RecipeConfigFile(ActionConfigFile):
    """``--config FILE`` where FILE may build on another recipe (top-level ``__base__: BASE``).

    It means ``--config BASE --config FILE`` (jsonargparse's merge: later values win, lists are replaced),
    bases of bases first; other files and config strings are read as usual. Relative paths inside a file
    with a ``__base__`` are read from the working directory, not from that file's folder.
    """

    @staticmethod
    def apply_config(parser: Any, cfg: Any, dest: str, value: Any) -> None:
        if not isinstance(value, (str, os.PathLike)) or not os.path.isfile(value):
            return ActionConfigFile.apply_config(parser, cfg, dest, value)
        try:
            chain = recipe_chain(value)
        except RecipeError as e:  # jsonargparse turns a TypeError into its usage error (exit status 2)
            raise TypeError(f'Parser key "{dest}": {e}') from e
        ActionConfigFile.apply_config(parser, cfg, dest, chain[0][0])  # the base of all: read as a file
        for path, settings in chain[1:]:  # overlays without their __base__ key, applied as config strings
            ActionConfigFile.apply_config(parser, cfg, dest, json.dumps(settings))
            cfg[dest][-1] = Path(path, mode="fr")  # record the file (a readable one), not None
        return None


def checkpoint_files(folder: str) -> list[str]:
    """Names of the checkpoint files (``*.ckpt``, not hidden) in ``folder``, sorted; [] if it does not exist."""
    pattern = os.path.join(glob.escape(folder), "*" + ModelCheckpoint.FILE_EXTENSION)
    return sorted(os.path.basename(p) for p in glob.glob(pattern) if os.path.isfile(p))


class RegNetCLI(LightningCLI):
    """LightningCLI with the checkpoint, logging, linking and export defaults described in the module."""

    def __init__(self, args: list[str] | None = None, run: bool = True, **kwargs: Any):
        kwargs.setdefault("parser_kwargs", {"prog": "regnet-zoo"})
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        with warnings.catch_warnings():  # `args` is our sys.argv tail, not a mistake
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
            super().__init__(RegNetClassifier, ClassificationDataModule, subclass_mode_data=True,
                             seed_everything_default=0, auto_configure_optimizers=False, args=args, run=run, **kwargs)

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        """LightningCLI's parser with ``RecipeConfigFile`` as its ``--config``."""
        kwargs.setdefault("dump_header", [f"lightning.pytorch=={pl.__version__}"])
        parser = self.parser_class(**kwargs)
        parser.add_argument("-c", "--config", action=RecipeConfigFile,
                            help="Path to a configuration file in json or yaml format (may name a __base__ recipe).")
        return parser

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.monitor": "val/acc1", "checkpoint.mode": "max",
                             "checkpoint.save_last": True, "checkpoint.filename": "best",
                             "checkpoint.auto_insert_metric_name": False})
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_chans", "model.in_chans", apply_on="instantiate")
        parser.add_argument("--export_dir", type=str | None, default=None,
                            help="after fit: write the best weights (EMA if enabled) in save_pretrained format here")
        parser.add_argument("--push_to_hub", type=str | None, default=None,
                            help="after fit: push the best weights to this Hugging Face Hub repo id")
        parser.add_argument("--overwrite", type=bool, default=False,
                            help="fit: start a new run even if the checkpoint folder holds an earlier run's "
                                 "checkpoints, deleting them (without it, such a run stops; --ckpt_path last resumes)")

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        root = cfg.trainer.default_root_dir or "."
        if cfg.checkpoint.dirpath is None:
            cfg.checkpoint.dirpath = os.path.join(root, "checkpoints")
        if self.subcommand is None:  # run=False: no ckpt_path, nothing is trained here
            return
        folder = local_path(cfg.checkpoint.dirpath)  # None for remote folders: left to Lightning
        cfg.ckpt_path = self._resolve_ckpt_path(cfg.get("ckpt_path"), folder)
        if cfg.ckpt_path:
            cfg.model.pretrained = False  # the checkpoint holds the weights: no download
        elif self.subcommand == "fit" and folder is not None:
            self._claim_checkpoint_folder(folder, cfg.overwrite)

    def _resolve_ckpt_path(self, ckpt_path: str | None, folder: str | None) -> str | None:
        """``last`` -> the folder's last checkpoint (None for a first ``fit``); a missing file -> error."""
        if not ckpt_path or (folder is None and ckpt_path == "last"):
            return ckpt_path
        if ckpt_path == "last":
            last = [os.path.join(folder, name) for name in checkpoint_files(folder)
                    if name.startswith(ModelCheckpoint.CHECKPOINT_NAME_LAST)]
            if last:  # the newest, as Lightning's ckpt_path="last" picks
                return max(last, key=os.path.getmtime)
            if self.subcommand != "fit":
                raise RunFolderError(f"--ckpt_path last: no last checkpoint in {folder}; train first (regnet-zoo fit "
                                     "with the same config) or pass a checkpoint file")
            rank_zero_info(f"--ckpt_path last: no checkpoint in {folder} yet; starting a new run")
            return None
        local = local_path(ckpt_path)
        if ckpt_path not in CHECKPOINT_NAMES and not ckpt_path.startswith("registry") and local is not None \
                and not os.path.isfile(local):
            raise RunFolderError(f"--ckpt_path: checkpoint file {ckpt_path!r} does not exist")
        return ckpt_path

    @staticmethod
    def _claim_checkpoint_folder(folder: str, overwrite: bool) -> None:
        """A new run needs a checkpoint folder without checkpoints: stop, or with ``overwrite`` delete them."""
        existing = checkpoint_files(folder)
        if not existing:
            return
        if not overwrite:
            raise RunFolderError(
                f"checkpoint folder {folder} already holds an earlier run's checkpoints ({', '.join(existing)}); a new "
                "run would save next to them (best-v1.ckpt, ...) and leave best.ckpt and last.ckpt to the old run. "
                "Resume that run with --ckpt_path last, start over with --overwrite true (deletes them), or train "
                "into another folder with --trainer.default_root_dir DIR")
        if rank_zero_only.rank == 0:  # under torchrun every process gets here; one deletes
            for name in existing:
                os.remove(os.path.join(folder, name))
            rank_zero_info(f"--overwrite: deleted the earlier run's checkpoints in {folder}: {', '.join(existing)}")

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Trainer:
        root = config.get("default_root_dir") or "."
        if config.get("logger") in (None, True):
            config["logger"] = CSVLogger(save_dir=root, name="logs")
        if config.get("sync_batchnorm"):  # Lightning's own conversion would drop BatchNormAct2d's ReLU
            plugins = config.get("plugins") or []
            plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
            if not any(isinstance(p, LayerSync) for p in plugins):
                config["plugins"] = [*plugins, TimmSyncBatchNorm()]
        if self.subcommand == "fit":
            callbacks.append(RunReport(print_on_fit_end=False))  # printed in after_fit, below the progress bar
        if self.subcommand == "predict" and not any(isinstance(c, BasePredictionWriter) for c in callbacks):
            callbacks.append(PredictionWriter(os.path.join(root, "predictions")))
        ckpt = (self.config[self.subcommand] if self.subcommand else self.config).checkpoint
        if ckpt.save_last is True and ckpt.monitor is not None:
            # Lightning >= 2.6 copies save_last's last.ckpt only where it saves a top-k checkpoint (when the
            # metric improved): a second callback saves it at every save point instead, after the section's
            # callback so that last.ckpt holds its updated best score and path
            next(c for c in callbacks if isinstance(c, ModelCheckpoint)).save_last = False
            callbacks.append(ModelCheckpoint(
                dirpath=ckpt.dirpath, filename=ModelCheckpoint.CHECKPOINT_NAME_LAST, monitor=None, save_top_k=1,
                enable_version_counter=False, every_n_train_steps=ckpt.every_n_train_steps,
                train_time_interval=ckpt.train_time_interval, every_n_epochs=ckpt.every_n_epochs,
                save_on_train_epoch_end=ckpt.save_on_train_epoch_end))
        trainer = super()._instantiate_trainer(config, callbacks)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    def after_fit(self) -> None:
        for callback in self.trainer.callbacks:
            if isinstance(callback, RunReport):
                callback.print_report()
        cfg = self.config["fit"]
        if not (cfg.export_dir or cfg.push_to_hub) or not self.trainer.is_global_zero:
            return
        ckpt = self.trainer.checkpoint_callback
        saved = [c.best_model_path or c.last_model_path for c in self.trainer.checkpoint_callbacks]
        path = next((p for p in saved if p), None)  # the section's best, else last.ckpt
        module = self.model
        if path:  # the best epoch's weights; they come from the checkpoint, so no pretrained download
            module = RegNetClassifier.load_from_checkpoint(path, map_location="cpu", pretrained=False)
        score = ckpt.best_model_score if ckpt is not None and ckpt.monitor == "val/acc1" else None
        metrics = {"top1": round(100 * float(score), 3)} if score is not None else None
        for target, write, done in ((cfg.export_dir, module.save_pretrained, "exported"),
                                    (cfg.push_to_hub, module.push_to_hub, "pushed")):
            if target:
                write(target, metrics=metrics)
                print(f"{done} {path or 'final weights'} to {target}", flush=True)


def run(command: str, argv: list[str]) -> int:
    """Run ``regnet-zoo COMMAND ARGV``; returns the exit status: 1 after a one-line message for data, non-finite loss
    and run-folder errors (argument errors exit with jsonargparse's message and status 2)."""
    if command not in SUBCOMMANDS:
        raise ValueError(f"command must be one of {SUBCOMMANDS}, got {command!r}")
    try:
        RegNetCLI(args=[command, *argv])
    except (DataError, NonFiniteLossError, RunFolderError) as e:
        print(f"regnet-zoo {command}: error: {e}", file=sys.stderr)
        return 1
    return 0
