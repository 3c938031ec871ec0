"""`regnet-zoo list` and `regnet-zoo info` through the installed console script."""

import json
import shutil
import subprocess
import sys

import pytest


def run(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("regnet-zoo")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "regnet_zoo", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_list_table_and_json():
    r = run("list", "regnetx*")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["name", "flops", "params", "acts"]
    assert lines[2].split() == ["regnetx_200mf", "199.0M", "2.7M", "2.2M"]
    r = run("list", "--paper", "--json")
    data = json.loads(r.stdout)
    assert len(data) == 24 and data["regnetx_200mf"] == {"flops": 199040872, "params": 2684792, "acts": 2164056}


def test_info():
    r = run("info", "RegNetX-8000")
    assert r.returncode == 0, r.stderr
    assert "d=23 w0=80 wa=49.56 wm=2.88 g=120" in r.stdout
    rows = [ln.split() for ln in r.stdout.splitlines() if ln.strip().startswith("s") and ln.split()[0][1:].isdigit()]
    assert [row[:5] for row in rows] == [["s1", "2", "80", "80", "1"], ["s2", "5", "240", "120", "2"],
                                         ["s3", "15", "720", "120", "6"], ["s4", "1", "1920", "120", "16"]]
    assert "flops 7,995,133,416" in r.stdout
    info = json.loads(run("info", "regnety_200mf", "--json").stdout)
    assert info["stages"][0]["se_width_first_block"] == 8  # 0.25 x the stem's 32 channels


@pytest.mark.parametrize("args,code,needle", [
    (("info", "regnetx_8gff"), 2, "closest: regnetx_8.0gf"),
    (("list", "--resolution", "0"), 2, "--resolution must be a positive"),
    (("info", "regnetx_200mf", "--resolution", "-5"), 2, "--resolution must be a positive"),
    (("lst",), 2, "did you mean list"),
    (("list", "zzz*"), 1, "no model matches"),
])
def test_errors(args, code, needle):
    r = run(*args)
    assert r.returncode == code and needle in r.stderr


def test_help_lists_commands():
    r = run("--help")
    assert r.returncode == 0 and "fit" in r.stdout and "benchmark" in r.stdout


def test_missing_extra_names_the_install_command():
    code = ("import sys; sys.modules['lightning'] = None; from regnet_zoo.cli import main; "
            "sys.exit(main(['fit', '--help']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3 and "pip install 'regnet-zoo[train]'" in r.stderr


@pytest.mark.parametrize("argv,evaluate", [
    (["regnetx_200mf", "--data", "val"], True), (["--data", "val", "regnetx_200mf"], True),
    (["--config", "recipes/demo_digits.yaml"], False), (["--config", "c.yaml", "--ckpt_path", "b.ckpt"], False),
    (["--data.root", "x"], False),
])
def test_validate_routing(argv, evaluate):
    from regnet_zoo.cli import _is_model_eval

    assert _is_model_eval(argv) is evaluate
