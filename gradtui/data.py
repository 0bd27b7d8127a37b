"""Data sets by name or path, scaled for training, split for validation.

Nothing here imports TensorFlow: the bundled and generated sets are numpy arrays, and the
Keras-cached MNIST files are read with numpy and gzip directly, so nothing is ever downloaded.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gradtui.errors import DataError, one_of
from gradtui.preset import NAMED_DATASETS, NAMED_FORMS, TEXT_VOCAB, DataSpec, named_input

FASHION_FILES = (
    "train-labels-idx1-ubyte.gz",
    "train-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
)


@dataclass
class Dataset:
    """Training and validation arrays ready for ``model.fit``."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    num_classes: int
    #: ``True`` for a regression target (``adding``); ``num_classes`` is then 1
    regression: bool = False

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one sample."""
        return tuple(int(d) for d in self.x_train.shape[1:])


def keras_home() -> Path:
    """Keras's cache folder (``$KERAS_HOME`` or ``~/.keras``)."""
    return Path(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")))


def _cache_help(name: str, where: Path) -> str:
    loader = "fashion_mnist" if name == "fashion_mnist" else "mnist"
    return (
        f"{name} is not in Keras's local cache ({where}); on a machine with internet run "
        f'`python -c "import keras; keras.datasets.{loader}.load_data()"` and copy '
        f"{keras_home() / 'datasets'} here, or use a .npz file"
    )


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def _load_mnist_like(name: str) -> tuple[np.ndarray, np.ndarray, int]:
    if name == "mnist":
        candidates = [
            keras_home() / "datasets" / "mnist.npz",
            Path("/tmp/.keras/datasets/mnist.npz"),
        ]
        for path in candidates:
            if path.is_file():
                with np.load(path, allow_pickle=False) as f:
                    return f["x_train"], f["y_train"], 10
        raise DataError(_cache_help(name, candidates[0]), key="data.dataset")
    for base in (keras_home(), Path("/tmp/.keras")):
        folder = base / "datasets" / "fashion-mnist"
        if all((folder / f).is_file() for f in FASHION_FILES):
            y = _read_idx(folder / FASHION_FILES[0])
            x = _read_idx(folder / FASHION_FILES[1])
            return x, y, 10
    raise DataError(_cache_help(name, keras_home() / "datasets" / "fashion-mnist"), key="data.dataset")


def generate(name: str, samples: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 2-D two-class toy set like TensorFlow Playground's, seeded."""
    rng = np.random.default_rng(seed)
    n = samples
    half = n // 2
    if name == "spiral":
        # two interleaved spirals, as in the Playground
        out = []
        for label, delta in ((0, 0.0), (1, np.pi)):
            i = np.arange(half if label == 0 else n - half)
            r = i / max(len(i), 1) * 5
            t = 1.75 * i / max(len(i), 1) * 2 * np.pi + delta
            pts = np.stack([r * np.sin(t), r * np.cos(t)], axis=1)
            out.append((pts + rng.normal(0, noise * 5 * 0.2, pts.shape), np.full(len(i), label)))
        x = np.concatenate([o[0] for o in out])
        y = np.concatenate([o[1] for o in out])
    elif name == "circles":
        r_in = rng.uniform(0, 2.5, half)
        r_out = rng.uniform(3.5, 5.0, n - half)
        a = rng.uniform(0, 2 * np.pi, n)
        r = np.concatenate([r_in, r_out])
        x = np.stack([r * np.sin(a), r * np.cos(a)], axis=1) + rng.normal(0, noise, (n, 2))
        y = np.concatenate([np.zeros(half), np.ones(n - half)])
    elif name == "xor":
        pts = rng.uniform(-5, 5, (n, 2))
        pts += np.sign(pts) * 0.3  # keep points off the axes, as the Playground does
        y = (pts[:, 0] * pts[:, 1] < 0).astype(np.int64)
        x = pts + rng.normal(0, noise, (n, 2))
    elif name == "gaussian":
        a = rng.normal(2.0, 1.0 + noise, (half, 2))
        b = rng.normal(-2.0, 1.0 + noise, (n - half, 2))
        x = np.concatenate([a, b])
        y = np.concatenate([np.zeros(half), np.ones(n - half)])
    else:  # pragma: no cover - guarded by the preset validator
        raise DataError(f"unknown generated data set '{name}'", key="data.dataset")
    order = rng.permutation(n)
    return x[order].astype(np.float32), y[order].astype(np.int64)


def adding(samples: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem (Hochreiter & Schmidhuber 1997), seeded.

    Each example is ``length`` steps of (a value uniform in [0, 1], a marker); two steps are
    marked, one in each half of the sequence, and the target is the sum of their two values. A
    network that does not carry the first marked value across about ``length / 2`` steps can do
    no better than predicting the mean, 1.0 (a mean squared error near 1/6).
    """
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.0, 1.0, (samples, length))
    markers = np.zeros((samples, length))
    half = max(1, length // 2)
    first = rng.integers(0, half, samples)
    second = rng.integers(half, length, samples) if length > half else first
    rows = np.arange(samples)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1).astype(np.float32)
    y = (values * markers).sum(axis=1).astype(np.float32)
    return x, y


#: how much of the standard library the ``text`` set reads (characters): enough for thousands of
#: distinct windows, read in well under a second
TEXT_CHARS = 2_000_000
#: a text file larger than this is read only this far (bytes)
TEXT_FILE_LIMIT = 64 * 1024 * 1024


def char_ids(text: str) -> np.ndarray:
    """``text`` as the ``text`` set's character ids: tab 1, newline 2, printable ASCII (space to
    ``~``) 3..97, anything else 0 (SPEC section 2)."""
    lut = np.zeros(128, np.int32)
    lut[9], lut[10] = 1, 2
    lut[32:127] = np.arange(3, 98)
    codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    return np.where(codes < 128, lut[np.minimum(codes, 127)], 0).astype(np.int32)


def stdlib_text(limit: int = TEXT_CHARS) -> tuple[str, str]:
    """The standard library's own ``.py`` files (present on every machine), in name order, up to
    ``limit`` characters; returns the text and where it came from."""
    import sysconfig

    folder = Path(sysconfig.get_paths()["stdlib"])
    parts: list[str] = []
    size = 0
    for path in sorted(folder.glob("*.py")):
        try:
            part = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue  # an unreadable file is skipped, not fatal
        parts.append(part)
        size += len(part)
        if size >= limit:
            break
    if size < 1000:
        raise DataError(
            f"the standard library's .py files ({folder}) were not found; set [data] source to a .txt file",
            key="data.source",
        )
    return "".join(parts)[:limit], str(folder)


def _read_text_file(source: str) -> str:
    path = Path(source).expanduser()
    if not path.is_file():  # a folder, a FIFO or a device is not a text file: never opened
        what = "is not a regular file" if path.exists() else "does not exist"
        raise DataError(f"{what}; give a UTF-8 .txt file", file=source, key="data.source")
    try:
        with path.open("rb") as f:
            raw = f.read(TEXT_FILE_LIMIT)
    except OSError as exc:
        raise DataError(f"cannot read it: {exc.strerror or exc}", file=source, key="data.source") from None
    if b"\x00" in raw:
        raise DataError(
            "holds binary data (NUL bytes); give a UTF-8 text file", file=source, key="data.source"
        )
    return raw.decode("utf-8", errors="replace")


def text_windows(spec: DataSpec, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``spec.samples`` windows of ``spec.length`` character ids at seeded places of the text,
    each with the next character at every position as its target."""
    if spec.source:
        text, where = _read_text_file(spec.source), spec.source
    else:
        text, where = stdlib_text()
    ids = char_ids(text)
    length = spec.length
    if len(ids) < length + 2:
        raise DataError(
            f"has {len(ids)} characters; a context of length = {length} needs at least {length + 2}",
            file=where,
            key="data.length",
        )
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(ids) - length - 1, size=spec.samples)
    windows = ids[starts[:, None] + np.arange(length + 1)[None, :]]
    return windows[:, :-1], windows[:, 1:]


def _in_form(name: str, x: np.ndarray, form: str, raw: np.ndarray | None = None) -> np.ndarray:
    """A pixel data set as its first layer takes it: image, sequence, or tokens (raw pixel values)."""
    shape = NAMED_FORMS.get(name, {}).get(form)
    if shape is None:
        return x
    source = raw if form == "tokens" and raw is not None else x
    return source.reshape((len(source), *shape)).astype(np.float32)


#: what a user data file must hold, repeated in every error about one
NPZ_FORM = "a .npz holds x_train (samples x features) and y_train (integer labels 0..K-1) from numpy.savez"
CSV_FORM = (
    "a .csv is UTF-8 text: a header row, then one row of numbers per sample, "
    "labels in a column named 'label' (else the last)"
)


@dataclass
class _Raw:
    """A user data file's arrays before checking, with the names errors give their parts."""

    x: np.ndarray
    y: np.ndarray
    x_key: str = "x_train"
    y_key: str = "y_train"


def _load_npz(path: Path) -> _Raw:
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise DataError(f"cannot read it: {exc.strerror or exc}", file=str(path)) from None
    if magic != b"PK\x03\x04":  # an .npz is a zip archive; anything else np.load would unpickle
        raise DataError(f"not a .npz file (not a zip archive); {NPZ_FORM}", file=str(path))
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            missing = [k for k in ("x_train", "y_train") if k not in keys]
            if missing:
                raise DataError(
                    f"has no array {missing[0]} (it has {', '.join(sorted(keys)) or 'none'}); {NPZ_FORM}",
                    file=str(path),
                    key=missing[0],
                )
            return _Raw(np.asarray(f["x_train"]), np.asarray(f["y_train"]))
    except DataError:
        raise
    except Exception as exc:  # zipfile, zlib, numpy format errors: all mean a damaged file
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"not a readable .npz file ({reason}); {NPZ_FORM}", file=str(path)) from None


