"""Property-based tests of the preset loader (hypothesis).

- Any TOML document either loads into a valid preset or is refused with a :class:`PresetError`;
  never another exception.
- A valid preset written with ``to_toml`` and loaded again is the same preset.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradtui.errors import PresetError
from gradtui.preset import (
    ACTIVATIONS,
    BATCH_NORM,
    INITIALIZERS,
    LAYER_TYPES,
    NAMED_DATASETS,
    OPTIMIZERS,
    VS_DISTRIBUTIONS,
    VS_MODES,
    Preset,
    loads,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- valid presets

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
name = text.filter(lambda s: s.strip() != "")
pos = st.floats(min_value=1e-6, max_value=1e3, allow_nan=False, allow_infinity=False)
unit = st.floats(min_value=0.0, max_value=0.9, allow_nan=False)


@st.composite
def initializers(draw: st.DrawFn) -> Any:
    """An initializer by name, or as a table with some of its parameters."""
    init = draw(st.sampled_from(sorted(INITIALIZERS)))
    params: dict[str, Any] = {}
    for p in INITIALIZERS[init]:
        if not draw(st.booleans()):
            continue
        if p == "mode":
            params[p] = draw(st.sampled_from(VS_MODES))
        elif p == "distribution":
            params[p] = draw(st.sampled_from(VS_DISTRIBUTIONS))
        elif p in ("stddev", "scale", "gain"):
            params[p] = draw(st.floats(min_value=1e-3, max_value=1e3))
        elif p == "minval":
            params[p] = draw(st.floats(min_value=-10, max_value=-0.06))
        elif p == "maxval":
            params[p] = draw(st.floats(min_value=0.06, max_value=10))
        else:
            params[p] = draw(st.floats(min_value=-10, max_value=10))
    if not params and draw(st.booleans()):
        return init
    return {"name": init, **params}


@st.composite
def activations(draw: st.DrawFn) -> Any:
    """An activation by name, or a parametrised one as a table."""
    act = draw(st.sampled_from(ACTIVATIONS))
    if act == "leaky_relu" and draw(st.booleans()):
        return {"name": act, "negative_slope": draw(st.floats(min_value=0.0, max_value=1.0))}
    if act == "elu" and draw(st.booleans()):
        return {"name": act, "alpha": draw(st.floats(min_value=0.0, max_value=5.0))}
    return act


@st.composite
def layer_entries(draw: st.DrawFn, dense: bool = False) -> dict[str, Any]:
    """One valid ``[[layers]]`` entry."""
    kind = "dense" if dense else draw(st.sampled_from([t for t in LAYER_TYPES if t != "dense"]))
    entry: dict[str, Any] = {"type": kind}
    if kind == "dense":
        entry["units"] = draw(st.integers(1, 512))
        if draw(st.booleans()):
            entry["activation"] = draw(activations())
        if draw(st.booleans()):
            entry["initializer"] = draw(initializers())
        if draw(st.booleans()):
            entry["bias_initializer"] = draw(initializers())
        if draw(st.booleans()):
            entry["batch_norm"] = draw(st.sampled_from(BATCH_NORM))
        if draw(st.booleans()):
            entry["residual"] = draw(st.booleans())
    elif kind in ("conv1d", "conv2d"):
        rank = 1 if kind == "conv1d" else 2
        entry["filters"] = draw(st.integers(1, 64))
        size = st.integers(1, 5) | st.lists(st.integers(1, 5), min_size=rank, max_size=rank)
        entry["kernel_size"] = draw(size)
        if draw(st.booleans()):
            entry["strides"] = draw(size)
        if draw(st.booleans()):
            entry["padding"] = draw(st.sampled_from(["same", "valid"]))
        for key, strategy in (
            ("activation", activations()),
            ("initializer", initializers()),
            ("bias_initializer", initializers()),
            ("batch_norm", st.sampled_from(BATCH_NORM)),
            ("residual", st.booleans()),
        ):
            if draw(st.booleans()):
                entry[key] = draw(strategy)
    elif kind in ("simple_rnn", "lstm", "gru"):
        entry["units"] = draw(st.integers(1, 64))
        for key, strategy in (
            ("activation", st.sampled_from(["tanh", "relu", "sigmoid", "linear"])),
            ("initializer", initializers()),
            ("recurrent_initializer", initializers()),
            ("bias_initializer", initializers()),
            ("return_sequences", st.booleans()),
            ("bidirectional", st.booleans()),
        ):
            if draw(st.booleans()):
                entry[key] = draw(strategy)
    elif kind in ("max_pool", "avg_pool") and draw(st.booleans()):
        entry["pool_size"] = draw(st.integers(1, 4) | st.lists(st.integers(1, 4), min_size=1, max_size=2))
    elif kind == "embedding":
        entry["input_dim"] = draw(st.integers(1, 1000))
        entry["output_dim"] = draw(st.integers(1, 64))
        if draw(st.booleans()):
            entry["positions"] = draw(st.booleans())
    elif kind == "transformer":
        for key, strategy in (
            ("heads", st.integers(1, 8)),
            ("key_dim", st.integers(1, 64)),
            ("ffn_units", st.integers(1, 256)),
            ("norm", st.sampled_from(["pre", "post"])),
            ("qk_norm", st.booleans()),
            ("causal", st.booleans()),
            ("dropout", st.floats(min_value=0.0, max_value=0.99)),
            ("activation", st.sampled_from(["gelu", "relu", "swish", "tanh", "linear"])),
        ):
            if draw(st.booleans()):
                entry[key] = draw(strategy)
    elif kind == "layer_norm" and draw(st.booleans()):
        entry["epsilon"] = draw(st.floats(min_value=1e-6, max_value=1.0))
    elif kind == "activation":
        entry["activation"] = draw(activations())
    elif kind == "dropout" and draw(st.booleans()):
        entry["rate"] = draw(st.floats(min_value=0.0, max_value=0.99))
    elif kind == "batch_norm" and draw(st.booleans()):
        entry["momentum"] = draw(st.floats(min_value=0.0, max_value=1.0))
        entry["epsilon"] = draw(st.floats(min_value=1e-6, max_value=1.0))
    if draw(st.booleans()):
        entry["repeat"] = draw(st.integers(1, 5))
    return entry


@st.composite
def preset_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """TOML-shaped data of a valid preset, with a random subset of optional keys."""
    doc: dict[str, Any] = {}
    if draw(st.booleans()):
        doc["name"] = draw(name)
    if draw(st.booleans()):
        doc["description"] = draw(text)
    data: dict[str, Any] = {}
    if draw(st.booleans()):
        data["dataset"] = draw(st.sampled_from([*NAMED_DATASETS, "my data.csv", "/abs/x.npz"]))
    if draw(st.booleans()):
        data["validation_split"] = draw(unit)
    if draw(st.booleans()):
        data["samples"] = draw(st.integers(16, 100_000))
    if draw(st.booleans()):
        data["length"] = draw(st.integers(2, 1000))
    if data:
        doc["data"] = data
    layers = draw(st.lists(layer_entries(), max_size=3))
    doc["layers"] = [*layers, draw(layer_entries(dense=True))]
    train: dict[str, Any] = {}
    optimizer = draw(st.sampled_from(OPTIMIZERS))
    if draw(st.booleans()):
        train["optimizer"] = optimizer
    if draw(st.booleans()):
        train["learning_rate"] = draw(pos)
    if optimizer in ("sgd", "rmsprop") and draw(st.booleans()):
        train["momentum"] = draw(st.floats(min_value=0.0, max_value=0.99))
    clip = draw(st.sampled_from([None, "clipnorm", "global_clipnorm"]))
    if clip:
        train[clip] = draw(pos)
    if draw(st.booleans()):
        train["clipvalue"] = draw(pos)
    for key, lo, hi in (
        ("epochs", 1, 100),
        ("batch_size", 1, 4096),
        ("seed", 0, 2**31 - 1),
        ("max_steps", 1, 10**6),
    ):
        if draw(st.booleans()):
            train[key] = draw(st.integers(lo, hi))
    if draw(st.booleans()):
        regression = data.get("dataset") == "adding"
        train["loss"] = draw(
            st.sampled_from(["mse", "mae"] if regression else ["sparse_categorical_crossentropy"])
        )
    if train:
        doc["train"] = train
    if draw(st.booleans()):
        doc["monitor"] = {"every": draw(st.integers(1, 100)), "stop_on_nonfinite": draw(st.booleans())}
    return doc


@SETTINGS
@given(preset_dicts())
def test_valid_preset_round_trips(doc: dict[str, Any]) -> None:
    """A valid preset saved with ``to_toml`` and loaded again is equal, and saves the same text."""
    preset = loads(tomli_w.dumps(doc), default_name="stem")
    assert isinstance(preset, Preset)
    again = loads(preset.to_toml())
    assert again == preset
    assert again.to_toml() == preset.to_toml()


# --------------------------------------------------------------------------- any TOML document

toml_scalars = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | text
    | st.booleans()
    | st.dates()
    | st.times()
    | st.datetimes(timezones=st.just(dt.timezone.utc))
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
KEYS = ["name", "type", "units", "activation", "initializer", "layers", "data", "train", "monitor",
        "dataset", "epochs", "learning_rate", "optimizer", "clipnorm", "momentum", "repeat", "mode",
        "stddev", "minval", "maxval", "every", "batch_norm", "rate", "filters", "kernel_size",
        "residual", "loss", "pool_size", "bidirectional", "length"]  # fmt: skip


def _mutate(doc: Any, path: list[int], key: str, value: Any) -> Any:
    """Set ``key`` to ``value`` in a table reached by following ``path`` choices from ``doc``."""
    node = doc
    for choice in path:
        children = [
            v for v in (node.values() if isinstance(node, dict) else node) if isinstance(v, (dict, list))
        ]
        if not children:
            break
        node = children[choice % len(children)]
    if isinstance(node, dict):
        node[key] = value
    elif isinstance(node, list) and node:
        node[path[-1] % len(node) if path else 0] = value
    return doc


def _load_or_refuse(source: str) -> None:
    try:
        preset = loads(source)
    except PresetError as exc:
        assert str(exc) and "\n" not in exc.one_line()
        return
    assert isinstance(preset, Preset)
    assert loads(preset.to_toml()) == preset


@SETTINGS
@given(preset_dicts(), st.lists(st.integers(0, 10), max_size=4), st.sampled_from(KEYS) | text, toml_values)
def test_mutated_preset_loads_or_is_refused(
    doc: dict[str, Any], path: list[int], key: str, value: Any
) -> None:
    """A valid preset with one value replaced by any TOML value: a preset or a PresetError."""
    _load_or_refuse(tomli_w.dumps(_mutate(doc, path, key, value)))


@SETTINGS
@given(st.dictionaries(st.sampled_from(KEYS) | text, toml_values, max_size=6))
def test_any_toml_table_loads_or_is_refused(doc: dict[str, Any]) -> None:
    """Any TOML table at all: a preset or a PresetError."""
    _load_or_refuse(tomli_w.dumps(doc))


@SETTINGS
@given(st.text(max_size=200) | st.binary(max_size=200))
def test_any_text_or_bytes_loads_or_is_refused(source: str | bytes) -> None:
    """Any text or bytes, TOML or not: a preset or a PresetError."""
    try:
        preset = loads(source)
    except PresetError:
        return
    assert isinstance(preset, Preset)


def test_integer_too_large_for_a_float_is_refused() -> None:
    """TOML integers have no size limit; one past float range is out of range, not an OverflowError."""
    huge = "1" + "0" * 400
    for table, key in (("train", "learning_rate"), ("train", "clipnorm"), ("monitor", "exploding_norm")):
        source = f'[[layers]]\ntype = "dense"\nunits = 10\n\n[{table}]\n{key} = {huge}\n'
        try:
            loads(source)
        except PresetError as exc:
            assert exc.key == f"{table}.{key}" and "out of range" in exc.detail
        else:  # pragma: no cover
            raise AssertionError("accepted")


@SETTINGS
@given(preset_dicts())
def test_any_valid_preset_plans_or_is_refused_with_one_line(doc: dict[str, Any]) -> None:
    """Any stack of any layer types is planned, or refused with a one-line error naming a key
    (a shape a layer cannot take), never another exception, before TensorFlow loads."""
    from gradtui.errors import GradtuiError
    from gradtui.preset import named_input
    from gradtui.stack import plan

    preset = loads(tomli_w.dumps(doc), default_name="stem")
    named = named_input(preset.data)
    if named is None:
        return  # a data file: its shape is read from the file
    try:
        layers = plan(preset, *named)
    except GradtuiError as exc:
        assert exc.key and "\n" not in exc.one_line()
        return
    assert layers and all(x.params >= 0 and all(d >= 1 for d in x.output_shape) for x in layers)
