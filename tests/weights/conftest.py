"""A Hugging Face Hub on 127.0.0.1 for the weights tests (no internet), and fixtures around it.

``FakeHub`` runs two threaded HTTP servers: the *hub* (resolve URLs, model info, repo creation,
preupload, LFS batch, commit) and a *CDN* on another port, where LFS files are served and
uploaded, as on the real Hub (the resolve URL of an LFS file answers 302 to another host with
``X-Linked-Etag`` = sha256 and ``X-Linked-Size``; small files answer 200 with ``ETag`` = git blob
sha1). Errors carry the Hub's ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``,
``EntryNotFound``); ``fail`` makes chosen paths answer another status (403, 429, 5xx). Xet is never
advertised. The ``hub`` fixture points ``HF_ENDPOINT``, the cache
and huggingface_hub's import-time constants at it for one test.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import torch
import yaml

LFS_SUFFIXES = (".safetensors", ".pyth", ".pth", ".bin", ".pt")


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    """A model repo: commits (sha -> {path: bytes}), branches, an optional required token."""

    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    token: str | None = None


class FakeHub:
    """State and HTTP servers of the local Hub."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}  # sha256 -> bytes (uploaded or served)
        self.static: dict[str, bytes] = {}  # path on the hub server -> bytes (plain downloads)
        self.corrupt: set[str] = set()  # sha256s whose bytes the CDN serves altered
        self.fail: dict[str, int] = {}  # path fragment -> HTTP status the hub answers instead (403, 429, 503 ...)
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers) on the hub
        self.cdn_requests: list[tuple[str, str, dict[str, str]]] = []  # ... on the CDN
        self.unhandled: list[str] = []
        self.probes = 0  # HEAD / (regnet_zoo's reachability probe), not logged in ``requests``
        self.lock = threading.Lock()
        self.hub = self._serve("hub")
        self.cdn = self._serve("cdn")
        self.url = f"http://127.0.0.1:{self.hub.server_address[1]}"
        self.cdn_url = f"http://127.0.0.1:{self.cdn.server_address[1]}"

    def _serve(self, role: str) -> ThreadingHTTPServer:
        handler = type(f"{role.title()}Handler", (_Handler,), {"fake": self, "role": role})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def close(self) -> None:
        for s in (self.hub, self.cdn):
            s.shutdown()
            s.server_close()

    # ------------------------------------------------------------------ repo content
    def commit(self, repo_id: str, files: dict[str, bytes], branch: str = "main",
               deleted: tuple[str, ...] = ()) -> str:
        """Add a commit with ``files`` (path -> bytes) on ``branch``; returns the commit sha."""
        with self.lock:
            repo = self.repos.setdefault(repo_id, Repo())
            parent = repo.branches.get(branch)
            tree = dict(repo.commits[parent]) if parent else {}
            for p in deleted:
                tree.pop(p, None)
            tree.update(files)
            sha = hashlib.sha1(json.dumps([parent, sorted((p, git_sha1(b)) for p, b in tree.items())]).encode()
                               ).hexdigest()
            repo.commits[sha] = tree
            repo.branches[branch] = sha
            for p, b in tree.items():
                if p.endswith(LFS_SUFFIXES):
                    self.lfs[hashlib.sha256(b).hexdigest()] = b
            return sha

    def resolve(self, repo_id: str, revision: str) -> str | None:
        repo = self.repos[repo_id]
        if revision in repo.branches:
            return repo.branches[revision]
        return revision if revision in repo.commits else None

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        return self.repos[repo_id].commits[self.resolve(repo_id, revision)]

    def requests_for(self, fragment: str) -> list[tuple[str, str, dict[str, str]]]:
        return [r for r in self.requests if fragment in r[1]]


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        out = bytearray()
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                handler.rfile.readline()
                return bytes(out)
            out += handler.rfile.read(size)
            handler.rfile.readline()
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    role: str
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    # ------------------------------------------------------------------ helpers
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              length: int | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, obj, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _error(self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None) -> None:
        h = {"X-Error-Message": message, **(headers or {})}
        if code:
            h["X-Error-Code"] = code
        self._json({"error": message}, status, h)

    def _authorized(self, repo: Repo) -> bool:
        return repo.token is None or self.headers.get("Authorization") == f"Bearer {repo.token}"

    def _repo(self, repo_id: str) -> Repo | None:
        repo = self.fake.repos.get(repo_id)
        if repo is None or not self._authorized(repo):
            self._error(401 if repo is not None else 404, "RepoNotFound", "Repository not found")
            return None
        return repo

    def _handle(self) -> None:
        url = urlsplit(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        if path == "/" and self.command == "HEAD":  # "does the server answer?" (weights.endpoint.unreachable)
            self.fake.probes += 1
            return self._send(200)
        with self.fake.lock:
            log = self.fake.requests if self.role == "hub" else self.fake.cdn_requests
            log.append((self.command, path, {k.lower(): v for k, v in self.headers.items()}))
        body = _read_body(self) if self.command in ("POST", "PUT") else b""
        for fragment, status in self.fake.fail.items():
            if self.role == "hub" and fragment in path:
                return self._error(status, None, f"test hub: refused with {status}")
        for (role, method, pattern), fn in _ROUTES:
            if role != self.role or method != (self.command if self.command != "HEAD" else "GET"):
                continue
            m = pattern.match(path)
            if m:
                return fn(self, m, body, query)
        self.fake.unhandled.append(f"{self.role} {self.command} {path}")
        self._error(404, None, f"no route {self.command} {path}")

    do_GET = do_HEAD = do_POST = do_PUT = _handle

    # ------------------------------------------------------------------ download protocol
    def resolve_file(self, m, body, query) -> None:
        repo_id, revision, filename = m["repo"], m["rev"], m["file"]
        repo = self._repo(repo_id)
        if repo is None:
            return
        commit = self.fake.resolve(repo_id, revision)
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        tree = repo.commits[commit]
        if filename not in tree:
            return self._error(404, "EntryNotFound", f"{filename} does not exist", {"X-Repo-Commit": commit})
        data = tree[filename]
        if filename.endswith(LFS_SUFFIXES):
            oid = hashlib.sha256(data).hexdigest()
            return self._send(302, b"", {"Location": f"{self.fake.cdn_url}/lfs/{oid}", "X-Repo-Commit": commit,
                                         "X-Linked-Etag": f'"{oid}"', "X-Linked-Size": str(len(data)),
                                         "ETag": f'"{git_sha1(data)}"'})
        self._send(200, data, {"X-Repo-Commit": commit, "ETag": f'"{git_sha1(data)}"',
                               "Content-Type": "application/octet-stream"})

    def cdn_file(self, m, body, query) -> None:
        oid = m["oid"]
        data = self.fake.lfs.get(oid)
        if data is None:
            return self._send(404, b"NoSuchKey")
        if oid in self.fake.corrupt:  # same size, different bytes (a broken transfer or mirror)
            data = data[: len(data) // 2] + bytes(b ^ 0xFF for b in data[len(data) // 2: len(data) // 2 + 64]) \
                + data[len(data) // 2 + 64:]
        start = 0
        rng = re.match(r"bytes=(\d+)-$", self.headers.get("Range", ""))
        if rng:
            start = int(rng[1])
            return self._send(206, data[start:], {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
        self._send(200, data, {"Content-Type": "application/octet-stream", "ETag": f'"{oid}"'})

    def static_file(self, m, body, query) -> None:
        data = self.fake.static.get(m["path"])
        if data is None:
            return self._send(404, b"Not Found")
        self._send(200, data, {"Content-Type": "application/octet-stream"})

    def model_info(self, m, body, query) -> None:
        repo = self._repo(m["repo"])
        if repo is None:
            return
        commit = self.fake.resolve(m["repo"], m["rev"] or "main")
        if commit is None:
            return self._error(404, "RevisionNotFound", "Invalid rev id")
        self._json({"id": m["repo"], "modelId": m["repo"], "sha": commit, "private": repo.token is not None,
                    "siblings": [{"rfilename": p} for p in sorted(repo.commits[commit])], "tags": [],
                    "lastModified": "2024-01-01T00:00:00.000Z"})

    # ------------------------------------------------------------------ upload protocol
    def create_repo(self, m, body, query) -> None:
        payload = json.loads(body)
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        if repo_id in self.fake.repos:
            return self._json({"error": "You already created this model repo", "url": f"{self.fake.url}/{repo_id}"},
                              409, {"X-Error-Message": "You already created this model repo"})
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ") or None
        private = payload.get("private") or payload.get("visibility") == "private"
        self.fake.commit(repo_id, {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"})
        self.fake.repos[repo_id].token = token if private else None
        self._json({"url": f"{self.fake.url}/{repo_id}", "name": repo_id})

    def validate_yaml(self, m, body, query) -> None:
        content = json.loads(body)["content"]
        front = re.match(r"^---\n(.*?)\n---\n", content, re.S)
        try:
            meta = yaml.safe_load(front[1]) if front else {}
            assert isinstance(meta, dict)
        except Exception as e:
            return self._json({"errors": [{"message": f"invalid YAML: {e}"}]}, 400)
        self._json({"errors": [], "warnings": []})

    def preupload(self, m, body, query) -> None:
        repo = self._repo(m["repo"])
        if repo is None:
            return
        tree = self.fake.files(m["repo"], m["rev"])
        out = []
        for f in json.loads(body)["files"]:
            lfs = f["path"].endswith(LFS_SUFFIXES) or f["size"] > 1_000_000
            old = tree.get(f["path"])
            oid = None if old is None else (hashlib.sha256(old).hexdigest() if lfs else git_sha1(old))
            out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                        "oid": oid})
        self._json({"files": out, "commitOid": self.fake.resolve(m["repo"], m["rev"])})

    def lfs_batch(self, m, body, query) -> None:
        repo = self._repo(m["repo"])
        if repo is None:
            return
        payload = json.loads(body)
        objects = []
        for o in payload["objects"]:
            obj = {"oid": o["oid"], "size": o["size"], "authenticated": True}
            if o["oid"] not in self.fake.lfs:
                obj["actions"] = {"upload": {"href": f"{self.fake.cdn_url}/upload/{o['oid']}"},
                                  "verify": {"href": f"{self.fake.url}/{m['repo']}.git/info/lfs/objects/verify"}}
            objects.append(obj)
        self._json({"transfer": "basic", "objects": objects}, headers={"Content-Type": "application/vnd.git-lfs+json"})

    def lfs_upload(self, m, body, query) -> None:
        if hashlib.sha256(body).hexdigest() != m["oid"]:
            return self._send(400, b"sha256 mismatch")
        with self.fake.lock:
            self.fake.lfs[m["oid"]] = body
        self._send(200)

    def lfs_verify(self, m, body, query) -> None:
        o = json.loads(body)
        ok = o["oid"] in self.fake.lfs and len(self.fake.lfs[o["oid"]]) == o["size"]
        self._json({"ok": ok}, 200 if ok else 404)

    def commit(self, m, body, query) -> None:
        repo = self._repo(m["repo"])
        if repo is None:
            return
        if query.get("create_pr"):
            return self._error(400, None, "pull requests are not supported by this test hub")
        files, deleted = {}, []
        for line in body.decode().splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "lfsFile":
                if value["oid"] not in self.fake.lfs:
                    return self._error(422, None, f"LFS object {value['oid']} was not uploaded")
                files[value["path"]] = self.fake.lfs[value["oid"]]
            elif key == "deletedFile":
                deleted.append(value["path"])
        sha = self.fake.commit(m["repo"], files, branch=m["rev"], deleted=tuple(deleted))
        self._json({"commitUrl": f"{self.fake.url}/{m['repo']}/commit/{sha}", "commitOid": sha,
                    "pullRequestUrl": None})


_REPO = r"(?P<repo>[^/]+/[^/]+?)"
_ROUTES = [
    (("hub", "GET", re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")), _Handler.resolve_file),
    (("hub", "GET", re.compile(rf"^/api/models/{_REPO}(?:/revision/(?P<rev>[^/]+))?$")), _Handler.model_info),
    (("hub", "GET", re.compile(r"^/static/(?P<path>.+)$")), _Handler.static_file),
    (("hub", "POST", re.compile(r"^/api/repos/create$")), _Handler.create_repo),
    (("hub", "POST", re.compile(r"^/api/validate-yaml$")), _Handler.validate_yaml),
    (("hub", "POST", re.compile(rf"^/api/models/{_REPO}/preupload/(?P<rev>[^/]+)$")), _Handler.preupload),
    (("hub", "POST", re.compile(rf"^/{_REPO}\.git/info/lfs/objects/batch$")), _Handler.lfs_batch),
    (("hub", "POST", re.compile(rf"^/{_REPO}\.git/info/lfs/objects/verify$")), _Handler.lfs_verify),
    (("hub", "POST", re.compile(rf"^/api/models/{_REPO}/commit/(?P<rev>[^/]+)$")), _Handler.commit),
    (("cdn", "GET", re.compile(r"^/lfs/(?P<oid>[0-9a-f]{64})$")), _Handler.cdn_file),
    (("cdn", "PUT", re.compile(r"^/upload/(?P<oid>[0-9a-f]{64})$")), _Handler.lfs_upload),
]


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run faster on one thread than with two threads fighting for a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def fake_hub():
    hub = FakeHub()
    yield hub
    hub.close()


@pytest.fixture
def hub(fake_hub, tmp_path, monkeypatch):
    """``fake_hub`` as the Hub for one test: HF_ENDPOINT, an empty cache, no token, no offline mode.

    huggingface_hub reads its environment into ``huggingface_hub.constants`` when imported, so the
    constants are patched as well as the variables (our code reads the variables at call time).
    """
    from huggingface_hub import constants

    home = tmp_path / "hf_home"
    env = {"HF_ENDPOINT": fake_hub.url, "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"),
           "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "TORCH_HOME": str(tmp_path / "torch"),
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN",
              "REGNET_ZOO_MANIFEST", "REGNET_ZOO_PYCLS_URL", "REGNET_ZOO_TORCHVISION_URL"):
        monkeypatch.delenv(k, raising=False)
    patched = {"ENDPOINT": fake_hub.url,
               "HUGGINGFACE_CO_URL_TEMPLATE": fake_hub.url + "/{repo_id}/resolve/{revision}/{filename}",
               "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HF_HUB_OFFLINE": False,
               "HF_HUB_DISABLE_XET": True, "HF_HUB_DISABLE_TELEMETRY": True,
               "HF_TOKEN_PATH": str(home / "token"), "HF_STORED_TOKENS_PATH": str(home / "stored_tokens")}
    for k, v in patched.items():
        monkeypatch.setattr(constants, k, v)
    fake_hub.corrupt.clear()
    fake_hub.fail.clear()
    fake_hub.requests.clear()
    fake_hub.cdn_requests.clear()
    fake_hub.unhandled.clear()
    yield fake_hub
    assert not fake_hub.unhandled, f"requests the test hub does not know: {fake_hub.unhandled}"


def closed_port() -> str:
    """URL of a port nobody listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def refused_server():
    """``closed_port()``."""
    return closed_port()


class SilentServer(str):
    """URL of a server that accepts connections and never answers (packets dropped, as behind a firewall)."""

    sock: socket.socket

    def connections(self) -> int:
        """How many connections were opened to it so far."""
        self.sock.setblocking(False)
        try:
            while True:
                self.accepted.append(self.sock.accept()[0])
        except BlockingIOError:
            return len(self.accepted)


@pytest.fixture
def silent_server():
    """A ``SilentServer`` (a str: its URL)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        server = SilentServer(f"http://127.0.0.1:{s.getsockname()[1]}")
        server.sock, server.accepted = s, []
        yield server
        for c in server.accepted:
            c.close()


@pytest.fixture
def no_retry_waits(monkeypatch):
    """The sleeps of huggingface_hub's retry backoff (recorded, not slept)."""
    import huggingface_hub.utils._http as hf_http

    waits = []
    monkeypatch.setattr(hf_http.time, "sleep", waits.append)
    monkeypatch.delenv("HF_HUB_ETAG_TIMEOUT", raising=False)
    return waits


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """``model`` with random weights (He-scaled) and BN statistics calibrated on random images, in eval mode.

    Every layer is non-trivial and the outputs depend on the input (uncalibrated random BN statistics
    would make the logits almost constant).
    """
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for t in model.parameters():
            if t.dim() > 1:
                t.copy_(torch.randn(t.shape, generator=g) * (2.0 / t[0].numel()) ** 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.5)
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
        model.train()
        for _ in range(3):
            model(torch.randn(4, getattr(model, "in_chans", 3), 64, 64, generator=g))
        for m in bns:
            m.momentum = 0.1
    return model.eval()


def safetensors_bytes(state_dict: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in state_dict.items()})


@pytest.fixture(scope="session")
def pycls_weights(fake_hub):
    """regnetx_200mf with random weights, published on the test hub as timm's re-hosting of the paper's weights.

    Returns (model, repo_id). The repo looks like ``timm/regnetx_002.pycls_in1k``: model.safetensors +
    a timm config.json.
    """
    import regnet_zoo

    model = randomized(regnet_zoo.create("regnetx_200mf"), seed=1)
    config = {"architecture": "regnetx_002", "num_classes": 1000, "num_features": 368,
              "pretrained_cfg": {"tag": "pycls_in1k", "custom_load": False, "input_size": [3, 224, 224],
                                 "fixed_input_size": False, "interpolation": "bicubic", "crop_pct": 0.875,
                                 "crop_mode": "center", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                 "num_classes": 1000, "pool_size": [7, 7], "first_conv": "stem.conv",
                                 "classifier": "head.fc", "license": "mit",
                                 "origin_url": "https://github.com/facebookresearch/pycls"}}
    repo_id = "timm/regnetx_002.pycls_in1k"
    fake_hub.commit(repo_id, {"model.safetensors": safetensors_bytes(model.state_dict()),
                              "config.json": json.dumps(config, indent=2).encode(), "README.md": b"# test\n"})
    return model, repo_id


@pytest.fixture
def randomize():
    """``randomized(model, seed)``: all parameters and BN statistics random, eval mode."""
    return randomized


@pytest.fixture
def to_safetensors():
    """``safetensors_bytes(state_dict)``: the bytes of a .safetensors file."""
    return safetensors_bytes