def _load_csv(path: Path) -> _Raw:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read it: {exc.strerror or exc}", file=str(path)) from None
    if b"\x00" in raw:
        raise DataError(f"holds binary data, not text; {CSV_FORM}", file=str(path))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text (byte {exc.start}); {CSV_FORM}", file=str(path)) from None
    lines = [(n, ln) for n, ln in enumerate(text.splitlines(), start=1) if ln.strip()]
    if len(lines) < 2:
        what = "is empty" if not lines else "has a header but no data rows"
        raise DataError(f"{what}; {CSV_FORM}", file=str(path))
    header = [h.strip() for h in lines[0][1].split(",")]
    if len(header) < 2:
        raise DataError(f"has one column; it needs features and a label; {CSV_FORM}", file=str(path))
    label_col = header.index("label") if "label" in header else len(header) - 1
    rows = []
    for n, line in lines[1:]:
        cells = line.split(",")
        if len(cells) != len(header):
            raise DataError(
                f"the row has {len(cells)} cells but the header has {len(header)}; "
                "every row needs one cell per header column",
                file=str(path),
                key=f"line {n}",
            )
        row = []
        for name, cell in zip(header, cells, strict=True):
            try:
                row.append(float(cell))
            except ValueError:
                raise DataError(
                    f"{cell.strip()[:20]!r} is not a number; every cell below the header must be numeric",
                    file=str(path),
                    key=f"line {n}, column '{name}'",
                ) from None
        rows.append(row)
    table = np.asarray(rows, dtype=np.float64)
    y = table[:, label_col]
    x = np.delete(table, label_col, axis=1)
    label = header[label_col]
    return _Raw(x, y, x_key="feature columns", y_key=f"column '{label}'")


