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


def test_info_block_activation_head():
    # pycls configs/fast_scaling/RegNetZ-500MF: BLOCK_TYPE res_bottleneck_linear_block, ACTIVATION silu, HEAD_W 1024
    z = run("info", "regnetz_500mf").stdout
    assert "block: z" in z and "activation: silu" in z and "1x1 conv to 1024" in z
    x = run("info", "regnetx_200mf").stdout
    assert "block: x" in x and "activation: relu" in x and "head: pool + linear" in x


@pytest.mark.parametrize("args,code,needle", [
    (("info", "regnetx_8gff"), 2, "regnetx_8.0gf"),  # the closest names
    (("list", "--resolution", "0"), 2, "--resolution"),
    (("info", "regnetx_200mf", "--resolution", "-5"), 2, "--resolution"),
    (("lst",), 2, "list"),
    (("list", "zzz*"), 1, "zzz*"),
])
def test_errors(args, code, needle):
    r = run(*args)
    assert r.returncode == code and needle in r.stderr and "Traceback" not in r.stderr
