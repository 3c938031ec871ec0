"""Lightning training: the paper's recipe (``RegNetClassifier``), data modules, callbacks, CLI.

    import lightning as L
    from regnet_zoo.lightning import RegNetClassifier, DigitsDataModule
    L.Trainer(max_epochs=10).fit(RegNetClassifier("regnetx_200mf", num_classes=10), DigitsDataModule())
"""

from regnet_zoo.lightning.data import (
    ClassificationDataModule,
    DigitsDataModule,
    FinetuneDataModule,
    ImageFolderDataModule,
)
from regnet_zoo.lightning.errors import DataError, NonFiniteLossError, RunFolderError
from regnet_zoo.lightning.module import RegNetClassifier
from regnet_zoo.lightning.schedule import LrSchedule, global_batch_size, scaled_lr
from regnet_zoo.lightning.sync_batchnorm import TimmSyncBatchNorm

__all__ = ["ClassificationDataModule", "DataError", "DigitsDataModule", "FinetuneDataModule",
           "ImageFolderDataModule", "LrSchedule", "NonFiniteLossError", "RegNetClassifier", "RunFolderError",
           "TimmSyncBatchNorm", "global_batch_size", "scaled_lr"]