def _labels(y: np.ndarray, source: str, key: str = "y_train") -> tuple[np.ndarray, int]:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.reshape(-1)
    if y.ndim != 1:
        hint = " (one-hot? store y.argmax(axis=1))" if y.ndim == 2 else ""
        raise DataError(
            f"labels have shape {y.shape}; they must be one integer class 0..K-1 per sample{hint}",
            file=source,
            key=key,
        )
    if y.dtype.kind not in "iuf" or y.size == 0:
        raise DataError(
            f"labels are {y.dtype} with {y.size} values; they must be integers 0..K-1", file=source, key=key
        )
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            raise DataError(
                f"label {y[bad][0]:g} is not a whole number; labels must be integers 0..K-1",
                file=source,
                key=key,
            )
    if y.min() < 0:
        raise DataError(
            f"label {int(y.min())} is out of range; labels must be integers 0..K-1", file=source, key=key
        )
    k = int(y.max()) + 1
    if k > 100_000:
        raise DataError(
            f"label {k - 1} is out of range; labels must be 0..K-1 with K <= 100000 classes",
            file=source,
            key=key,
        )
    return y.astype(np.int64), max(k, 2)


def input_spec(spec: DataSpec) -> tuple[tuple[int, ...], int]:
    """Input shape (in the form the first layer takes) and number of classes (1 for a regression
    task), without loading a named data set."""
    named = named_input(spec)
    if named is not None:
        return named
    ds = load(spec, seed=0)
    return ds.input_shape, ds.num_classes


