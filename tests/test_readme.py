"""Every command the README and docs/ show is one the tools take.

A reader copies commands from the README; a renamed or removed flag there is a command that
fails. The commands in ```bash blocks must parse, whole, with the CLI's own parser; a command
quoted in the text (`minigan eval RUN --repeats 3`) often leaves out what it does not discuss,
so there every flag must be one its subcommand has. For `python examples/...` and `python
benchmarks/...` the script must exist and its --help must list every flag the command gives it.
(tests/test_install.py runs the README's commands against a non-editable install.)
"""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from minigan.cli import _parser

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# the placeholders the text uses, and a value of the right kind for each
PLACEHOLDERS = {"RUN": "runs/x", "SPEC": "examples/sweep_mnist.toml", "S": "1", "N": "2",
                "M": "doodles", "OUTDIR": "out"}
PREFIXES = ("minigan ", "python -m minigan ", "python examples/", "python benchmarks/")


def _commands(text: str) -> list[tuple[str, bool]]:
    """(command, whole) for each command in the text: whole for a ```bash block's lines (which
    must parse as they stand), not for one quoted in a sentence."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0]
            for part in line.split("&&"):
                part = " ".join(part.split())
                if part.startswith(PREFIXES):
                    found.append((part, True))
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    for span in re.findall(r"`([^`]+)`", prose):
        span = " ".join(span.split())
        if span.startswith(PREFIXES) and "..." not in span and "|" not in span:
            found.append((span, False))
    return found


def _argv(command: str) -> list[str]:
    return [PLACEHOLDERS.get(w, w) for w in shlex.split(command)]


def _flags(args: list[str]) -> list[str]:
    """The options among a command's arguments, without their `=value`."""
    return [w.split("=")[0] for w in args if w.startswith("-")]


@functools.cache
def _help(script: str) -> str:
    """A script's --help, run once per script."""
    res = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, f"{script} --help failed:\n{res.stderr}"
    return res.stdout


CASES = sorted({(doc.name, cmd, whole) for doc in DOCS
                for cmd, whole in _commands(doc.read_text(encoding="utf-8"))})
CLI = [c for c in CASES if not c[1].startswith("python ") or c[1].startswith("python -m ")]
SCRIPTS = [c for c in CASES if c not in CLI]


def test_the_docs_show_commands_of_every_kind():
    """The extraction itself: the README's blocks and text hold CLI and script commands."""
    readme = {cmd for doc, cmd, _ in CASES if doc == "README.md"}
    assert "minigan sample runs/cats -n 64 -o cats.png" in readme
    assert "python examples/doodles.py" in readme
    assert "minigan eval RUN --repeats 3" in readme
    assert len(CLI) >= 15 and len(SCRIPTS) >= 5


@pytest.mark.parametrize("doc,command,whole", CLI, ids=[f"{d}: {c}" for d, c, _ in CLI])
def test_cli_commands_parse(doc, command, whole, capsys):
    argv = _argv(command)
    argv = argv[3:] if argv[:3] == ["python", "-m", "minigan"] else argv[1:]
    parser = _parser()
    if whole:
        try:
            parser.parse_args(argv)
        except SystemExit as e:
            assert e.code == 0, f"{doc}: `{command}` does not parse:\n{capsys.readouterr().err}"
        return
    sub = next(a for a in parser._actions if a.dest == "command").choices[argv[0]]
    known = {o for a in sub._actions for o in a.option_strings}
    unknown = [f for f in _flags(argv[1:]) if f not in known]
    assert not unknown, f"{doc}: `{command}`: `minigan {argv[0]}` has no {unknown}"


@pytest.mark.parametrize("doc,command,whole", SCRIPTS, ids=[f"{d}: {c}" for d, c, _ in SCRIPTS])
def test_script_commands_name_existing_scripts_and_flags(doc, command, whole):
    argv = _argv(command)
    script = argv[1]
    assert (REPO / script).is_file(), f"{doc}: `{command}`: there is no {script}"
    listed = set(re.findall(r"--?[a-zA-Z][a-z0-9-]*", _help(script)))
    unknown = [f for f in _flags(argv[2:]) if f not in listed]
    assert not unknown, f"{doc}: `{command}`: {script} --help lists no {unknown}"
