"""Every fenced code block of README.md and docs/*.md runs as written.

Blocks are found by their info string (the word after the opening fence):

* ``python``: exec'd in order, the blocks of one file sharing one namespace;
* ``bash`` / ``sh``: run by ``bash -euo pipefail``; ``console``: the ``$ `` lines of the block;
* ``text`` (output, command synopses, layouts) and data (``yaml``, ``json``, ``toml``): not run;
* any of the above with ``skip-test`` (e.g. ```` ```bash skip-test ````): not run, because it needs
  what this machine has not (ImageNet, a GPU, several GPUs, large downloads, minutes of training).

A block without an info string, or with another one, fails. Each file's blocks run in one temporary
folder (the cwd) holding links to the repository's ``recipes/``, ``scripts/`` and ``benchmarks/``
and the input files the docs name (checkpoints of the layouts they show), with the ``regnet-zoo``
command and the test's Python first on ``PATH``. Weights come from the local Hub of
``tests/weights/conftest.py``: every manifest repo (``timm/<id>.<tag>``) and the paper's original
``.pyth`` files are served on first request, with random weights (real safetensors / pycls files of
the right architecture), so the downloads, hash checks, conversions and uploads the docs show run
offline against the same protocol as the real Hub. The main job's command (``DEMO_COMMAND``) is the
session's ``demo_run`` (tests/conftest.py), run as written once for every test that needs it.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

import regnet_zoo
from regnet_zoo.weights.manifest import load_manifest

from ..conftest import DEMO_COMMAND, ROOT
from ..weights.conftest import FakeHub, randomized, safetensors_bytes
from ..weights.test_weights_convert import pycls_model, save_pycls_checkpoint

DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = {"python", "bash", "sh", "console"}
NOT_CODE = {"text", "yaml", "json", "toml"}
SKIP = "skip-test"
PYCLS_BASE = "https://dl.fbaipublicfiles.com/pycls"
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    """One fenced block: ``file`` (relative to the repository), ``line`` (1-based, of the opening fence)."""

    file: str
    line: int
    lang: str
    flags: tuple[str, ...]
    code: str

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"


def extract_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a markdown file, in order; an unclosed fence is a ``ValueError``."""
    lines = path.read_text().splitlines()
    rel = path.relative_to(ROOT).as_posix()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        close = re.compile(rf"^ {{0,3}}{re.escape(m['fence'][0])}{{{len(m['fence'])},}}\s*$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        if j == len(lines):
            raise ValueError(f"{rel}:{i + 1}: code block is never closed")
        words = m["info"].split()
        blocks.append(Block(rel, i + 1, words[0] if words else "", tuple(words[1:]), "\n".join(lines[i + 1:j])))
        i = j + 1
    return blocks


BLOCKS = [b for f in DOC_FILES for b in extract_blocks(f)]
RUNNABLE: dict[str, list[Block]] = {  # markdown file -> the blocks that run, in order
    file: blocks for file in dict.fromkeys(b.file for b in BLOCKS)
    if (blocks := [b for b in BLOCKS if b.file == file and b.lang in RUN and SKIP not in b.flags])}


# ---------------------------------------------------------------------- the local Hub, lazily filled
class _LazyDict(dict):
    """A dict that calls ``make(key)`` (which may store the key) the first time a missing key is read.

    ``FakeHub.repos`` and ``FakeHub.static`` become these, so repos and files appear when requested.
    """

    def __init__(self, make: Callable[[str], None]) -> None:
        super().__init__()
        self._make, self._lock = make, threading.Lock()

    def _ensure(self, key: str) -> None:
        if not dict.__contains__(self, key):
            with self._lock:
                if not dict.__contains__(self, key):
                    self._make(key)

    def get(self, key, default=None):
        self._ensure(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self._ensure(key)
        return super().__getitem__(key)


class DocsHub(FakeHub):
    """The test Hub serving every manifest entry's Hub file and pycls original, with random weights."""

    def __init__(self) -> None:
        super().__init__()
        entries = load_manifest().entries
        self.by_repo = {e.hub.repo_id: e for e in entries if e.hub is not None}
        self.by_origin = {e.origin.url.removeprefix(PYCLS_BASE + "/"): e for e in entries
                          if e.origin is not None and e.origin.format == "pycls"}
        self.repos = _LazyDict(self._publish)
        self.static = _LazyDict(self._publish_origin)

    def _publish(self, repo_id: str) -> None:
        entry = self.by_repo.get(repo_id)
        if entry is None:
            return  # an unknown repo: the Hub's 404
        model = randomized(regnet_zoo.create(entry.model, num_classes=entry.num_classes), seed=len(repo_id))
        config = {"architecture": regnet_zoo.get_entry(entry.model).timm_name, "num_classes": entry.num_classes,
                  "num_features": model.num_features, "pretrained_cfg": entry.pretrained_cfg()}
        self.commit(repo_id, {entry.hub.filename: safetensors_bytes(model.state_dict()),
                              "config.json": json.dumps(config, indent=2).encode(), "README.md": b"# docs test\n"})

    def _publish_origin(self, path: str) -> None:
        rel = path.removeprefix("pycls/")
        if rel in self.by_origin:
            dict.__setitem__(self.static, path, pycls_file(self.by_origin[rel].model))


def pycls_file(name: str) -> bytes:
    """A checkpoint of registry model ``name`` as the paper's pycls code writes it (random weights)."""
    buf = io.BytesIO()
    save_pycls_checkpoint(pycls_model(name, randomized), buf)
    return buf.getvalue()


# ---------------------------------------------------------------------- inputs the docs name
def _write_model(name: str, fmt: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        if fmt == "pycls":
            path.write_bytes(pycls_file(name))
        elif fmt == "torchvision":
            torch.save(randomized(getattr(torchvision.models, name)()).state_dict(), path)
        else:
            path.write_bytes(safetensors_bytes(randomized(regnet_zoo.create(name)).state_dict()))

    return write


def _write_images(path: Path) -> None:
    """An image folder: two ImageNet synset classes of three random 64 px RGB images."""
    g = torch.Generator().manual_seed(0)
    for synset in ("n01440764", "n01443537"):
        (path / synset).mkdir(parents=True)
        for i in range(3):
            pixels = torch.randint(0, 256, (64, 64, 3), generator=g, dtype=torch.uint8).numpy()
            Image.fromarray(pixels).save(path / synset / f"{i}.png")


# file the docs show as the user's own -> how to write one (a real file of that layout)
INPUTS: dict[str, Callable[[Path], None]] = {
    "ckpt.pyth": _write_model("regnety_4.0gf", "pycls"),
    "path/to/model.safetensors": _write_model("regnety_4.0gf", "timm"),
    "RegNetX-200MF_dds_8gpu.pyth": _write_model("regnetx_200mf", "pycls"),
    "regnet_x_800mf.pth": _write_model("regnet_x_800mf", "torchvision"),
    "runs/best/model.safetensors": _write_model("regnetx_200mf", "timm"),
    "imagenet/val": _write_images,
    "path/to/train_images": _write_images,
}


def _mentions(path: str, blocks: list[Block]) -> bool:
    return any(re.search(rf"(?<![\w/.-]){re.escape(path)}(?![\w/-])", b.code) for b in blocks)


@pytest.fixture(scope="session")
def docs_hub():
    hub = DocsHub()
    yield hub
    hub.close()


@pytest.fixture
def doc_env(file: str, docs_hub, tmp_path, tmp_path_factory, monkeypatch) -> dict[str, str]:
    """For markdown ``file``: ``tmp_path`` made the cwd, holding links to ``recipes/``, ``scripts/`` and
    ``benchmarks/`` and the input files the file's blocks name; the local Hub, an empty HF cache and
    ``regnet-zoo`` on the PATH set for this test only. Returns the environment for shell blocks."""
    from huggingface_hub import constants

    home = tmp_path_factory.mktemp("hf_home")
    shim = tmp_path_factory.mktemp("bin")
    exe_dir = Path(sys.executable).parent
    if not (exe_dir / "regnet-zoo").exists():  # an editable install has it; a bare checkout gets the same entry
        (shim / "regnet-zoo").write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m regnet_zoo \"$@\"\n")
        (shim / "regnet-zoo").chmod(0o755)
    env = {"HF_ENDPOINT": docs_hub.url, "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"),
           "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "HF_TOKEN": "hf_docs_test", "TORCH_HOME": str(home / "torch"),
           "REGNET_ZOO_PYCLS_URL": f"{docs_hub.url}/static/pycls",
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
           "PATH": os.pathsep.join([str(exe_dir), str(shim), os.environ.get("PATH", "")]),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    patched = {"ENDPOINT": docs_hub.url,
               "HUGGINGFACE_CO_URL_TEMPLATE": docs_hub.url + "/{repo_id}/resolve/{revision}/{filename}",
               "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HF_HUB_OFFLINE": False,
               "HF_HUB_DISABLE_XET": True, "HF_HUB_DISABLE_TELEMETRY": True,
               "HF_TOKEN_PATH": str(home / "token"), "HF_STORED_TOKENS_PATH": str(home / "stored_tokens")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HUGGING_FACE_HUB_TOKEN", "REGNET_ZOO_MANIFEST",
              "REGNET_ZOO_TORCHVISION_URL"):
        monkeypatch.delenv(k, raising=False)
    for k, v in patched.items():
        monkeypatch.setattr(constants, k, v)
    monkeypatch.chdir(tmp_path)
    for d in ("recipes", "scripts", "benchmarks"):
        (tmp_path / d).symlink_to(ROOT / d, target_is_directory=True)
    for rel, write in INPUTS.items():
        if _mentions(rel, RUNNABLE[file]):
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            write(tmp_path / rel)
    return dict(os.environ)


def console_commands(code: str) -> str:
    """The commands of a console transcript: ``$ `` lines and their backslash continuations."""
    out, more = [], False
    for line in code.splitlines():
        if more or line.startswith("$ "):
            out.append(line if more else line[2:])
            more = line.endswith("\\")
    return "\n".join(out)


def test_every_block_is_marked():
    """No block without an info string or with one this test does not know (it would silently not run)."""
    unknown = [f"{b.id} ```{b.lang}" for b in BLOCKS if b.lang not in RUN | NOT_CODE]
    assert not unknown, f"code blocks need an info string ({sorted(RUN | NOT_CODE)}): {unknown}"
    bad_flags = [b.id for b in BLOCKS if set(b.flags) - {SKIP}]
    assert not bad_flags, f"unknown info-string words (only {SKIP!r}): {bad_flags}"
    run = [b for blocks in RUNNABLE.values() for b in blocks]
    skipped = [b for b in BLOCKS if SKIP in b.flags]
    print(f"{len(BLOCKS)} blocks: {len(run)} run, {len(skipped)} marked {SKIP}, "
          f"{len(BLOCKS) - len(run) - len(skipped)} text/data")
    assert run, "no runnable block found"


@pytest.mark.slow  # minutes: trainings, exports, downloads
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")  # the docs' code, not ours
@pytest.mark.parametrize("file", sorted(RUNNABLE))
def test_blocks_run(file: str, doc_env, request):
    """The file's blocks run as written, in order, in one folder: python exec'd in one namespace (a
    traceback names the markdown line), shell blocks by bash with exit code 0. The main job's command is
    the one the session's ``demo_run`` fixture ran as written (in its own folder): its result is checked."""
    namespace = {"__name__": "__docs__"}
    for block in RUNNABLE[file]:
        start = time.perf_counter()
        if block.code.strip() == DEMO_COMMAND and block.lang in ("bash", "sh"):
            demo = request.getfixturevalue("demo_run")
            assert demo.returncode == 0, f"{block.id}: {demo.stdout[-4000:]}"
        elif block.lang == "python":
            exec(compile("\n" * block.line + block.code, str(ROOT / block.file), "exec"), namespace)
        else:
            script = console_commands(block.code) if block.lang == "console" else block.code
            proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=doc_env, capture_output=True,
                                  text=True, timeout=900)
            assert proc.returncode == 0, (f"{block.id} exited with {proc.returncode}\n--- stdout\n"
                                          f"{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")
        print(f"{block.id}: {time.perf_counter() - start:.1f} s")  # shown by pytest -rP
