"""docs/FORMATS.md is the contract scripts rely on (issue 21): it names every command, layer
type, preset key and diagnosis kind the code accepts, and every file it points to exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gradtui import preset
from gradtui.cli import app
from gradtui.diagnosis import KINDS

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "FORMATS.md").read_text(encoding="utf-8")


def command_names() -> list[str]:
    return [c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands]


@pytest.mark.parametrize("name", command_names())
def test_every_command_is_documented(name: str) -> None:
    assert f"`gradtui {name}" in DOC, f"FORMATS.md does not document `gradtui {name}`"


@pytest.mark.parametrize("kind", KINDS)
def test_every_diagnosis_kind_is_documented(kind: str) -> None:
    assert re.search(rf"^\| `{kind}` \|", DOC, re.M), f"FORMATS.md section 4 lacks `{kind}`"


@pytest.mark.parametrize("kind", preset.LAYER_TYPES)
def test_every_layer_type_and_its_keys_are_documented(kind: str) -> None:
    rows = [line for line in DOC.splitlines() if line.startswith("| ") and f"`{kind}`" in line.split("|")[1]]
    assert rows, f"FORMATS.md has no row for layer type `{kind}`"
    keys = set(preset.LAYER_KEYS[kind]) - {"type", "repeat"}
    missing = {k for k in keys if f"`{k}`" not in rows[0]}
    assert not missing, f"`{kind}` row lacks {sorted(missing)}"


@pytest.mark.parametrize(
    "key",
    [*preset.TRAIN_KEYS, *preset.DATA_KEYS, *preset.MONITOR_KEYS],
)
def test_every_section_key_is_documented(key: str) -> None:
    assert re.search(rf"(^#? ?{key} = |`{key}`)", DOC, re.M), f"FORMATS.md never names `{key}`"


def test_every_linked_file_exists() -> None:
    links = re.findall(r"\]\(([^)#]+)\)", DOC)
    assert links  # it links the changelog at least
    for link in links:
        if "://" not in link:
            assert (ROOT / "docs" / link).resolve().exists(), link
    assert "SPEC" not in DOC  # the contract is this page; the SPEC it named is not shipped
