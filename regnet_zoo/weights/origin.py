"""Weights from their original publication (the paper's pycls model zoo, torchvision), converted.

``pretrained="pycls"``: the paper's ``.pyth`` (base URL ``$REGNET_ZOO_PYCLS_URL``), BGR -> RGB stem;
``pretrained="torchvision"``: torchvision's V2 file (base URL ``$REGNET_ZOO_TORCHVISION_URL``), whose name's
sha256 prefix is checked. Read with ``torch.load(weights_only=True)``, cached in ``cache_dir`` or torch's hub
cache (shared with torchvision); a progress bar on a terminal; a server that does not answer fails at once.
"""

from __future__ import annotations

import logging
import os
import re
import urllib.error
from pathlib import Path

import torch.hub

from regnet_zoo.weights.apply import Pretrained, read_state_dict
from regnet_zoo.weights.convert import convert_state_dict
from regnet_zoo.weights.endpoint import cache_only, show_progress
from regnet_zoo.weights.errors import (
    WeightsError,
    WeightsNotCachedError,
    WeightsNotFoundError,
    WeightsVerificationError,
)
from regnet_zoo.weights.files import file_sha256, verify_file
from regnet_zoo.weights.manifest import WeightsEntry

_log = logging.getLogger(__name__)

# pseudo-tag of create(pretrained=...) -> the manifest tag whose origin it downloads
ORIGIN_TAGS = {"pycls": "pycls_in1k", "torchvision": "tv2_in1k"}
# format -> (environment variable, default base URL of the original files)
BASE_URLS = {
    "pycls": ("REGNET_ZOO_PYCLS_URL", "https://dl.fbaipublicfiles.com/pycls"),
    "torchvision": ("REGNET_ZOO_TORCHVISION_URL", "https://download.pytorch.org/models"),
}
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,64})\.")  # torchvision / torch.hub convention


def origin_url(w: WeightsEntry) -> str:
    """The entry's original URL, with its base replaced by the format's environment variable if set."""
    if w.origin is None:
        raise WeightsNotFoundError(f"{w.name} has no original file outside the Hub; use pretrained={w.tag!r}")
    env, default = BASE_URLS.get(w.origin.format, (None, None))
    base = os.environ.get(env) if env else None
    if base and w.origin.url.startswith(default):
        return base.rstrip("/") + w.origin.url[len(default):]
    return w.origin.url


def download_origin(w: WeightsEntry, cache_dir: str | os.PathLike | None = None) -> str:
    """Local path of the entry's original file (downloaded once, hash-checked when a hash is known)."""
    url = origin_url(w)
    name = url.rsplit("/", 1)[-1].split("?")[0]
    dst = (Path(cache_dir) / "regnet_zoo_origin" if cache_dir else Path(torch.hub.get_dir()) / "checkpoints") / name
    m = _HASH_IN_NAME.search(name)
    if not dst.is_file():
        try:
            why_not = cache_only(url)
            if why_not:  # fail now rather than after urllib's connection timeout
                raise urllib.error.URLError(why_not)
            dst.parent.mkdir(parents=True, exist_ok=True)
            _log.info("downloading %s -> %s", url, dst)
            torch.hub.download_url_to_file(url, str(dst), progress=show_progress())
        except urllib.error.HTTPError as e:
            hint = f" (mirror: set {BASE_URLS[w.origin.format][0]})" if w.origin.format in BASE_URLS else ""
            if e.code == 404:
                raise WeightsNotFoundError(f"no such weights: {url} answered 404{hint}") from e
            raise WeightsNotCachedError(f"{w.name}: downloading {url} failed: HTTP {e.code}{hint}") from e
        except urllib.error.URLError as e:
            raise WeightsNotCachedError(
                f"{w.name}: the original file {url} is not cached in {dst.parent} and cannot be fetched now "
                f"({e.reason}). Download it while online: `regnet-zoo download {w.name} --from-origin`, or pass "
                f"pretrained='path/to/{name}'.") from e
    if w.origin.sha256:
        verify_file(dst, w.origin.sha256, what=f"{w.name} ({url})", why="pinned in the weights manifest",
                    remove=(dst,))
    elif m and not (got := file_sha256(dst)).startswith(m[1]):  # remembered per unchanged file: hashed once
        dst.unlink()
        raise WeightsVerificationError(f"{w.name}: sha256 mismatch: expected a digest starting {m[1]} (in the file "
                                       f"name), got {got}. Removed {dst}; run again to download it anew.")
    return str(dst)


def fetch_origin(w: WeightsEntry, cache_dir: str | os.PathLike | None = None) -> Pretrained:
    """Download the entry's original checkpoint and convert it to our layout (RGB)."""
    path = download_origin(w, cache_dir)
    try:
        state_dict = convert_state_dict(read_state_dict(path), w.origin.format)
    except WeightsError as e:
        raise WeightsError(f"{w.name}: {path}: {e}") from e
    url = origin_url(w)
    return Pretrained(state_dict, f"{url} ({w.origin.format} checkpoint, converted)",
                      {**w.pretrained_cfg(hub=False), "url": url})
