"""The README's code works as printed: the Python API block runs, every CLI line names a real command whose
options exist, and every file it refers to is in the repository."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _cli_lines() -> list[list[str]]:
    lines = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            for part in re.split(r"\s*&&\s*", line):
                if part.startswith("unlearnlab "):
                    lines.append(shlex.split(part.split(" | ")[0]))
    return lines


def test_python_api_block_runs(tmp_path):
    (code,) = _blocks("python")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one core, as each test worker (the code runs as printed)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Avg.Gap" in r.stdout and (tmp_path / "report" / "report.html").is_file()


@pytest.mark.parametrize("argv", _cli_lines(), ids=lambda a: " ".join(a[:3]))
def test_cli_line_names_real_commands_and_options(argv):
    from typer.main import get_command

    from unlearnlab.cli import app

    cmd = get_command(app)
    args = argv[1:]
    while args and hasattr(cmd, "commands") and args[0] in cmd.commands:
        cmd = cmd.commands[args.pop(0)]
    assert not hasattr(cmd, "commands"), f"{' '.join(argv)}: not a command"
    known = {o for p in cmd.params for o in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}
    for a in args:
        if a.startswith("--"):
            assert a.split("=")[0] in known, f"{' '.join(argv)}: unknown option {a}"
    for a in args:
        if a.startswith("examples/"):
            assert (ROOT / a).is_file(), f"{a} is missing"