def load(spec: DataSpec, *, seed: int) -> Dataset:
    """Load, scale and split the data set a preset names, in the form its first layer takes
    (``spec.form``: digits as (8, 8, 1) for conv2d, (64, 1) for a recurrent layer or conv1d...)."""
    name = spec.dataset
    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = _in_form(name, digits.data.astype(np.float32) / 16.0, spec.form, digits.data)
        y, k = digits.target.astype(np.int64), 10
    elif name in ("mnist", "fashion_mnist"):
        raw_x, raw_y, k = _load_mnist_like(name)
        x = _in_form(name, raw_x.astype(np.float32) / 255.0, spec.form, raw_x)
        y = raw_y.astype(np.int64)
    elif name == "adding":
        x, y_sum = adding(spec.samples, spec.length, seed)
        ds = _split(name, x, y_sum.astype(np.float32), 1, spec.validation_split, seed)
        ds.regression = True
        return ds
    elif name == "text":
        if spec.form != "tokens":
            raise DataError(
                "text gives integer character ids: begin the stack with an embedding "
                f"(input_dim = {TEXT_VOCAB})",
                key="layers[0].type",
            )
        x, y = text_windows(spec, seed)
        return _split(name, x, y, TEXT_VOCAB, spec.validation_split, seed)
    elif name in ("spiral", "circles", "xor", "gaussian"):
        x, y = generate(name, spec.samples, spec.noise, seed)
        x = x / 5.0  # the Playground's [-6, 6] square, scaled to about [-1, 1]
        k = 2
    else:
        path = Path(name).expanduser()
        if path.suffix.lower() not in (".npz", ".csv"):
            raise DataError(
                f"unknown data set; {one_of(NAMED_DATASETS)}, or a .npz/.csv file",
                key="data.dataset",
            )
        if not path.is_file():
            # no file here: the caller names the preset whose data.dataset this is
            what = f"{name} is a folder" if path.is_dir() else f"there is no file {name}"
            raise DataError(
                f"{what}; give a .npz or .csv file (a relative path is read from the "
                "preset's folder), or a data set: " + one_of(NAMED_DATASETS),
                key="data.dataset",
            )
        raw = _load_npz(path) if path.suffix.lower() == ".npz" else _load_csv(path)
        y, k = _labels(raw.y, str(path), raw.y_key)
        x = _scale(raw.x, str(path), raw.x_key)
        if len(x) != len(y):
            raise DataError(
                f"{raw.x_key} has {len(x)} samples but {raw.y_key} has {len(y)}; they must match",
                file=str(path),
                key=raw.y_key,
            )
        if len(x) < 2:
            raise DataError("has fewer than 2 samples; at least 2 are needed", file=str(path), key=raw.x_key)
    return _split(name, x.astype(np.float32), y, k, spec.validation_split, seed)


def _scale(x: np.ndarray, source: str, key: str = "x_train") -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "iuf" or x.ndim < 2 or x.shape[0] == 0:
        raise DataError(
            f"is {x.dtype} of shape {x.shape}; it must be a numeric array of samples x features",
            file=source,
            key=key,
        )
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise DataError("holds NaN or Inf; every feature must be a finite number", file=source, key=key)
    if x.min() >= 0.0 and x.max() <= 1.0:
        return x.astype(np.float32)
    mean = x.mean(axis=0, keepdims=True)
    std = x.std(axis=0, keepdims=True)
    return ((x - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


def _split(name: str, x: np.ndarray, y: np.ndarray, k: int, validation_split: float, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    n_val = int(round(len(x) * validation_split))
    if n_val == 0 or n_val >= len(x):
        return Dataset(Path(name).stem, x, y, None, None, k)
    return Dataset(Path(name).stem, x[n_val:], y[n_val:], x[:n_val], y[:n_val], k)
