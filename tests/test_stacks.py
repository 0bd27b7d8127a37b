"""Convolutional, recurrent and residual stacks: the plan (pure) against Keras, shape errors before
TensorFlow loads, the image/sequence forms of the data sets, the ``adding`` task, ``[train] loss``."""

from __future__ import annotations

import numpy as np
import pytest

from gradtui.data import adding, input_spec
from gradtui.data import load as load_data
from gradtui.errors import PresetError
from gradtui.preset import loads
from gradtui.stack import param_counts, plan, preflight

OUT = '[[layers]]\ntype = "dense"\nunits = 10\nactivation = "softmax"\n'
REG_OUT = '[[layers]]\ntype = "dense"\nunits = 1\n'


def preset(body: str, data: str = 'dataset = "digits"', out: str = OUT, train: str = "") -> object:
    return loads(f"[data]\n{data}\n{body}\n{out}\n[train]\n{train}\n", source="p.toml")


CONV = """
[[layers]]
type = "conv2d"
filters = 8
kernel_size = 3
activation = "relu"
initializer = "he_normal"
batch_norm = "before"
residual = true
repeat = 2
[[layers]]
type = "conv2d"
filters = 16
kernel_size = [3, 3]
strides = 2
activation = { name = "leaky_relu", negative_slope = 0.1 }
residual = true
[[layers]]
type = "avg_pool"
[[layers]]
type = "layer_norm"
[[layers]]
type = "global_avg_pool"
[[layers]]
type = "dropout"
rate = 0.1
[[layers]]
type = "dense"
units = 32
activation = "relu"
residual = true
"""

RNN = """
[[layers]]
type = "conv1d"
filters = 4
kernel_size = 5
padding = "valid"
[[layers]]
type = "max_pool"
pool_size = 2
[[layers]]
type = "gru"
units = 8
bidirectional = true
return_sequences = true
[[layers]]
type = "simple_rnn"
units = 6
return_sequences = true
[[layers]]
type = "lstm"
units = 5
"""

EMBED = """
[[layers]]
type = "embedding"
input_dim = 17
output_dim = 4
[[layers]]
type = "lstm"
units = 8
bidirectional = true
"""

