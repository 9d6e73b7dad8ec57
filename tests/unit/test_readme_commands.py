"""Every command the README tells a user to type is one the project accepts.

Reads the shell code blocks of README.md (and the Makefile's recipes): each `freshvec ...` line must
parse with the real CLI parser, each `make T` must name a target of the Makefile, each
`python -m M` must name an importable module. When the README changes, these follow it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
from pathlib import Path

import pytest

from freshvec.cluster.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _joined(text: str) -> list[str]:
    """Lines, with backslash continuations joined."""
    return text.replace("\\\n", " ").splitlines()


def _shell_lines(markdown: str) -> list[str]:
    lines = []
    for block in re.findall(r"```(?:bash|sh|shell|console)\n(.*?)```", markdown, re.S):
        for line in _joined(block):
            line = line.strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def _words(line: str) -> list[str]:
    words = shlex.split(line, comments=True)
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):  # VAR=value prefixes
        words.pop(0)
    return words


README_LINES = _shell_lines((ROOT / "README.md").read_text())
MAKEFILE = (ROOT / "Makefile").read_text()
MAKE_TARGETS = set(re.findall(r"^([a-zA-Z][\w-]*):", MAKEFILE, re.M))
RECIPE_LINES = [line.strip().lstrip("@") for line in _joined(MAKEFILE) if line.startswith("\t")]


def _freshvec_lines() -> list[str]:
    return [line for line in README_LINES + RECIPE_LINES
            if _words(line) and Path(_words(line)[0]).name == "freshvec"]


def test_readme_has_the_two_commands_and_freshvec_lines():
    assert "make run" in README_LINES[0] or any(_words(line)[:2] == ["make", "run"] for line in README_LINES)
    assert any(_words(line)[:2] == ["make", "test"] for line in README_LINES)
    assert len(_freshvec_lines()) >= 5


@pytest.mark.parametrize("line", _freshvec_lines())
def test_freshvec_line_parses(line: str):
    words = _words(line)
    try:
        args = build_parser().parse_args(words[1:])
    except SystemExit as exc:
        pytest.fail(f"`{line}` is rejected by the CLI (exit {exc.code})")
    if args.config and not Path(args.config).is_absolute():
        from freshvec.deploy.sim import layout

        # `make sim-up` writes the simulated regions' configs; the others are in the repository.
        made_by_sim_up = {os.path.relpath(layout.config_file(r), ROOT) for r in layout.REGIONS}
        assert (ROOT / args.config).is_file() or args.config in made_by_sim_up, \
            f"`{line}` names a config that does not exist"


@pytest.mark.parametrize("line", [line for line in README_LINES if _words(line)[:1] == ["make"]])
def test_make_target_exists(line: str):
    targets = [w for w in _words(line)[1:] if not w.startswith("-") and "=" not in w]
    assert targets, line
    for target in targets:
        assert target in MAKE_TARGETS, f"`{line}`: the Makefile has no target {target!r}"


@pytest.mark.parametrize("line", [line for line in README_LINES + RECIPE_LINES if " -m " in line])
def test_python_module_exists(line: str):
    words = _words(line)
    module = words[words.index("-m") + 1]
    if module in ("pytest", "pip"):
        return
    assert importlib.util.find_spec(module) is not None, f"`{line}`: no module {module!r}"


def test_config_option_before_and_after_the_subcommand():
    parser = build_parser()
    assert parser.parse_args(["-c", "a.yaml", "run"]).config == "a.yaml"
    assert parser.parse_args(["run", "--config", "b.yaml"]).config == "b.yaml"
    assert parser.parse_args(["status", "-c", "c.yaml", "--json"]).config == "c.yaml"
    assert parser.parse_args(["-c", "a.yaml", "demo", "-c", "d.yaml"]).config == "d.yaml"  # the later wins
    assert parser.parse_args(["produce", "--demo", "5"]).config is None  # then $FRESHVEC_CONFIG or the default


def test_a_bad_line_is_caught():
    """The check itself can fail: an option the CLI lacks is reported."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--no-such-option"])
