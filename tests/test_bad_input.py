"""Bad input of every kind ends in exit 2 and one line on stderr: the file, the key, what is allowed.

Each preset in ``tests/data/presets/`` (and each data file in ``tests/data/files/``, through the
``data-*.toml`` preset that points at it) goes through both ``gradtui check`` and ``gradtui run``.
A few go through a real subprocess too, to prove no traceback reaches the real stderr and that
TensorFlow was never imported to refuse them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gradtui.cli import app

DATA = Path(__file__).resolve().parent / "data"
PRESETS = DATA / "presets"
FILES = DATA / "files"
ROOT = Path(__file__).resolve().parent.parent

#: preset file -> (file the message must name, key it must name or None, what-is-allowed fragment)
CASES: dict[str, tuple[str, str | None, str]] = {
    # files that are not TOML at all
    "empty.toml": ("empty.toml", None, "needs at least [[layers]]"),
    "whitespace-only.toml": ("whitespace-only.toml", None, "needs at least [[layers]]"),
    "binary.toml": ("binary.toml", None, "not a TOML text file"),
    "non-utf8.toml": ("non-utf8.toml", None, "not UTF-8"),
    "syntax-error.toml": ("syntax-error.toml", "line 4, column 12", "key = value"),
    # unknown and misspelt keys and names, with did-you-mean
    "unknown-top-key.toml": ("unknown-top-key.toml", "colour", "allowed: name, description"),
    "misspelt-top-table.toml": ("misspelt-top-table.toml", "trian", "did you mean 'train'"),
    "misspelt-layer-key.toml": ("misspelt-layer-key.toml", "layers[0].unitz", "did you mean 'units'"),
    "misspelt-train-key.toml": (
        "misspelt-train-key.toml",
        "train.learnig_rate",
        "did you mean 'learning_rate'",
    ),
    "misspelt-activation.toml": (
        "misspelt-activation.toml",
        "layers[0].activation",
        "did you mean 'sigmoid'",
    ),
    "misspelt-initializer.toml": (
        "misspelt-initializer.toml",
        "layers[0].initializer",
        "did you mean 'he_normal'",
    ),
    "misspelt-optimizer.toml": ("misspelt-optimizer.toml", "train.optimizer", "did you mean 'adam'"),
    "misspelt-dataset.toml": ("misspelt-dataset.toml", "data.dataset", "did you mean 'digits'"),
    "unknown-dataset-suffix.toml": ("unknown-dataset-suffix.toml", "data.dataset", "a path to .npz/.csv"),
    "unknown-layer-type.toml": ("unknown-layer-type.toml", "layers[0].type", "one of dense, conv1d, conv2d"),
    "monitor-unknown-threshold.toml": (
        "monitor-unknown-threshold.toml",
        "monitor.vanishing",
        "vanishing_ratio",
    ),
    "key-not-for-layer-type.toml": (
        "key-not-for-layer-type.toml",
        "layers[0].units",
        "allowed: type, repeat",
    ),
    "init-unknown-param.toml": (
        "init-unknown-param.toml",
        "layers[0].initializer.stdev",
        "did you mean 'stddev'",
    ),
    "activation-unknown-param.toml": (
        "activation-unknown-param.toml",
        "layers[0].activation.negative_slope",
        "allowed: none",
    ),
    # wrong types
    "units-string.toml": ("units-string.toml", "layers[0].units", "must be an integer"),
    "units-bool.toml": ("units-bool.toml", "layers[0].units", "must be an integer"),
    # shapes a layer cannot take, and a loss that does not fit the task (issue 12)
    "recurrent-on-flat-data.toml": ("recurrent-on-flat-data.toml", "layers[1] (lstm)", "needs a sequence"),
    "pool-shrinks-below-one.toml": ("pool-shrinks-below-one.toml", "layers[1] (max_pool)", "below 1"),
    "loss-not-for-task.toml": ("loss-not-for-task.toml", "train.loss", "one of mse, mae"),
    "units-float.toml": ("units-float.toml", "layers[0].units", "must be an integer"),
    "learning-rate-string.toml": ("learning-rate-string.toml", "train.learning_rate", "must be a number"),
    "epochs-float.toml": ("epochs-float.toml", "train.epochs", "must be an integer"),
    "train-not-table.toml": ("train-not-table.toml", "train", "must be a table"),
    "activation-number.toml": ("activation-number.toml", "layers[0].activation", "a name or a table"),
    "init-table-no-name.toml": ("init-table-no-name.toml", "layers[0].initializer.name", "needs a name"),
    "layers-not-tables.toml": ("layers-not-tables.toml", "layers", "array of tables"),
    "layers-string.toml": ("layers-string.toml", "layers", "array of tables"),
    # negative, zero, out of range
    "units-negative.toml": ("units-negative.toml", "layers[0].units", "between 1 and"),
    "units-zero.toml": ("units-zero.toml", "layers[0].units", "between 1 and"),
    "units-missing.toml": ("units-missing.toml", "layers[0].units", "needs units"),
    "repeat-zero.toml": ("repeat-zero.toml", "layers[0].repeat", "between 1 and"),
    "learning-rate-zero.toml": ("learning-rate-zero.toml", "train.learning_rate", "must be > 0"),
    "learning-rate-negative.toml": ("learning-rate-negative.toml", "train.learning_rate", "must be > 0"),
    "learning-rate-nan.toml": ("learning-rate-nan.toml", "train.learning_rate", "must be > 0"),
    "epochs-zero.toml": ("epochs-zero.toml", "train.epochs", "between 1 and"),
    "batch-size-zero.toml": ("batch-size-zero.toml", "train.batch_size", "between 1 and"),
    "batch-size-negative.toml": ("batch-size-negative.toml", "train.batch_size", "between 1 and"),
    "clipvalue-negative.toml": ("clipvalue-negative.toml", "train.clipvalue", "must be > 0"),
    "momentum-too-large.toml": ("momentum-too-large.toml", "train.momentum", "<= 0.9999"),
    "validation-split-too-large.toml": ("validation-split-too-large.toml", "data.validation_split", "<= 0.9"),
    "monitor-every-zero.toml": ("monitor-every-zero.toml", "monitor.every", "between 1 and"),
    "dropout-rate-too-large.toml": ("dropout-rate-too-large.toml", "layers[0].rate", "<= 0.99"),
    "name-empty.toml": ("name-empty.toml", "name", "leave name out"),
    "batch-norm-bad-value.toml": (
        "batch-norm-bad-value.toml",
        "layers[0].batch_norm",
        "one of none, before, after",
    ),
    "init-vs-bad-mode.toml": (
        "init-vs-bad-mode.toml",
        "layers[0].initializer.mode",
        "fan_in, fan_out, fan_avg",
    ),
    "init-vs-bad-distribution.toml": (
        "init-vs-bad-distribution.toml",
        "layers[0].initializer.distribution",
        "uniform",
    ),
    "init-uniform-min-ge-max.toml": (
        "init-uniform-min-ge-max.toml",
        "layers[0].initializer.maxval",
        "greater than minval",
    ),
    "init-stddev-zero.toml": ("init-stddev-zero.toml", "layers[0].initializer.stddev", "must be > 0"),
    # conflicts
    "clipnorm-and-global.toml": ("clipnorm-and-global.toml", "train.global_clipnorm", "keep one of them"),
    "momentum-with-adam.toml": ("momentum-with-adam.toml", "train.momentum", "sgd and rmsprop"),
    # the layer stack
    "no-layers.toml": ("no-layers.toml", "layers", "at least one [[layers]]"),
    "layers-empty.toml": ("layers-empty.toml", "layers", "at least one [[layers]]"),
    "no-dense-layer.toml": ("no-dense-layer.toml", "layers", "at least one dense layer"),
    "last-layer-not-dense.toml": ("last-layer-not-dense.toml", "layers[2].type", "dense output layer"),
    "output-units-mismatch.toml": ("output-units-mismatch.toml", "layers[1].units", "set units = 10"),
    "output-sigmoid.toml": ("output-sigmoid.toml", "layers[1].activation", "must be softmax"),
    "too-large-for-memory.toml": ("too-large-for-memory.toml", "layers[0].units", "use fewer units"),
    # data files
    "missing-data-file.toml": ("missing-data-file.toml", "data.dataset", "give a .npz or .csv file"),
    "data-npz-no-y-train.toml": ("npz-no-y-train.npz", "y_train", "x_train (samples x features)"),
    "data-npz-not-a-zip.toml": ("npz-not-a-zip.npz", None, "a .npz holds x_train"),
    "data-npz-truncated.toml": ("npz-truncated.npz", None, "a .npz holds x_train"),
    "data-npz-xy-mismatch.toml": ("npz-xy-mismatch.npz", "y_train", "they must match"),
    "data-npz-x-strings.toml": ("npz-x-strings.npz", "x_train", "numeric array"),
    "data-npz-x-1d.toml": ("npz-x-1d.npz", "x_train", "samples x features"),
    "data-npz-y-one-hot.toml": ("npz-y-one-hot.npz", "y_train", "argmax"),
    "data-npz-label-negative.toml": ("npz-label-negative.npz", "y_train", "integers 0..K-1"),
    "data-csv-ragged.toml": ("csv-ragged.csv", "line 4", "one cell per header column"),
    "data-csv-non-numeric.toml": ("csv-non-numeric.csv", "line 5, column 'x2'", "must be numeric"),
    "data-csv-label-negative.toml": ("csv-label-negative.csv", "column 'label'", "integers 0..K-1"),
    "data-csv-label-non-integer.toml": ("csv-label-non-integer.csv", "column 'label'", "integers 0..K-1"),
    "data-csv-label-nan.toml": ("csv-label-nan.csv", "column 'label'", "integers 0..K-1"),
    "data-csv-label-out-of-range.toml": (
        "data-csv-label-out-of-range.toml",
        "layers[1].units",
        "set units = 8",
    ),
    "data-csv-x-inf.toml": ("csv-x-inf.csv", "feature columns", "finite number"),
    "data-csv-empty.toml": ("csv-empty.csv", None, "a header row"),
    "data-csv-header-only.toml": ("csv-header-only.csv", None, "no data rows"),
    "data-csv-one-column.toml": ("csv-one-column.csv", None, "features and a label"),
    "data-csv-binary.toml": ("csv-binary.csv", None, "UTF-8 text"),
    "data-csv-latin1.toml": ("csv-latin1.csv", None, "UTF-8 text"),
}

#: presets in the corpus that are valid on purpose (the control cases for the data files)
GOOD = {"data-csv-good.toml", "data-npz-good.toml"}

runner = CliRunner()


def assert_one_line(code: int, stderr: str, names: str, key: str | None, allowed: str) -> None:
    """Exit 2, one ``gradtui: error:`` line naming the file, the key and what is allowed."""
    assert code == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.startswith("gradtui: error: "), line
    assert names in line, f"{names!r} not named in {line!r}"
    if key is not None:
        assert f": {key}: " in line, f"key {key!r} not named in {line!r}"
    assert allowed in line, f"{allowed!r} not said in {line!r}"


def test_corpus_is_complete() -> None:
    """Every file in the corpus has its expectation, and there are at least 30 of them."""
    on_disk = {p.name for p in PRESETS.glob("*.toml")}
    assert on_disk - GOOD == set(CASES)
    assert len(CASES) >= 30
    assert {p.name for p in FILES.iterdir()} >= {
        v[0] for v in CASES.values() if v[0][-4:] in (".npz", ".csv")
    }


@pytest.mark.parametrize("name", sorted(CASES))
def test_check_refuses(name: str) -> None:
    """``gradtui check`` refuses each bad input in one line."""
    result = runner.invoke(app, ["check", str(PRESETS / name)])
    assert result.stdout == ""
    assert_one_line(result.exit_code, result.stderr, *CASES[name])


@pytest.mark.parametrize("name", sorted(CASES))
def test_run_refuses(name: str, tmp_path: Path) -> None:
    """``gradtui run`` refuses each bad input in one line and writes no run directory."""
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", str(PRESETS / name), "--out", str(out), "--quiet"])
    assert_one_line(result.exit_code, result.stderr, *CASES[name])
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "key", "allowed"),
    [
        (["--epochs", "0"], "'--epochs'", "greater than or equal to 1"),
        (["--epochs", "abc"], "'--epochs'", "valid integer"),
        (["--max-steps", "-5"], "'--max-steps'", "greater than or equal to 1"),
        (["--seed", "-1"], "'--seed'", "greater than or equal to 0"),
        (["--every", "0"], "'--every'", "greater than or equal to 1"),
        (["--fail-on", "bogus"], "--fail-on", "allowed: vanishing, exploding"),
        (["--fail-on", "vanishing,exploded"], "--fail-on", "did you mean 'exploding'"),
        (["--bogus"], "--bogus", "--help"),
        (["--dataset", "digit"], "--dataset", "did you mean 'digits'"),
        (["--dataset", "no/such/file.csv"], "--dataset", "existing .npz or .csv"),
    ],
)
def test_bad_run_options(args: list[str], key: str, allowed: str, tmp_path: Path) -> None:
    """Bad options of ``run``: exit 2, one line naming the option and what it takes."""
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "he-relu", "--out", str(out), *args])
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradtui: error: "), result.stderr
    assert key in lines[0] and allowed in lines[0], lines[0]
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "names", "allowed"),
    [
        (["check", "vanishing-sigmod"], "PRESET", "did you mean 'vanishing-sigmoid'"),
        (["run", "vanishing-sigmod"], "PRESET", "did you mean 'vanishing-sigmoid'"),
        (
            ["check", "no-such-preset.toml"],
            "no-such-preset.toml: no such preset file",
            "bundled preset's name",
        ),
        (["check", str(DATA)], "data: is a folder", "a .toml preset file"),
        (["check"], "Missing argument", "--help"),
        (["run"], "Missing argument", "--help"),
        (["frobnicate"], "No such command", "--help"),
        (["check", "he-relu", "--bogus"], "--bogus", "--help"),
    ],
)
def test_bad_arguments(args: list[str], names: str, allowed: str) -> None:
    """A bad PRESET argument, a missing one, an unknown command or option: one line, exit 2."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradtui: error: "), result.stderr
    assert names in lines[0] and allowed in lines[0], lines[0]


