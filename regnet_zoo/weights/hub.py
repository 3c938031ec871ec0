"""Weights from the Hugging Face Hub: download through ``huggingface_hub``, verify, load with safetensors.

* ``hub_download``: ``hf_hub_download`` (its cache, ``HF_HUB_OFFLINE``, ``HF_ENDPOINT``, tokens from
  ``HF_TOKEN`` / ``hf auth login``), then a hash check: a sha256 pinned in the manifest, else the
  Hub's own hash of the file (its LFS sha256, the ``X-Linked-Etag`` the cache names the blob by;
  a git blob sha1 for small non-LFS files). A mismatch removes the cached file.
* ``fetch_pretrained``: the manifest's weights for a registry model and tag.
* ``create_from_hub``: ``regnet_zoo.create("hf-hub:org/repo[@revision]")`` for our repos and timm's.

Both environment variables are read when called (not only when huggingface_hub is imported).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from torch import nn

from regnet_zoo.registry import ModelEntry
from regnet_zoo.weights.apply import WEIGHT_SUFFIXES, read_state_dict
from regnet_zoo.weights.errors import WeightsError, WeightsHubError, WeightsNotCachedError, WeightsNotFoundError
from regnet_zoo.weights.files import GIT_SHA1_RE, SHA256_RE, verify_file
from regnet_zoo.weights.hf_config import CONFIG_NAME, WEIGHTS_NAME, build_model, read_config
from regnet_zoo.weights.manifest import WeightsEntry, describe_tags, load_manifest
from regnet_zoo.weights.resolve import Pretrained, is_path, read_weights

_log = logging.getLogger(__name__)

_TRUE = {"1", "on", "yes", "true"}


def hub_endpoint() -> str:
    """The Hub URL: ``$HF_ENDPOINT`` (read now) or huggingface_hub's configured endpoint."""
    return (os.environ.get("HF_ENDPOINT") or hf_constants.ENDPOINT).rstrip("/")


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set now or was at import."""
    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return env.strip().lower() in _TRUE or bool(hf_constants.HF_HUB_OFFLINE)


def split_revision(repo: str) -> tuple[str, str | None]:
    """'org/name@rev' -> ('org/name', 'rev') (timm's spelling of a revision)."""
    repo_id, _, revision = repo.partition("@")
    return repo_id, revision or None


def _hub_hash(path: str, repo_id: str, filename: str, revision: str | None, token: str | bool | None) -> str | None:
    """The hash the Hub gave this file: the cache blob's name (its ETag), else a fresh HEAD when online."""
    blob = os.path.basename(os.path.realpath(path))
    if SHA256_RE.match(blob) or GIT_SHA1_RE.match(blob):
        return blob
    if hub_offline():
        return None
    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=hub_endpoint())
    try:
        etag = (get_hf_file_metadata(url, token=token).etag or "").lower()
    except HfHubHTTPError as e:
        raise http_error(e, f"hf-hub:{repo_id}/{filename}", repo_id, hub_endpoint()) from e
    return etag if SHA256_RE.match(etag) or GIT_SHA1_RE.match(etag) else None


def http_error(e: HfHubHTTPError, what: str, repo_id: str, endpoint: str) -> WeightsHubError:
    """A ``WeightsHubError`` for an HTTP error of the Hub other than "not found": status, repo and what to do."""
    status = e.response.status_code if e.response is not None else None
    server = (getattr(e, "server_message", None) or "").strip()
    if status in (401, 403):
        advice = (f"access to {repo_id!r} was refused: log in with a token that may read (or write) it "
                  "(HF_TOKEN or `hf auth login`)")
    elif status == 429:
        advice = "too many requests: wait a few minutes and retry (logged-in users have higher limits)"
    elif status is not None and status >= 500:
        advice = "the Hub had a server error: retry later"
    else:
        advice = "see the Hub's message"
    return WeightsHubError(f"{what}: the Hub ({endpoint}) answered HTTP {status or '?'} for {repo_id!r}"
                           + (f" ({server})" if server else "") + f"; {advice}", status)


