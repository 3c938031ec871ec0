"""The `regnet-zoo` command tree: every command listed and with a working --help, Lightning's commands
passed through unchanged, cheap start-up, missing extras and closed pipes handled."""

import subprocess
import sys

import pytest

from regnet_zoo.cli import main

# the commands the README and docs/ document
DOCUMENTED = {"list", "info", "scale", "download", "convert", "push", "eval", "fit", "validate", "test", "predict",
              "sweep", "export", "benchmark"}
SWEEP = {"spaces", "sample", "train", "analyze", "fit", "scaling"}
LIGHTNING = ("fit", "validate", "test", "predict")


def listed_commands(help_text: str, title: str) -> list[str]:
    """The command names argparse lists under ``title:`` (indented 4 spaces, then the name)."""
    lines = help_text.split(f"\n{title}:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    return [ln.split()[0] for ln in lines if ln.startswith("    ") and not ln.startswith("     ")]


def help_of(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0, argv
    return capsys.readouterr().out


def test_help_lists_every_command(capsys):
    commands = listed_commands(help_of(capsys), "commands")
    assert DOCUMENTED <= set(commands) and len(commands) == len(set(commands))
    assert set(listed_commands(help_of(capsys, "sweep"), "subcommands")) == SWEEP


def test_every_subcommand_help_exits_0(capsys):
    commands = listed_commands(help_of(capsys), "commands")
    for command in commands:
        text = help_of(capsys, command)
        assert "usage:" in text, command
    for sub in SWEEP:
        assert f"sweep {sub}" in help_of(capsys, "sweep", sub)
    # Lightning's own help, with its --print_config
    assert "--print_config" in help_of(capsys, "fit")


@pytest.mark.parametrize("argv", [
    ["regnetx_200mf", "--data", "val"], ["--data", "val", "regnetx_200mf"],  # what `eval` takes: still Lightning's
    ["--config", "recipes/demo_digits.yaml"], ["--config", "c.yaml", "--ckpt_path", "b.ckpt"], ["--data.root", "x"],
    ["--help"], ["--print_config"], ["-c", "a.yaml", "--", "x"],
])
@pytest.mark.parametrize("command", LIGHTNING)
def test_lightning_commands_pass_through_unchanged(monkeypatch, command, argv):
    import regnet_zoo.lightning.cli

    calls = []
    monkeypatch.setattr(regnet_zoo.lightning.cli, "run", lambda c, a: calls.append((c, list(a))) or 7)
    assert main([command, *argv]) == 7
    assert calls == [(command, argv)]


def test_unknown_commands_are_argparse_errors(capsys):
    for argv in (["lst"], ["evl", "regnetx_200mf"], ["sweep", "smaple"], ["list", "--frobnicate"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2, argv
    assert "list" in capsys.readouterr().err.split("usage:")[1].split("\n", 1)[1]  # the closest name


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_building_the_tree_imports_no_heavy_package():
    r = run_python("import sys; from regnet_zoo.cli import build_parser; build_parser(); "
                   "print(sorted(m for m in ('torch', 'timm', 'lightning', 'torchvision', 'matplotlib') "
                   "if m in sys.modules))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.mark.parametrize("argv,extra", [(["fit", "--help"], "train"), (["sweep", "analyze", "x"], "plots")])
def test_missing_extra_names_the_install_command(argv, extra):
    blocked = "lightning" if extra == "train" else "matplotlib"
    r = run_python(f"import sys; sys.modules[{blocked!r}] = None; from regnet_zoo.cli import main; "
                   f"sys.exit(main({argv!r}))")
    assert r.returncode == 3, r.stderr
    assert f"pip install 'regnet-zoo[{extra}]'" in r.stderr and "Traceback" not in r.stderr


def test_closed_pipe_exits_quietly():
    # the reader is gone before the first write: every write fails with EPIPE
    proc = subprocess.Popen([sys.executable, "-m", "regnet_zoo", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141 and err == b""
