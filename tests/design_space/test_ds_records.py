"""Trial and results files: durable appends, torn last lines, corruption and mismatch errors."""

import json

import pytest

from regnet_zoo.design_space import SweepFileError, load_results, read_jsonl, read_trials, write_jsonl_atomic
from regnet_zoo.design_space.records import append_jsonl, drop_torn_tail, finished_ids

from .conftest import tiny_trials


def test_trials_round_trip(tmp_path):
    trials = tiny_trials(3)
    assert [t["id"] for t in trials] == ["tiny-0000", "tiny-0001", "tiny-0002"]
    path = write_jsonl_atomic(tmp_path / "t.jsonl", trials)
    assert read_trials(path) == trials
    assert [p.name for p in tmp_path.iterdir()] == ["t.jsonl"]  # no temporary file left
    write_jsonl_atomic(path, trials[:1])  # replaced as a whole
    assert read_trials(path) == trials[:1]


def test_torn_last_line_is_skipped_and_cut_before_appending(tmp_path):
    path = tmp_path / "results.jsonl"
    append_jsonl(path, {"id": "a", "status": "ok"})
    with open(path, "ab") as f:  # what a kill -9 in the middle of a write leaves
        f.write(b'{"id": "b", "stat')
    assert read_jsonl(path) == [{"id": "a", "status": "ok"}]
    append_jsonl(path, {"id": "c", "status": "ok"})
    assert [r["id"] for r in read_jsonl(path)] == ["a", "c"]
    assert path.read_text().endswith("\n") and drop_torn_tail(path) == 0


def test_torn_tail_without_any_newline(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"id": "x"')
    assert read_jsonl(path) == [] and drop_torn_tail(path) == 10 and path.read_bytes() == b""


def test_corrupt_middle_line_is_an_error(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(SweepFileError, match=r"r.jsonl:2: not a JSON object"):
        read_jsonl(path)
    with pytest.raises(SweepFileError, match="no such file"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_trial_file_checks(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"id": "x"}) + "\n")
    with pytest.raises(SweepFileError, match=r"lacks \['space', 'cfg'"):
        read_trials(path)
    t = tiny_trials(1)[0]
    write_jsonl_atomic(path, [t, t])
    with pytest.raises(SweepFileError, match="appears twice"):
        read_trials(path)


def test_finished_ids_and_mismatched_results(tmp_path):
    trials = tiny_trials(2)
    results = [{**trials[0], "status": "ok"}, {**trials[1], "status": "failed"}]
    assert finished_ids(results, trials) == {"tiny-0000"}
    other = tiny_trials(2, seed=5)
    with pytest.raises(SweepFileError, match="belongs to another sweep"):
        finished_ids([{**other[0], "status": "ok"}], trials)


def test_load_results_keeps_first_ok_per_trial(tmp_path):
    for rec in ({"id": "a", "status": "failed"}, {"id": "a", "status": "ok", "error": 1.0},
                {"id": "a", "status": "ok", "error": 2.0}, {"id": "b", "status": "ok", "error": 3.0}):
        append_jsonl(tmp_path / "results.jsonl", rec)
    assert [r["error"] for r in load_results(tmp_path)] == [1.0, 3.0]
    assert len(load_results(tmp_path / "results.jsonl", ok_only=False)) == 3
