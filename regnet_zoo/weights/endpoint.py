"""Where the Hub is and whether to ask it: endpoint, offline mode, reachability, HTTP errors, progress bars.

Environment variables are read when called, not only when huggingface_hub is imported."""

from __future__ import annotations

import os
import sys
from urllib.parse import urlsplit

from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import are_progress_bars_disabled, get_session

from regnet_zoo.weights.errors import WeightsHubError

PROBE_TIMEOUT = 2.0  # seconds a server may take to answer the probe; $HF_HUB_ETAG_TIMEOUT replaces it
_answered: set[str] = set()  # servers ("scheme://host:port/") that answered in this process


def _env_true(*names: str) -> bool:
    return any(os.environ.get(n, "").strip().lower() in {"1", "on", "yes", "true"} for n in names)


def hub_endpoint() -> str:
    """The Hub URL: ``$HF_ENDPOINT`` (read now) or huggingface_hub's configured endpoint."""
    return (os.environ.get("HF_ENDPOINT") or hf_constants.ENDPOINT).rstrip("/")


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set now or was at import."""
    return _env_true("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") or bool(hf_constants.HF_HUB_OFFLINE)


def split_revision(repo: str) -> tuple[str, str | None]:
    """'org/name@rev' -> ('org/name', 'rev') (timm's spelling of a revision)."""
    repo_id, _, revision = repo.partition("@")
    return repo_id, revision or None


def unreachable(url: str) -> str | None:
    """None when the server of ``url`` answers HTTP (any status), else why not ("http://h/ does not answer (...)").

    One HEAD of the server's root through huggingface_hub's session (its proxies, certificates), once per
    process: without network a download fails in seconds, not after retries (23 s; minutes if packets drop).
    """
    parts = urlsplit(url)
    root = f"{parts.scheme}://{parts.netloc}/"
    if root in _answered:
        return None
    try:
        get_session().head(root, timeout=float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or PROBE_TIMEOUT))
    except Exception as e:  # the client returns every HTTP status: any exception means no answer at all
        return f"{root} does not answer ({type(e).__name__}: {e})".replace(": )", ")")
    _answered.add(root)
    return None


def cache_only(url: str) -> str | None:
    """Why only local files may be used for ``url`` now (offline mode, or its server does not answer), else None."""
    return "offline mode is on (HF_HUB_OFFLINE=1)" if hub_offline() else unreachable(url)


def show_progress() -> bool:
    """Draw download progress bars: stderr is a terminal and huggingface_hub's bars are on
    (not turned off by ``HF_HUB_DISABLE_PROGRESS_BARS=1``, read now, or ``disable_progress_bars()``)."""
    tty = sys.stderr is not None and sys.stderr.isatty()
    return tty and not _env_true("HF_HUB_DISABLE_PROGRESS_BARS") and not are_progress_bars_disabled()


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
