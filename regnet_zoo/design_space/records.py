"""Sweep files, JSON Lines: trial files (``sweep sample -o``, one sampled model per line, written
atomically) and append-only results files (``<run dir>/results.jsonl``, one line per finished trial:
the trial plus ``status``, ``error`` (top-1, %), timings and settings). A torn last line left by a
crash (kill -9) is ignored on read and cut off before the next append, so finished trials are never lost.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from regnet_zoo.design_space.sampling import SampleResult
from regnet_zoo.fileio import atomic_write

RESULTS_NAME = "results.jsonl"


class SweepFileError(ValueError):
    """A trial or results file that cannot be used (corrupt line, mismatched trial...)."""


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a JSONL file; a torn (unterminated, unparsable) last line is skipped."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SweepFileError(f"{path}: no such file") from None
    lines = data.split(b"\n")
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:
            if i == len(lines) - 1:  # no newline after it: a write cut short, the trial reruns
                break
            raise SweepFileError(f"{path}:{i + 1}: not a JSON object ({e}); the file is corrupt") from None
        if not isinstance(rec, dict):
            raise SweepFileError(f"{path}:{i + 1}: expected a JSON object, got {type(rec).__name__}")
        records.append(rec)
    return records


def drop_torn_tail(path: str | os.PathLike) -> int:
    """Cut an unterminated last line off ``path`` (left by a crash); returns the bytes removed."""
    path = Path(path)
    if not path.exists():
        return 0
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        f.seek(0)
        keep = f.read().rfind(b"\n") + 1  # only after a crash: reading the whole file is fine
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
        return size - keep


def append_jsonl(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one record to ``path`` as a durable line: cut a torn last line left by a crash
    (``drop_torn_tail``), then open, write, flush, fsync, close. The one writer of results files."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    drop_torn_tail(path)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_jsonl_atomic(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> Path:
    """Write all records to ``path`` at once (``fileio.atomic_write``: temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def trials_from_samples(result: SampleResult, start_index: int = 0) -> list[dict[str, Any]]:
    """Trial records for the models of a ``sampling.sample`` result."""
    name, shape = result.space.name, {k: result.settings[k] for k in ("resolution", "in_chans", "num_classes")}
    return [{"id": f"{name}-{start_index + i:04d}", "space": name, "index": start_index + i, "cfg": s.cfg.to_dict(),
             "params": s.params, "complexity": s.complexity, **shape} for i, s in enumerate(result.samples)]


def read_trials(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Trials of a trial file, checked for the required fields and unique ids."""
    trials = read_jsonl(path)
    seen: set[str] = set()
    for i, t in enumerate(trials):
        missing = [k for k in ("id", "space", "cfg", "resolution", "num_classes") if k not in t]
        if missing:
            raise SweepFileError(f"{path}: trial {i + 1} lacks {missing}; is this a trial file from "
                                 "`regnet-zoo sweep sample`?")
        if t["id"] in seen:
            raise SweepFileError(f"{path}: trial id {t['id']!r} appears twice")
        seen.add(t["id"])
    return trials


def finished_ids(results: list[dict[str, Any]], trials: list[dict[str, Any]] | None = None) -> set[str]:
    """Ids of trials with an ``ok`` result; checks each matches its trial's config."""
    by_id = {t["id"]: t for t in trials or []}
    done = set()
    for r in results:
        if r.get("status") != "ok":
            continue
        t = by_id.get(r.get("id"))
        if t is not None and t["cfg"] != r.get("cfg"):
            raise SweepFileError(
                f"result for trial {r['id']!r} has another model config than the trial file: the results "
                "folder belongs to another sweep; use a new --out folder")
        done.add(r["id"])
    return done


def load_results(path: str | os.PathLike, ok_only: bool = True) -> list[dict[str, Any]]:
    """Results of a run folder (its results.jsonl) or a results file; only ``ok`` ones by default.

    A trial finished more than once (e.g. two runs into one folder) counts once (the first).
    """
    path = Path(path)
    out, seen = [], set()
    for r in read_jsonl(path / RESULTS_NAME if path.is_dir() else path):
        if r.get("status") != "ok":
            if not ok_only:
                out.append(r)
        elif r.get("id") not in seen:
            seen.add(r.get("id"))
            out.append(r)
    return out
