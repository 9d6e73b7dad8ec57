"""The README's configuration reference and layout tree match the code.

Configuration reference (the tables under "## Configuration reference"): every row whose first cell
is a code span names a key. The keys are exactly the leaf keys of FreshvecConfig: the models are
walked recursively, descending into a field only when its type is a config model itself; any other
field (a dict such as kafka.consumer, kafka.producer, embedding.label_selector or regions, a list, an
optional model such as a region's weaviate) is one key. Rows named `regions.<name>.<key>` are the
keys of one region (RegionConfig), walked the same way.

Defaults are compared in one normalised form: the README's default cell holds the default as YAML
in a code span (or the word "required"); the test loads it with yaml.safe_load and compares
json.dumps(..., sort_keys=True) of that with json.dumps(..., sort_keys=True) of the model's default
in JSON form (pydantic_core.to_jsonable_python). So `2.0` and `2` differ, `{a: 1, b: 2}` equals
`{b: 2, a: 1}`, and `null` is None. The root's defaults are read from a validated FreshvecConfig()
(what a program gets from an empty config file); a region's from RegionConfig's field defaults
(a region cannot be validated without its required bootstrap_servers).

Layout (the first ```text block under "## Layout"): a tree of folders, one `name/` per line, four
characters of tree drawing per level, each followed by a one-line description. It names exactly the
project's folders: every top-level folder; below them, every folder that is a Python package (holds
__init__.py) and every folder under deploy/ (deploy files); and bench/results, listed on purpose
because the README points at the results there. Skipped everywhere: hidden folders (.venv, .run,
.git, bench/.venv-infinity, ...), __pycache__, *.egg-info, build, dist.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pydantic
import yaml
from pydantic_core import to_jsonable_python

from freshvec.core.config import FreshvecConfig, RegionConfig

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
REQUIRED = "required"
REGION_PREFIX = "regions.<name>."

# --- helpers ---------------------------------------------------------------------------------------


def _section(markdown: str, heading: str) -> str:
    """The text under a level-2 heading, up to the next level-2 heading."""
    match = re.search(rf"^## {re.escape(heading)}[ \t]*\n(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    assert match, f"README.md has no '## {heading}' section"
    return match.group(1)


def _cells(row: str) -> list[str]:
    """A markdown table row's cells; `\\|` is a pipe inside a cell."""
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


def _normalised(value: Any) -> str:
    return json.dumps(to_jsonable_python(value), sort_keys=True)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel)


def _leaf_fields(model: type[pydantic.BaseModel], prefix: str = "") -> dict[str, tuple[tuple[str, ...], Any]]:
    """Dotted leaf key -> (attribute path from `model`, field info)."""
    leaves: dict[str, tuple[tuple[str, ...], Any]] = {}
    for name, field in model.model_fields.items():
        if _is_model(field.annotation):
            for key, (path, info) in _leaf_fields(field.annotation, f"{prefix}{name}.").items():
                leaves[key] = ((name, *path), info)
        else:
            leaves[f"{prefix}{name}"] = ((name,), field)
    return leaves


def _root_defaults() -> dict[str, str]:
    config = FreshvecConfig()
    defaults = {}
    for key, (path, _field) in _leaf_fields(FreshvecConfig).items():
        value: Any = config
        for attr in path:
            value = getattr(value, attr)
        defaults[key] = _normalised(value)
    return defaults


def _region_defaults() -> dict[str, str]:
    defaults = {}
    for key, (_path, field) in _leaf_fields(RegionConfig, REGION_PREFIX).items():
        defaults[key] = REQUIRED if field.is_required() else _normalised(field.get_default(call_default_factory=True))
    return defaults