def hub_download(
    repo_id: str,
    filename: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    sha256: str | None = None,
    token: str | bool | None = None,
    what: str | None = None,
    hint: str = "",
    download_as: str | None = None,
) -> str:
    """Local path of a verified Hub file (downloaded or from the cache).

    ``what`` names the file in messages, ``download_as`` is the ``regnet-zoo download`` argument that
    fetches it. Raises ``WeightsNotFoundError`` (no such repo / revision / file; ``hint`` is appended),
    ``WeightsNotCachedError`` (offline or unreachable and not cached) or
    ``WeightsVerificationError`` (hash mismatch; the cached copy is removed).
    """
    what = what or f"hf-hub:{repo_id}/{filename}" + (f"@{revision}" if revision else "")
    endpoint = hub_endpoint()
    offline = hub_offline()
    try:
        path = hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir, token=token,
                               endpoint=endpoint, local_files_only=offline, library_name="regnet_zoo")
    except LocalEntryNotFoundError as e:
        if isinstance(e.__cause__, HfHubHTTPError) and e.__cause__.response is not None:
            raise http_error(e.__cause__, what, repo_id, endpoint) from e  # reached, but refused (403/429/5xx)
        why = "offline mode is on (HF_HUB_OFFLINE=1)" if offline else f"the Hub ({endpoint}) could not be reached"
        local = (f"pass pretrained='path/to/{os.path.basename(filename)}'" if filename.endswith(WEIGHT_SUFFIXES)
                 else "use a local copy of the repo: regnet_zoo.from_pretrained('path/to/folder')")
        raise WeightsNotCachedError(
            f"{what} is not in the local cache ({cache_dir or hf_constants.HF_HUB_CACHE}) and {why}. Download it "
            f"while online (`regnet-zoo download {download_as or 'hf-hub:' + repo_id}`) and reuse it offline, or "
            f"{local}. {hint}".strip()) from e
    except (GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError, RemoteEntryNotFoundError) as e:
        reasons = (  # most specific first (GatedRepoError is a RepositoryNotFoundError)
            (GatedRepoError, f"{repo_id!r} is gated: accept its terms on the Hub and log in (HF_TOKEN or "
                             "`hf auth login`)"),
            (RepositoryNotFoundError, f"repository {repo_id!r} not found on {endpoint} (private repos need a "
                                      "token: HF_TOKEN or `hf auth login`)"),
            (RevisionNotFoundError, f"revision {revision!r} of {repo_id!r} not found on {endpoint}"),
            (RemoteEntryNotFoundError, f"file {filename!r} not in {repo_id!r} on {endpoint}"),
        )
        reason = next(text for cls, text in reasons if isinstance(e, cls))
        raise WeightsNotFoundError(f"no such weights: {reason}. {hint}".strip()) from e
    except HfHubHTTPError as e:  # 401, 403, 429, 5xx ... on the download itself
        raise http_error(e, what, repo_id, endpoint) from e
    if sha256:
        expected, why = sha256.lower(), "pinned in the weights manifest"
    else:
        expected, why = _hub_hash(path, repo_id, filename, revision, token), "the Hub's hash of the file"
    if expected is None:
        _log.warning("%s: no hash known to check it against (cache without symlinks, offline)", what)
    else:
        verify_file(path, expected, what=what, why=why, remove=(os.path.realpath(path), path))
    return path


def fetch_pretrained(entry: ModelEntry, tag: str | None, cache_dir: str | os.PathLike | None = None) -> Pretrained:
    """Weights of a registry model: ``tag`` from the manifest (None = default), from the Hub.

    The pseudo-tags ``"pycls"`` and ``"torchvision"`` fetch the original file from the paper's /
    torchvision's own URL instead and convert it (see ``weights.origin``), as do tags without a Hub
    copy (torchvision's V1 weights, ``tv_in1k``).
    """
    from regnet_zoo.weights.origin import ORIGIN_TAGS, fetch_origin

    manifest = load_manifest()
    if tag in ORIGIN_TAGS:
        return fetch_origin(manifest.get(entry.name, ORIGIN_TAGS[tag]), cache_dir=cache_dir)
    w = manifest.get(entry.name, tag)
    if w.hub is None:
        return fetch_origin(w, cache_dir=cache_dir)
    return Pretrained(load_hub_weights(w, cache_dir), f"hf-hub:{w.hub.repo_id} ({w.name})", w.pretrained_cfg())


def download_weights(w: WeightsEntry, cache_dir: str | os.PathLike | None = None) -> str:
    """Local path of a manifest entry's verified Hub file (its original file when it has no Hub copy)."""
    if w.hub is None:
        from regnet_zoo.weights.origin import download_origin

        return download_origin(w, cache_dir)
    entries = load_manifest().for_model(w.model)
    return hub_download(w.hub.repo_id, w.hub.filename, revision=w.hub.revision, cache_dir=cache_dir,
                        sha256=w.hub.sha256, what=f"{w.name} (hf-hub:{w.hub.repo_id}/{w.hub.filename})",
                        hint=describe_tags(w.model, entries) + ".", download_as=w.name)


def load_hub_weights(w: WeightsEntry, cache_dir: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """State dict of a manifest entry's Hub file (safetensors only, never pickle)."""
    return read_state_dict(download_weights(w, cache_dir))


def create_from_hub(
    repo: str,
    pretrained: bool | str | os.PathLike = False,
    *,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    **model_kwargs: Any,
) -> nn.Module:
    """``AnyNet`` of a Hub repo (``org/name[@revision]``) from its config.json; ``pretrained=True`` loads its weights.

    ``regnet_zoo.create`` passes ``pretrained=True`` unless told otherwise (a repo names weights) and
    wraps features itself; False builds the architecture alone (timm's default), a path loads that
    file instead. ``model_kwargs`` go to ``build_model`` (``num_classes``, ``in_chans``, ``device``, ...).
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
                               f"{pretrained!r} (tags belong to registry names, e.g. 'regnety_4.0gf.tv2_in1k')")
        weights = read_weights(pretrained)  # any supported layout, converted
        state_dict, source = weights.state_dict, weights.source
    extra = {"hf_hub_id": repo_id, "source": "hf-hub"} if pretrained is True else {}
    return build_model(config, state_dict, source, pretrained_cfg=extra, **model_kwargs)
