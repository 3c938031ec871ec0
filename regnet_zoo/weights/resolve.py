"""Turn a ``pretrained=`` argument or an ``hf-hub:`` name into weights: the one module that knows every source.

Tags come from the Hub (``hub``), ``"pycls"`` / ``"torchvision"`` from the original URLs (``origin``), a path
may hold any supported layout (detected and converted).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from torch import nn

from regnet_zoo.registry import ModelEntry
from regnet_zoo.weights.apply import Pretrained, looks_like_weight_file, read_state_dict
from regnet_zoo.weights.convert import convert_state_dict, detect_format
from regnet_zoo.weights.endpoint import split_revision
from regnet_zoo.weights.errors import WeightsError
from regnet_zoo.weights.hf_config import CONFIG_NAME, WEIGHTS_NAME, build_model, read_config
from regnet_zoo.weights.hub import download_weights, fetch_hub, hub_download
from regnet_zoo.weights.manifest import WeightsEntry, load_manifest
from regnet_zoo.weights.origin import ORIGIN_TAGS, download_origin, fetch_origin

_log = logging.getLogger(__name__)


def is_path(pretrained: object) -> bool:
    """True for a path-like ``pretrained=`` value (not True or a tag): path-like spelling, a suffix, or existing."""
    return isinstance(pretrained, os.PathLike) or isinstance(pretrained, str) and (
        looks_like_weight_file(pretrained) or os.path.splitext(pretrained)[1] != "" or os.path.exists(pretrained))


def read_weights(path: str | os.PathLike) -> Pretrained:
    """Weights of a local file, converted to our layout when it is another code base's."""
    path = os.fspath(path)
    obj = read_state_dict(path)
    try:
        fmt = detect_format(obj)
    except WeightsError:  # not a known layout: load_into will list what does not fit
        return Pretrained(obj, f"file {path!r}")
    note = "" if fmt == "timm" else f" ({fmt} layout, converted{', BGR->RGB' if fmt == 'pycls' else ''})"
    pretrained_cfg, origin_note = origin_file_cfg(path, fmt)
    return Pretrained(convert_state_dict(obj, fmt), f"file {path!r}{note}{origin_note}", pretrained_cfg)


def origin_file_cfg(path: str | os.PathLike, fmt: str) -> tuple[dict[str, Any], str]:
    """(that entry's pretrained_cfg, a note) for a file named like a manifest entry's original file, else ({}, "")."""
    try:
        w = load_manifest().find_origin_file(path)
    except WeightsError as e:  # a broken manifest override must not stop loading a local file
        _log.warning("cannot look %s up in the weights manifest: %s", os.fspath(path), e)
        return {}, ""
    if w is None or w.origin.format != fmt:
        return {}, ""
    _log.info("%s has the name of %s's original file: using its tag, licence and preprocessing",
              os.fspath(path), w.name)
    return w.pretrained_cfg(hub=False), f" ({w.name}'s original file)"


def resolve_pretrained(entry: ModelEntry | None, pretrained: bool | str | os.PathLike,
                       cache_dir: str | os.PathLike | None = None) -> Pretrained:
    """Weights for ``entry`` from a local file, or (True / a manifest tag) from the Hugging Face Hub.

    The pseudo-tags ``"pycls"`` / ``"torchvision"`` and tags without a Hub copy (``tv_in1k``) fetch the original
    file and convert it.
    """
    if is_path(pretrained):
        return read_weights(pretrained)
    if entry is None:
        raise WeightsError("pretrained=True needs a registered model name; for a custom config "
                           "pass pretrained='path/to/weights.safetensors'")
    tag = None if pretrained is True else str(pretrained)
    w = load_manifest().get(entry.name, ORIGIN_TAGS.get(tag, tag))
    return fetch_hub(w, cache_dir) if w.hub is not None and tag not in ORIGIN_TAGS else fetch_origin(w, cache_dir)


def download_file(w: WeightsEntry, cache_dir: str | os.PathLike | None = None, from_origin: bool = False) -> str:
    """Local path of a manifest entry's verified file: its Hub copy, else (or with ``from_origin``) its original."""
    if from_origin or w.hub is None:
        return download_origin(w, cache_dir)
    return download_weights(w, cache_dir)


def create_from_hub(
    repo: str,
    pretrained: bool | str | os.PathLike = False,
    *,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    **model_kwargs: Any,
) -> nn.Module:
    """``AnyNet`` of a Hub repo (``org/name[@revision]``) from its config.json; ``pretrained=True`` loads its weights.

    False builds the architecture alone (timm's default), a path loads that file instead; ``model_kwargs`` go to
    ``build_model`` (``num_classes``, ``in_chans``, ``device``, ...).
    """
    repo_id, revision = split_revision(repo)
    where = f"hf-hub:{repo}"
    config = read_config(hub_download(repo_id, CONFIG_NAME, revision=revision, cache_dir=cache_dir, token=token))
    state_dict, source = None, where
    if pretrained is True:
        state_dict = read_state_dict(hub_download(repo_id, WEIGHTS_NAME, revision=revision, cache_dir=cache_dir,
                                                  token=token))
    elif pretrained:
        if not is_path(pretrained):
            raise WeightsError(f"{where}: pretrained must be True/False or a path to a weight file, got "
                               f"{pretrained!r} (tags belong to registry names, e.g. 'regnety_4.0gf.ra3_in1k')")
        weights = read_weights(pretrained)  # any supported layout, converted
        state_dict, source = weights.state_dict, weights.source
    extra = {"hf_hub_id": repo_id, "source": "hf-hub"} if pretrained is True else {}
    return build_model(config, state_dict, source, pretrained_cfg=extra, **model_kwargs)