def _readme_reference(markdown: str) -> dict[str, str]:
    """Key -> normalised default, from every key row of the configuration reference's tables."""
    found: dict[str, str] = {}
    for line in _section(markdown, "Configuration reference").splitlines():
        if not line.lstrip().startswith("|"):
            continue
        cells = _cells(line)
        key = re.fullmatch(r"`([^`]+)`", cells[0])
        if not key:  # header or separator row
            continue
        key = key.group(1)
        assert key not in found, f"README: configuration key {key} is listed twice"
        assert len(cells) >= 3, f"README: the row of {key} has no default column"
        default = re.search(r"`([^`]*)`", cells[2])
        if default:
            found[key] = _normalised(yaml.safe_load(default.group(1)))
        else:
            assert cells[2] == REQUIRED, f"README: the default of {key} is neither a `code span` nor 'required'"
            found[key] = REQUIRED
    return found


SKIP_FOLDERS = {"__pycache__", "build", "dist"}
LISTED_DATA_FOLDERS = {"bench/results"}  # not a package, listed on purpose: the README points at it


def _skipped(name: str) -> bool:
    return name.startswith(".") or name in SKIP_FOLDERS or name.endswith(".egg-info")


def _project_folders(root: Path) -> set[str]:
    folders = set(LISTED_DATA_FOLDERS)
    for top in root.iterdir():
        if not top.is_dir() or _skipped(top.name):
            continue
        folders.add(top.name)
        for here, subdirs, files in os.walk(top):
            subdirs[:] = [d for d in subdirs if not _skipped(d)]
            rel = Path(here).relative_to(root)
            if rel == Path(top.name):
                continue
            if "__init__.py" in files or rel.parts[0] == "deploy":
                folders.add(rel.as_posix())
    return folders


_TREE_LINE = re.compile(r"^(?P<prefix>(?:[│ ] {3}|[├└]── )*)(?P<name>[^\s/]+)/(?:\s+(?P<about>\S.*))?$")


def _readme_tree(markdown: str) -> dict[str, str]:
    """Folder path -> its description, from the layout section's tree."""
    block = re.search(r"```text\n(.*?)```", _section(markdown, "Layout"), re.S)
    assert block, "README's Layout section has no ```text tree"
    folders: dict[str, str] = {}
    stack: list[str] = []
    for line in block.group(1).splitlines():
        if not line.strip() or line.strip() == ".":
            continue
        match = _TREE_LINE.match(line)
        assert match, f"README layout: cannot read the tree line {line!r}"
        depth = len(match["prefix"]) // 4
        assert 1 <= depth <= len(stack) + 1, f"README layout: {line!r} is indented below no folder"
        stack[depth - 1:] = [match["name"]]
        path = "/".join(stack)
        assert path not in folders, f"README layout: {path}/ is listed twice"
        folders[path] = match["about"] or ""
    return folders


# --- the tests ---------------------------------------------------------------------------------------


def test_configuration_reference_names_every_key_with_its_default():
    expected = {**_root_defaults(), **_region_defaults()}
    documented = _readme_reference(README)

    missing = sorted(set(expected) - set(documented))
    unknown = sorted(set(documented) - set(expected))
    assert not missing, f"README's configuration reference lacks: {', '.join(missing)}"
    assert not unknown, f"README's configuration reference names keys the config does not have: {', '.join(unknown)}"
    wrong = [f"{key}: README {documented[key]}, model {expected[key]}"
             for key in sorted(expected) if documented[key] != expected[key]]
    assert not wrong, "README's configuration reference has wrong defaults:\n" + "\n".join(wrong)


def test_layout_tree_names_exactly_the_project_folders():
    listed = _readme_tree(README)
    actual = _project_folders(ROOT)

    missing = sorted(actual - set(listed))
    extra = sorted(set(listed) - actual)
    assert not missing, f"README's layout lacks: {', '.join(missing)}"
    assert not extra, f"README's layout names folders that are not part of the project: {', '.join(extra)}"
    for path, about in listed.items():
        assert (ROOT / path).is_dir(), f"README's layout names {path}/, which does not exist"
        assert about, f"README's layout gives {path}/ no description"