def test_out_is_a_file(tmp_path: Path) -> None:
    """``--out`` naming a file: one line, nothing overwritten."""
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    result = runner.invoke(app, ["run", "he-relu", "--out", str(target), "--max-steps", "1"])
    assert_one_line(result.exit_code, result.stderr, "notes.txt", "--out", "names a folder")
    assert target.read_text() == "mine"


# --------------------------------------------------------------------------- relative data paths


def test_data_path_is_relative_to_the_preset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A preset's relative ``dataset`` is read from the preset's folder, wherever gradtui runs."""
    from gradtui.data import load as load_data
    from gradtui.preset import load

    monkeypatch.chdir(tmp_path)
    preset = load(str(PRESETS / "data-csv-good.toml"))
    assert Path(preset.data.dataset) == FILES / "csv-good.csv"
    data = load_data(preset.data, seed=0)
    assert data.input_shape == (2,) and data.num_classes == 3
    # the resolved path survives a round trip, so a run directory's preset.toml finds the data too
    from gradtui.preset import loads

    assert loads(preset.to_toml()).data.dataset == preset.data.dataset


def test_dataset_option_is_relative_to_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--dataset`` is a command-line path: relative to the working directory."""
    import dataclasses

    from gradtui.preset import load
    from gradtui.session import prepare

    monkeypatch.chdir(FILES)
    preset = load("he-relu").with_overrides(dataset="npz-good.npz")
    output = dataclasses.replace(preset.layers[-1], units=3)
    prepared = prepare(preset.replace(layers=(*preset.layers[:-1], output)))
    assert prepared.data.num_classes == 3