CASES = {
    "conv-residual": (CONV, 'dataset = "digits"', OUT),
    "recurrent-adding": (RNN, 'dataset = "adding"\nlength = 30', REG_OUT),
    "recurrent-digits": (RNN, 'dataset = "digits"', OUT),
    "embedding": (EMBED, 'dataset = "digits"', OUT),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_matches_keras_names_shapes_and_params(case: str) -> None:
    from gradtui.build import build, keras_param_counts

    body, data, out = CASES[case]
    p = preset(body, data, out)
    shape, classes = input_spec(p.data)
    planned = plan(p, shape, classes)
    model, _ = build(p, shape, classes)
    keras_layers = {layer.name: layer for layer in model.layers if type(layer).__name__ != "InputLayer"}
    assert [x.name for x in planned] == [x for x in keras_layers]
    for info in planned:
        kl = keras_layers[info.name]
        assert type(kl).__name__ == info.type, info.name
        assert tuple(kl.output.shape[1:]) == info.output_shape, info.name
        assert kl.count_params() == info.params, info.name
    assert param_counts(planned) == keras_param_counts(model)


def test_residual_blocks_each_get_a_skip_and_a_projection_where_shapes_differ() -> None:
    p = preset(CONV)
    layers = plan(p, *input_spec(p.data))
    adds = [x for x in layers if x.type == "Add"]
    assert len(adds) == 4  # two repeats of entry 0, entry 1, the dense entry
    projections = [x for x in layers if x.role == "projection"]
    # entry 0 keeps 8 channels after the first block only; entry 1 halves the size; dense 16 -> 32
    assert [(x.type, x.entry) for x in projections] == [("Conv2D", 0), ("Conv2D", 1), ("Dense", 6)]
    assert projections[1].keras_args["kernel_size"] == (1, 1) and projections[1].keras_args["strides"] == (
        2,
        2,
    )
    assert projections[0].activation == "linear"


def test_a_residual_model_adds_each_block_input(tmp_path: object) -> None:
    """The functional graph: each Add takes the block's output and its (projected) input."""
    from gradtui.build import build

    p = preset(CONV)
    model, _ = build(p, *input_spec(p.data), compile=False)
    add = model.get_layer("add")
    parents = {node.operation.name for node in add._inbound_nodes[0].parent_nodes}
    assert parents == {"conv2d_1", "activation"}  # projection of the input, the block's activation
    add_1 = model.get_layer("add_1")
    assert {n.operation.name for n in add_1._inbound_nodes[0].parent_nodes} == {"add", "activation_1"}


@pytest.mark.parametrize(
    ("body", "data", "key", "fragment"),
    [
        (
            '[[layers]]\ntype = "lstm"\nunits = 4\n',
            'dataset = "spiral"',
            "layers[0] (lstm)",
            "needs a sequence",
        ),
        (
            '[[layers]]\ntype = "lstm"\nunits = 4\n[[layers]]\ntype = "gru"\nunits = 4\n',
            'dataset = "digits"',
            "layers[1] (gru)",
            "set return_sequences = true on layers[0]",
        ),
        (
            '[[layers]]\ntype = "conv2d"\nfilters = 4\nkernel_size = 3\n[[layers]]\ntype = "max_pool"\n'
            "pool_size = 2\nrepeat = 4\n",
            'dataset = "digits"',
            "layers[1] (max_pool)",
            "shrinks a side",
        ),
        (
            '[[layers]]\ntype = "conv2d"\nfilters = 4\nkernel_size = 3\n',
            'dataset = "adding"',
            "layers[0] (conv2d)",
            "needs an image",
        ),
        (
            '[[layers]]\ntype = "conv1d"\nfilters = 4\nkernel_size = 3\n[[layers]]\ntype = "dense"\nunits = 4\n',
            'dataset = "digits"',
            "layers[1] (dense)",
            "add a flatten or global_avg_pool",
        ),
        (
            '[[layers]]\ntype = "conv2d"\nfilters = 4\nkernel_size = 3\npadding = "valid"\nresidual = true\n'
            '[[layers]]\ntype = "flatten"\n',
            'dataset = "digits"',
            "layers[0] (conv2d)",
            "use padding = 'same'",
        ),
        (
            '[[layers]]\ntype = "flatten"\n[[layers]]\ntype = "embedding"\ninput_dim = 20\noutput_dim = 2\n',
            'dataset = "digits"',
            "layers[1] (embedding)",
            "must be the first layer",
        ),
        (
            '[[layers]]\ntype = "embedding"\ninput_dim = 10\noutput_dim = 2\n[[layers]]\ntype = "flatten"\n',
            'dataset = "digits"',
            "layers[0].input_dim",
            "17",
        ),
        (
            '[[layers]]\ntype = "global_avg_pool"\n',
            'dataset = "spiral"',
            "layers[0] (global_avg_pool)",
            "takes a sequence",
        ),
    ],
)
def test_shape_errors_name_the_entry_before_tensorflow(body: str, data: str, key: str, fragment: str) -> None:
    import sys

    p = preset(
        body, data, REG_OUT if "adding" in data else OUT.replace("10", "2" if "spiral" in data else "10")
    )
    with pytest.raises(PresetError) as err:
        plan(p, *input_spec(p.data))
    assert err.value.key == key and fragment in err.value.detail, err.value.one_line()
    assert "\n" not in err.value.one_line()
    del sys  # (TensorFlow may be loaded by other tests in this process; see test_bad_input for that)


@pytest.mark.parametrize(
    ("first", "shape"),
    [
        ('type = "conv2d"\nfilters = 2\nkernel_size = 3', (8, 8, 1)),
        ('type = "conv1d"\nfilters = 2\nkernel_size = 3', (64, 1)),
        ('type = "simple_rnn"\nunits = 2', (64, 1)),
        ('type = "dropout"\n[[layers]]\ntype = "lstm"\nunits = 2', (64, 1)),
        ('type = "dense"\nunits = 2', (64,)),
    ],
)
def test_digits_takes_the_form_of_its_first_layer(first: str, shape: tuple[int, ...]) -> None:
    p = preset(
        f"[[layers]]\n{first}\n", out=OUT if "dense" in first else '[[layers]]\ntype = "flatten"\n' + OUT
    )
    assert input_spec(p.data) == (shape, 10)
    data = load_data(p.data, seed=0)
    assert data.input_shape == shape and data.x_train.max() == 1.0


def test_adding_task_is_seeded_and_sums_the_two_marked_values() -> None:
    x, y = adding(64, 20, seed=3)
    x2, y2 = adding(64, 20, seed=3)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert x.shape == (64, 20, 2) and y.shape == (64,)
    assert (x[:, :, 1].sum(axis=1) == 2).all()
    assert (x[:, :10, 1].sum(axis=1) == 1).all()  # one marker in each half
    assert np.allclose(y, (x[:, :, 0] * x[:, :, 1]).sum(axis=1))
    p = preset(RNN, 'dataset = "adding"\nlength = 20\nsamples = 100', REG_OUT)
    assert input_spec(p.data) == ((20, 2), 1)
    data = load_data(p.data, seed=0)
    assert data.regression and data.x_train.shape[1:] == (20, 2) and data.y_train.dtype == np.float32


def test_loss_defaults_and_fits_the_task() -> None:
    assert preset(RNN, 'dataset = "adding"', REG_OUT).loss == "mse"
    assert preset(RNN, 'dataset = "adding"', REG_OUT, 'loss = "mae"').loss == "mae"
    assert preset(RNN).loss == "sparse_categorical_crossentropy"
    with pytest.raises(PresetError, match="regression task; one of mse, mae") as err:
        preset(RNN, 'dataset = "adding"', REG_OUT, 'loss = "sparse_categorical_crossentropy"')
    assert err.value.key == "train.loss"
    with pytest.raises(PresetError, match="the data has classes") as err:
        preset(RNN, train='loss = "mse"')
    with pytest.raises(PresetError, match="did you mean 'mse'"):
        preset(RNN, 'dataset = "adding"', REG_OUT, 'loss = "mes"')


def test_regression_output_is_one_linear_unit() -> None:
    with pytest.raises(PresetError, match="set units = 1") as err:
        p = preset(RNN, 'dataset = "adding"', OUT)
        plan(p, *input_spec(p.data))
    assert err.value.key == "layers[5].units"
    with pytest.raises(PresetError, match="must be linear"):
        p = preset(RNN, 'dataset = "adding"', REG_OUT + 'activation = "sigmoid"\n')
        plan(p, *input_spec(p.data))


def test_regression_compiles_without_accuracy() -> None:
    from gradtui.build import build

    p = preset(RNN, 'dataset = "adding"\nlength = 12\nsamples = 64', REG_OUT)
    model, _ = build(p, *input_spec(p.data))
    data = load_data(p.data, seed=0)
    logs = model.fit(data.x_train, data.y_train, epochs=1, batch_size=32, verbose=0).history
    assert set(logs) == {"loss"}


@pytest.mark.parametrize(
    ("entry", "key", "fragment"),
    [
        ('type = "lstm"\nunits = 4\nresidual = true', "layers[0].residual", "does not apply to a lstm layer"),
        ('type = "conv2d"\nfilters = 4', "layers[0].kernel_size", "missing"),
        ('type = "conv2d"\nkernel_size = 3', "layers[0].filters", "missing"),
        ('type = "conv2d"\nfilters = 4\nkernel_size = [3]', "layers[0].kernel_size", "list of 2 integers"),
        (
            'type = "conv1d"\nfilters = 4\nkernel_size = 3\npadding = "vaild"',
            "layers[0].padding",
            "did you mean 'valid'",
        ),
        (
            'type = "gru"\nunits = 4\nbidirectonal = true',
            "layers[0].bidirectonal",
            "did you mean 'bidirectional'",
        ),
        ('type = "simple_rnn"\nunits = 4\nactivation = "prelu"', "layers[0].activation", "recurrent cell"),
        (
            'type = "simple_rnn"\nunits = 4\nreturn_sequences = 1',
            "layers[0].return_sequences",
            "true or false",
        ),
        ('type = "embedding"\ninput_dim = 4', "layers[0].output_dim", "missing"),
        ('type = "max_pool"\npool_size = 0', "layers[0].pool_size", "out of range"),
        ('type = "layer_norm"\nmomentum = 0.9', "layers[0].momentum", "allowed: type, epsilon, repeat"),
        ('type = "lstmm"', "layers[0].type", "did you mean 'lstm'"),
    ],
)
def test_new_keys_are_validated(entry: str, key: str, fragment: str) -> None:
    with pytest.raises(PresetError) as err:
        preset(f"[[layers]]\n{entry}\n")
    assert err.value.key == key and fragment in err.value.detail, err.value.one_line()


def test_new_types_round_trip_through_toml() -> None:
    for body, data, out in CASES.values():
        p = preset(body, data, out)
        again = loads(p.to_toml())
        assert again == p and again.data.form == p.data.form and again.to_toml() == p.to_toml()
    text = preset(CONV).to_toml()
    assert (
        "residual = true" in text
        and "kernel_size = [\n    3,\n    3,\n]" in text
        or "kernel_size = [3, 3]" in text
    )


def test_preflight_on_recurrent_and_deep_plain_stacks() -> None:
    p = preset(RNN, 'dataset = "adding"\nlength = 80', REG_OUT)
    layers = plan(p, *input_spec(p.data))
    msgs = [a.message for a in preflight(layers, p.train)]
    assert any("without gradient clipping" in m and "clipnorm = 1.0" in m for m in msgs)
    assert any("SimpleRNN over" in m and "lstm or gru" in m for m in msgs)
    clipped = preset(RNN, 'dataset = "adding"\nlength = 80', REG_OUT, "clipnorm = 1.0")
    msgs = [a.message for a in preflight(plan(clipped, *input_spec(clipped.data)), clipped.train)]
    assert not any("clipping" in m for m in msgs)
    deep = '[[layers]]\ntype = "dense"\nunits = 16\nactivation = "relu"\ninitializer = "he_normal"\nrepeat = 20\n'
    plain = preset(deep)
    msgs = [a.message for a in preflight(plan(plain, (64,), 10), plain.train)]
    assert any("residual = true" in m and "20 stacked layers" in m for m in msgs)
    for fixed in (
        deep + "residual = true\n",
        deep.replace('"he_normal"', '"he_normal"\nbatch_norm = "before"'),
    ):
        p = preset(fixed)
        assert preflight(plan(p, (64,), 10), p.train) == []


@pytest.mark.parametrize("name", ["conv-relu-bn", "deep-residual", "rnn-exploding"])
def test_check_prints_what_keras_summary_prints(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``gradtui check`` (text and --json) against Keras's own ``model.summary()`` of the model."""
    import json
    import re

    from typer.testing import CliRunner

    from gradtui.build import build
    from gradtui.cli import app
    from gradtui.preset import load

    p = load(name)
    model, _ = build(p, *input_spec(p.data), compile=False)
    lines: list[str] = []
    monkeypatch.setenv("COLUMNS", "200")  # rich, under Keras's summary, cuts a table to the terminal
    model.summary(print_fn=lambda line, **_: lines.append(line), line_length=200)
    summary = "\n".join(lines)
    rows = {}
    for line in summary.splitlines():
        m = re.match(r"│ (\w+) \((\w+)\)\s+│ (\([^)]*\))\s+│\s+([\d,]+) │", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3), int(m.group(4).replace(",", "")))
    assert rows, summary
    rows.pop("input", None)  # a functional model's summary lists its input too (0 parameters)
    result = CliRunner().invoke(app, ["check", name, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert set(out) >= {"name", "params", "layers", "advice"}
    shown = {
        r["name"]: (r["type"], "(" + ", ".join(str(d) for d in r["output_shape"]) + ")", r["params"])
        for r in out["layers"]
    }
    assert shown == rows
    total = int(re.search(r"Total params: ([\d,]+)", summary).group(1).replace(",", ""))
    assert out["params"]["total"] == total
    text = CliRunner().invoke(app, ["check", name])
    assert text.exit_code == 0
    assert f"Total params: {total:,}" in text.output
