"""Commands on recorded run directories: compare, report, export (CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from gradtui.cli import app

runner = CliRunner()
DATA = Path(__file__).parent / "tui" / "data"


def write_run(path: Path, grads: list[float], *, steps: int = 12, summary: bool = True, kinds=()) -> Path:
    """A run directory written by hand: layers ``l0``.. with the given gradient norms."""
    path.mkdir(parents=True)
    lines = []
    for s in range(steps):
        layers = {
            f"l{i}": {
                "grad_norm": g,
                "grad_max": g,
                "weight_norm": 1.0,
                "update_ratio": g / 100,
                "nonfinite": 0,
                "saturation": 0.5 if i == 0 else 0.0,
            }
            for i, g in enumerate(grads)
        }
        lines.append(json.dumps({"step": s, "epoch": 0, "loss": 2.0 - s / 20, "layers": layers}))
    (path / "stats.jsonl").write_text("\n".join(lines) + "\n")
    if summary:
        diagnoses = [
            {
                "kind": k,
                "layer": "l0",
                "step": 3,
                "severity": "error",
                "message": f"{k} at l0",
                "advice": "use he_normal with relu",
            }
            for k in kinds
        ]
        (path / "summary.json").write_text(
            json.dumps(
                {
                    "name": path.name,
                    "status": "completed",
                    "steps": steps,
                    "epochs": 1,
                    "final": {"loss": 1.5, "accuracy": 0.5},
                    "diagnoses": diagnoses,
                }
            )
        )
    return path


def test_compare_prints_each_layer_with_the_ratio_in_80_columns(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", [1e-8, 1e-2], kinds=["vanishing"])
    b = write_run(tmp_path / "b", [1e-3, 1e-2])
    result = runner.invoke(app, ["compare", str(a), str(b)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    l0 = next(line for line in lines if line.split()[:1] == ["l0"])
    assert l0.split()[1:4] == ["1e-08", "0.001", "1.0e+05"]  # A, B, B/A
    assert "A:vanish" in l0
    l1 = next(line for line in lines if line.split()[:1] == ["l1"])
    assert l1.split()[3] == "1" and l1.rstrip().endswith("-")


def test_compare_three_runs_fits_80_columns() -> None:
    dirs = [str(DATA / "run-vanishing"), str(DATA / "run-fixed"), str(DATA / "run-vanishing")]
    result = runner.invoke(app, ["compare", *dirs])
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
    assert "C/A" in result.output and "dense_12" in result.output


def test_compare_reads_a_killed_run_and_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", [1e-8, 1e-2], summary=False)
    with (a / "stats.jsonl").open("a") as f:
        f.write('{"step": 12, "ep')
    b = write_run(tmp_path / "b", [1e-3, 1e-2])
    result = runner.invoke(app, ["compare", str(a), str(b)])
    assert result.exit_code == 0 and "[incomplete]" in result.output
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["compare", str(a), str(tmp_path / "empty")])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "not a run directory" in result.stderr
    result = runner.invoke(app, ["compare", str(a)])
    assert result.exit_code == 2 and "at least two" in result.stderr


def test_report_writes_a_self_contained_html_page_by_default(tmp_path: Path) -> None:
    run = write_run(tmp_path / "a", [1e-8, 1e-3, 1e-1], kinds=["vanishing"])
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    page = (run / "report.html").read_text()
    assert "data:image/png;base64," in page and "vanishing" in page and "use he_normal with relu" in page
    assert "http://" not in page and "https://" not in page  # opens offline
    import base64

    data = page.split("data:image/png;base64,")[1].split('"')[0]
    assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_png_of_a_killed_run_and_bad_suffix(tmp_path: Path) -> None:
    run = write_run(tmp_path / "a", [1e-8, 1e-3], summary=False)
    with (run / "stats.jsonl").open("a") as f:
        f.write('{"step": 99, "la')
    out = tmp_path / "fig.png"
    result = runner.invoke(app, ["report", str(run), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x89PNG"
    result = runner.invoke(app, ["report", str(run), "-o", str(tmp_path / "fig.pdf")])
    assert result.exit_code == 2 and "give a .html or .png file" in result.stderr
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["report", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "not a run directory" in result.stderr


def test_open_follow_waits_for_a_run_folder_that_does_not_exist_yet(tmp_path: Path) -> None:
    """Issue 21: ``open --follow`` on a run about to be written waits for it, then follows it."""
    import threading
    import time

    run = tmp_path / "soon"

    def training_starts() -> None:
        time.sleep(0.6)
        write_run(run, [1e-8, 1e-4, 1.0])

    threading.Thread(target=training_starts, daemon=True).start()
    result = runner.invoke(app, ["open", "--follow", "--headless", str(run)])
    assert result.exit_code == 0, result.output
    assert "waiting for" in result.output and str(run) in result.output


def test_an_in_process_open_with_tensorflow_loaded_does_not_end_the_caller(tmp_path: Path) -> None:
    """The TUI commands end their process at once after TensorFlow was imported (its teardown
    takes seconds), but only as the gradtui program: a caller's process (a test, a script using
    CliRunner) goes on. It ended a CI test session with status 0, most tests unrun."""
    import subprocess
    import sys

    run = write_run(tmp_path / "run", [1e-8, 1e-4, 1.0])
    code = (
        "import tensorflow\n"
        "from typer.testing import CliRunner\n"
        "from gradtui.cli import app\n"
        f"r = CliRunner().invoke(app, ['open', '--headless', {str(run)!r}])\n"
        "print('still here', r.exit_code)\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = {**__import__("os").environ, "PYTHONPATH": str(root)}
    env.pop("GRADTUI_STANDALONE", None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert "still here 0" in done.stdout, (done.returncode, done.stdout, done.stderr[-2000:])