# --------------------------------------------------------------------------- real processes

_PROBE = """
import json, sys
from gradtui.cli import app
try:
    app(sys.argv[1:], prog_name="gradtui")
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "tensorflow": "tensorflow" in sys.modules, "keras": "keras" in sys.modules}))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.parametrize(
    "name",
    [
        "misspelt-activation.toml",
        "too-large-for-memory.toml",
        "output-units-mismatch.toml",
        "data-csv-ragged.toml",
    ],
)
def test_refused_before_tensorflow(name: str, tmp_path: Path) -> None:
    """Bad input is refused by ``run`` and ``check`` without ever importing TensorFlow or Keras."""
    for command in (["run", "--out", str(tmp_path / "run")], ["check"]):
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, command[0], str(PRESETS / name), *command[1:]],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=120,
        )
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        assert result == {"code": 2, "tensorflow": False, "keras": False}, proc.stderr
        assert_one_line(2, proc.stderr, *CASES[name])


@pytest.mark.parametrize(
    "args",
    [
        ["check", str(PRESETS / "binary.toml")],
        ["run", str(PRESETS / "data-npz-truncated.toml")],
        ["run", "he-relu", "--epochs", "abc"],
    ],
)
def test_real_process_has_no_traceback(args: list[str], tmp_path: Path) -> None:
    """Through the real entry point (``python -m gradtui``), stderr holds one line, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "gradtui", *args],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("gradtui: error: ")
    assert not (tmp_path / "runs").exists()


def test_uncached_dataset_option_blames_the_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--dataset mnist`` without Keras's cache: one line on ``--dataset`` saying how to get it."""
    if Path("/tmp/.keras/datasets/mnist.npz").exists():
        pytest.skip("mnist is cached on this machine")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    result = runner.invoke(app, ["run", "he-relu", "--dataset", "mnist", "--out", str(tmp_path / "run")])
    assert_one_line(result.exit_code, result.stderr, "--dataset", None, "load_data()")
    assert result.stderr.startswith("gradtui: error: --dataset: ")
