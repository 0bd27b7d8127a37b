"""``gradtui compare`` matches layers by their place in the stack, not by name (issue 21): a
residual form's projection shifts its names, and a layer one run lacks shows as missing."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from gradtui.cli import app
from gradtui.compare import OUTPUT, places
from gradtui.runlog import read_run

RESIDUAL = """
name = "res"
[data]
dataset = "digits"
[[layers]]
type = "dense"
units = 32
activation = "relu"
residual = true
[[layers]]
type = "dense"
units = 10
activation = "softmax"
"""


def write(path: Path, grads: dict[str, float], preset: str | None = None) -> Path:
    path.mkdir(parents=True)
    layers = {n: {"grad_norm": g, "update_ratio": 1e-3, "weight_norm": 1.0} for n, g in grads.items()}
    lines = [json.dumps({"step": s, "loss": 2.0, "layers": layers}) for s in range(5)]
    (path / "stats.jsonl").write_text("\n".join(lines) + "\n")
    (path / "summary.json").write_text(
        json.dumps({"name": path.name, "status": "completed", "diagnoses": []})
    )
    if preset:
        (path / "preset.toml").write_text(preset)
    return path


def test_a_projection_is_a_place_of_its_own_and_the_output_lines_up(tmp_path: Path) -> None:
    plain = write(tmp_path / "plain", {"dense": 0.01, "dense_1": 0.5})
    res = write(tmp_path / "res", {"dense": 0.2, "dense_1": 0.3, "dense_2": 0.6}, RESIDUAL)
    assert places(read_run(res)) == {"dense": ("dense", 0), "dense_1": ("projection", 0), "dense_2": OUTPUT}
    result = CliRunner().invoke(app, ["compare", str(plain), str(res)], terminal_width=80)
    assert result.exit_code == 0, result.output
    rows = {
        line.split()[0] + (" proj" if "projection" in line else ""): line
        for line in result.output.splitlines()[6:]
    }
    assert "20" in rows["dense"]  # 0.2 / 0.01: the hidden layers side by side
    proj = rows["dense_1 proj"]
    assert proj.split()[2:4] == ["missing", "0.3"]  # the plain stack has no projection
    out = next(line for key, line in rows.items() if "B:dense_2" in line)
    assert out.split()[:4] == ["dense_1", "B:dense_2", "0.5", "0.6"]  # softmax beside softmax
    assert "nan" not in result.output
    assert all(len(line) <= 80 for line in result.output.splitlines())
