"""Precise filters for warnings that Lightning itself triggers on every run and that no user can act on."""

from __future__ import annotations

import warnings

# torch >= 2.9 deprecates constructing ``LeafSpec``; Lightning's ``utilities/_pytree.py`` still does for
# every batch it fetches, so each run (and each sweep trial) printed this line.
LEAF_SPEC_MESSAGE = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
LEAF_SPEC_MODULE = r"lightning\.pytorch\.utilities\._pytree"


def ignore_known_lightning_warnings() -> None:
    """Ignore Lightning's ``LeafSpec`` deprecation warning (only that message, category and module)."""
    warnings.filterwarnings("ignore", message=LEAF_SPEC_MESSAGE, category=FutureWarning, module=LEAF_SPEC_MODULE)
