"""Weights from the Hugging Face Hub: download through ``huggingface_hub``, verify, read with safetensors."""

from __future__ import annotations

import logging
import os

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

from regnet_zoo.weights.apply import WEIGHT_SUFFIXES, Pretrained, read_state_dict
from regnet_zoo.weights.endpoint import cache_only, http_error, hub_endpoint
from regnet_zoo.weights.errors import WeightsNotCachedError, WeightsNotFoundError
from regnet_zoo.weights.files import GIT_SHA1_RE, SHA256_RE, verify_file
from regnet_zoo.weights.manifest import WeightsEntry, describe_tags, load_manifest

_log = logging.getLogger(__name__)


def _hub_hash(path: str, repo_id: str, filename: str, revision: str | None, token: str | bool | None) -> str | None:
    """The hash the Hub gave this file: the cache blob's name (its ETag), else a fresh HEAD if it may be asked."""
    blob = os.path.basename(os.path.realpath(path))
    if SHA256_RE.match(blob) or GIT_SHA1_RE.match(blob):
        return blob
    if cache_only(hub_endpoint()):
        return None
    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=hub_endpoint())
    try:
        etag = (get_hf_file_metadata(url, token=token).etag or "").lower()
    except HfHubHTTPError as e:
        raise http_error(e, f"hf-hub:{repo_id}/{filename}", repo_id, hub_endpoint()) from e
    return etag if SHA256_RE.match(etag) or GIT_SHA1_RE.match(etag) else None


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

    ``hf_hub_download`` (its cache, ``HF_ENDPOINT``, tokens; offline or with the Hub unreachable, only the
    cache), then a hash check: ``sha256`` (pinned in the manifest), else the Hub's own (the LFS sha256 the cache
    names the blob by; a git blob sha1 for small files). ``what`` names the file in messages, ``hint`` ends
    "not found" ones, ``download_as`` is the ``regnet-zoo download`` argument that fetches it. Raises
    ``WeightsNotFoundError``, ``WeightsNotCachedError``, ``WeightsHubError`` or ``WeightsVerificationError``
    (the cached copy is removed).
    """
    what = what or f"hf-hub:{repo_id}/{filename}" + (f"@{revision}" if revision else "")
    endpoint = hub_endpoint()
    why_not = cache_only(endpoint)
    try:  # offline or unreachable: only the cache, without huggingface_hub's network calls and retries
        path = hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir, token=token,
                               endpoint=endpoint, library_name="regnet_zoo", local_files_only=bool(why_not))
    except LocalEntryNotFoundError as e:
        if isinstance(e.__cause__, HfHubHTTPError) and e.__cause__.response is not None:
            raise http_error(e.__cause__, what, repo_id, endpoint) from e  # reached, but refused (403/429/5xx)
        why = why_not or f"the Hub ({endpoint}) could not be reached"
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
    expected, why = ((sha256, "pinned in the weights manifest") if sha256 else
                     (_hub_hash(path, repo_id, filename, revision, token), "the Hub's hash of the file"))
    if expected is None:
        _log.warning("%s: no hash known to check it against (cache without symlinks, offline)", what)
    else:
        verify_file(path, expected, what=what, why=why, remove=(os.path.realpath(path), path))
    return path


def download_weights(w: WeightsEntry, cache_dir: str | os.PathLike | None = None) -> str:
    """Local path of a manifest entry's verified Hub file."""
    return hub_download(w.hub.repo_id, w.hub.filename, revision=w.hub.revision, cache_dir=cache_dir,
                        sha256=w.hub.sha256, what=f"{w.name} (hf-hub:{w.hub.repo_id}/{w.hub.filename})",
                        hint=describe_tags(w.model, load_manifest().for_model(w.model)) + ".", download_as=w.name)


def fetch_hub(w: WeightsEntry, cache_dir: str | os.PathLike | None = None) -> Pretrained:
    """A manifest entry's weights from its Hub file (safetensors only, never pickle), with its preprocessing."""
    state_dict = read_state_dict(download_weights(w, cache_dir))
    return Pretrained(state_dict, f"hf-hub:{w.hub.repo_id} ({w.name})", w.pretrained_cfg())
