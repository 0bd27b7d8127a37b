"""Writes the bad data files of the corpus (``files/``) and a preset for each (``presets/data-*.toml``).

Run from this folder: ``python make_files.py``. The output is committed; this script documents it.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FILES = HERE / "files"
PRESETS = HERE / "presets"

rng = np.random.default_rng(0)
X = rng.normal(size=(12, 2)).round(3)
Y = np.arange(12) % 3


def csv(rows: list[str]) -> str:
    """Rows joined into CSV text."""
    return "\n".join(rows) + "\n"


def good_rows() -> list[str]:
    """Twelve valid rows: two features and a label 0..2."""
    return [f"{a},{b},{c}" for (a, b), c in zip(X, Y, strict=True)]


def npz(**arrays: np.ndarray) -> bytes:
    """The bytes of a .npz holding ``arrays``."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


DATA: dict[str, tuple[str, bytes | str]] = {
    # name: (what is wrong, content)
    "csv-good.csv": ("nothing (the control case)", csv(["x1,x2,label", *good_rows()])),
    "npz-good.npz": ("nothing (the control case)", npz(x_train=X, y_train=Y)),
    "npz-no-y-train.npz": (".npz without y_train", npz(x_train=X, labels=Y)),
    "npz-not-a-zip.npz": (".npz that is a text file", "x_train,y_train\n1,2\n"),
    "npz-truncated.npz": (".npz cut off half way", npz(x_train=X, y_train=Y)[:200]),
    "npz-xy-mismatch.npz": ("12 samples, 10 labels", npz(x_train=X, y_train=Y[:10])),
    "npz-x-strings.npz": ("x_train holds strings", npz(x_train=np.array([["a", "b"]] * 12), y_train=Y)),
    "npz-y-one-hot.npz": ("one-hot labels", npz(x_train=X, y_train=np.eye(3)[Y])),
    "npz-label-negative.npz": ("a label of -1", npz(x_train=X, y_train=np.where(Y == 2, -1, Y))),
    "npz-x-1d.npz": ("x_train is one number per sample", npz(x_train=X[:, 0], y_train=Y)),
    "csv-ragged.csv": (
        "row 4 has 2 cells",
        csv(["x1,x2,label", *good_rows()[:2], "0.5,1", *good_rows()[3:]]),
    ),
    "csv-non-numeric.csv": (
        "a cell reads 'abc'",
        csv(["x1,x2,label", *good_rows()[:3], "0.5,abc,1", *good_rows()[4:]]),
    ),
    "csv-label-negative.csv": ("a label of -1", csv(["x1,x2,label", *good_rows(), "0.1,0.2,-1"])),
    "csv-label-non-integer.csv": ("a label of 1.5", csv(["x1,x2,label", *good_rows(), "0.1,0.2,1.5"])),
    "csv-label-out-of-range.csv": (
        "label 7 for a 3-unit output",
        csv(["x1,x2,label", *good_rows(), "0.1,0.2,7"]),
    ),
    "csv-label-nan.csv": ("a label of nan", csv(["x1,x2,label", *good_rows(), "0.1,0.2,nan"])),
    "csv-x-inf.csv": ("a feature of inf", csv(["x1,x2,label", *good_rows(), "inf,0.2,1"])),
    "csv-empty.csv": ("an empty file", ""),
    "csv-header-only.csv": ("a header and no rows", "x1,x2,label\n"),
    "csv-one-column.csv": ("one column only", csv(["label", "0", "1", "2"])),
    "csv-binary.csv": ("binary data", bytes(range(256)) * 4),
    "csv-latin1.csv": ("not UTF-8", "x1,x2,\u00e9tiquette\n1,2,0\n3,4,1\n".encode("latin-1")),
}

for name, (_what, content) in DATA.items():
    data = content.encode("utf-8") if isinstance(content, str) else content
    (FILES / name).write_bytes(data)
    units = 3
    (PRESETS / f"data-{Path(name).stem}.toml").write_text(
        f"# data file: {_what}\n"
        "[data]\n"
        f'dataset = "../files/{name}"\n'
        "validation_split = 0.0\n\n"
        "[[layers]]\n"
        'type = "dense"\n'
        "units = 8\n"
        'activation = "relu"\n'
        'initializer = "he_normal"\n\n'
        "[[layers]]\n"
        'type = "dense"\n'
        f"units = {units}\n"
        'activation = "softmax"\n\n'
        "[train]\n"
        "batch_size = 4\n"
        "epochs = 1\n"
    )
