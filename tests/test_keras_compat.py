"""The private parts of Keras that gradtui wraps (gradtui/keras_compat.py) exist and behave as
gradtui relies on, on the Keras version installed; pyproject.toml allows the releases
``gradtui.versions`` names, and a newer one is warned about and has its hooks checked at watch."""

from __future__ import annotations

import gc
import re
from pathlib import Path

import pytest

from gradtui import keras_compat as kc
from gradtui import versions


def test_the_installed_keras_and_tensorflow_are_tested_ones() -> None:
    keras_version, tf_version = versions.installed()
    assert versions.untested(keras_version, tf_version) is None, (
        f"Keras {keras_version} / TensorFlow {tf_version}: check keras_compat, run .ci/matrix with "
        "this pair and add it to gradtui.versions.MATRIX"
    )


def _bounds(text: str, package: str) -> tuple[str, str]:
    spec = re.search(rf'"{package}([^";\[]*)"', text).group(1)
    lower = re.search(r">=\s*([\d.]+)", spec)
    upper = re.search(r"<\s*([\d.]+)", spec)
    assert lower and upper, f"{package}{spec}: needs a lower and an upper bound"
    return lower.group(1), upper.group(1)


def test_pyproject_allows_every_tested_release_and_no_older() -> None:
    """Lower bounds: the oldest pair the matrix passes on; upper: the next major version (a
    newer minor installs, warns and has its hooks checked at each watch)."""
    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    lower, upper = _bounds(text, "keras")
    assert versions.minor(lower) == versions.KERAS_OLDEST and upper == "4", (lower, upper)
    lower, upper = _bounds(text, "tensorflow")
    assert versions.minor(lower) == versions.TF_OLDEST and upper == "3", (lower, upper)
    gpu = re.search(r'"tensorflow\[and-cuda\]([^"]*)"', text).group(1)
    assert versions.minor(re.search(r">=\s*([\d.]+)", gpu).group(1)) == versions.TF_OLDEST, gpu


def test_the_matrix_holds_the_newest_the_oldest_and_one_between() -> None:
    tfs = sorted(versions.minor(tf) for tf, _ in versions.MATRIX)
    assert len(versions.MATRIX) >= 3 and len(set(tfs)) == len(tfs)
    assert versions.minor(versions.MATRIX[0][0]) == versions.TF_NEWEST
    assert versions.minor(versions.MATRIX[0][1]) == versions.KERAS_NEWEST
    assert versions.minor(versions.MATRIX[-1][0]) == versions.TF_OLDEST
    assert versions.minor(versions.MATRIX[-1][1]) == versions.KERAS_OLDEST


def test_the_readme_shows_a_passing_run_of_the_matrix() -> None:
    """Its table is pasted from ``.ci/matrix`` (which leaves this test out: it is about the README)."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for tf, keras in versions.MATRIX:
        assert re.search(rf"\| {re.escape(tf)} \| {re.escape(keras)} \| passed \|", readme), (tf, keras)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop"])
def test_optimizers_have_the_wrapped_methods(name: str) -> None:
    import keras

    opt = getattr(keras.optimizers, name)()
    assert kc.has_hooks(opt)
    assert callable(getattr(opt, kc.ALL_REDUCE))
    wrapped = keras.optimizers.LossScaleOptimizer(opt)
    assert kc.inner_optimizer(wrapped) is opt


def test_the_training_flag_and_sublayers() -> None:
    import keras
    import numpy as np

    seen: list[bool] = []

    class Probe(keras.layers.Layer):
        def call(self, x):
            seen.append(kc.training_call(self))
            return x

    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), Probe()], name="inner")
    x = np.ones((1, 3), "float32")
    seen.clear()  # building the model called it symbolically
    inner(x, training=True)
    inner(x, training=False)
    inner(x)
    assert seen == [True, False, False]
    assert [type(s).__name__ for s in kc.sublayers(inner)] == ["Dense", "Probe"]


def test_wrap_method_is_per_instance_and_restored() -> None:
    import keras

    a, b = keras.optimizers.SGD(), keras.optimizers.SGD()
    kc.wrap_method(a, "scale_loss", lambda orig: lambda loss: orig(loss) * 0 + 7)
    assert a.scale_loss(1.0) == 7 and b.scale_loss(1.0) == 1.0
    kc.unwrap_method(a, "scale_loss")
    assert a.scale_loss(1.0) == 1.0


def test_functional_cond_stays_one_if_node_and_takes_either_branch() -> None:
    """TensorFlow lowers a tf.function's cond to Switch/Merge unless the If op says not to
    (the private ``_lower_using_switch_merge`` attribute): the recorder relies on the If
    staying functional and on both branches still giving their values."""
    import tensorflow as tf

    x = tf.Variable([1.0, 2.0, 3.0])

    @tf.function
    def f(pred: tf.Tensor) -> tf.Tensor:
        return kc.functional_cond(pred, lambda: tf.reduce_sum(x * x)[None], lambda: tf.fill([1], -1.0))

    assert f(tf.constant(True)).numpy().tolist() == [14.0]
    assert f(tf.constant(False)).numpy().tolist() == [-1.0]
    graph = f.get_concrete_function(tf.TensorSpec([], tf.bool)).graph
    ifs = [op for op in graph.get_operations() if op.type in ("If", "StatelessIf")]
    assert len(ifs) == 1
    assert ifs[0].get_attr("_lower_using_switch_merge") is False
    # eagerly it is a plain cond
    assert kc.functional_cond(tf.constant(True), lambda: tf.constant(1), lambda: tf.constant(2)).numpy() == 1


def test_discarded_trace_tells_the_trace_tensorflow_never_runs() -> None:
    """A tf.function's first trace that creates variables is traced again and never run: the
    recorder builds no statistics into it (TensorFlow's variable creator stack and the closure
    of its ``variable_capturing_scope``)."""
    import tensorflow as tf

    seen: list[bool] = []
    made: list[tf.Variable] = []

    @tf.function
    def creates(x: tf.Tensor) -> tf.Tensor:
        before = kc.discarded_trace()
        if not made:
            made.append(tf.Variable(1.0))
        seen.append((before, kc.discarded_trace()))
        return x * made[0]

    assert float(creates(tf.constant(2.0))) == 2.0
    # first trace: nothing created yet, then a variable; the second trace creates none
    assert seen == [(False, True), (False, False)]

    seen.clear()

    @tf.function
    def plain(x: tf.Tensor) -> tf.Tensor:
        seen.append((kc.discarded_trace(), kc.discarded_trace()))
        return x + 1.0

    assert float(plain(tf.constant(1.0))) == 2.0
    assert seen == [(False, False)]  # traced once, and run
    assert kc.discarded_trace() is False  # eagerly


def _small_model():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, activation="tanh"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    return model


@pytest.mark.parametrize(
    ("keras_version", "tf_version", "said"),
    [
        ("3.16.0", "2.21.0", ["Keras 3.16.0 is newer than the newest tested (3.15)"]),
        ("4.0.0.dev2027", "2.21.0", ["Keras 4.0.0.dev2027 is newer"]),
        ("3.15.1", "2.22.0rc1", ["TensorFlow 2.22.0rc1 is newer than the newest tested (2.21)"]),
        ("3.9.2", "2.15.1", ["Keras 3.9.2 is older", "TensorFlow 2.15.1 is older"]),
        ("3.15.2", "2.21.1", []),
        ("3.10.0", "2.16.2", []),
    ],
)
def test_untested_names_what_is_outside_the_tested_releases(keras_version, tf_version, said) -> None:
    why = versions.untested(keras_version, tf_version)
    assert (why is None) == (not said)
    for part in said:
        assert part in why


def test_a_newer_keras_warns_once_naming_the_tested_releases_and_still_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import warnings

    import keras
    import numpy as np

    import gradtui
    from gradtui.runlog import read_run

    monkeypatch.setattr(keras, "__version__", "3.99.0")
    monkeypatch.setattr(versions, "_warned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = _small_model()
        gradtui.watch(first, out=tmp_path / "one")
        gradtui.watch(_small_model(), out=tmp_path / "two")
        x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
        first.fit(x, x[:, :1], epochs=1, batch_size=8, verbose=0)
    said = [str(w.message) for w in caught if issubclass(w.category, versions.UntestedVersionWarning)]
    assert len(said) == 1, said
    for part in (
        "Keras 3.99.0 is newer than the newest tested (3.15)",
        "Keras 3.10-3.15",
        "TensorFlow 2.16-2.21",
    ):
        assert part in said[0]
    run = read_run(tmp_path / "one")  # every hook there: recorded as on a tested release
    assert run.status == "completed" and len(run.records) == 4


def _remove(monkeypatch: pytest.MonkeyPatch, obj: object, name: str) -> None:
    """Delete ``name`` from every class that defines it, as a Keras release without it would."""
    owners = [c for c in type(obj).__mro__ if name in vars(c)]
    assert owners, name
    for owner in owners:
        monkeypatch.delattr(owner, name)


@pytest.mark.parametrize(
    ("where", "name", "said"),
    [
        ("optimizer", "_backend_apply_gradients", "Adam._backend_apply_gradients"),
        ("optimizer", "assign_add", "Adam.assign_add"),
        ("model", "_flatten_layers", "Layer._flatten_layers"),
        ("call_context", "get_value", "CallContext.get_value"),
    ],
)
def test_a_missing_hook_is_a_clear_error_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, name: str, said: str
) -> None:
    from keras.src.layers.layer import CallContext

    import gradtui

    model = _small_model()
    target = {"optimizer": model.optimizer, "model": model, "call_context": CallContext(model)}[where]
    # a run directory of the user's, to be overwritten: it must survive the refusal
    out = tmp_path / "run"
    out.mkdir()
    (out / "stats.jsonl").write_text('{"step": 1}\n')
    _remove(monkeypatch, target, name)
    with pytest.raises(versions.MissingHookError) as err:
        gradtui.watch(model, out=out, overwrite=True)
    message = str(err.value)
    assert said in message and "tested with Keras 3.10-3.15 and TensorFlow 2.16-2.21" in message
    assert (out / "stats.jsonl").read_text() == '{"step": 1}\n'
    assert sorted(p.name for p in out.iterdir()) == ["stats.jsonl"]


def test_a_cli_run_names_a_missing_hook_and_records_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keras
    from typer.testing import CliRunner

    from gradtui.cli import app
    from gradtui.runlog import read_run

    _remove(monkeypatch, keras.optimizers.SGD(), "_backend_apply_gradients")  # the preset's optimizer
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", "he-relu", "--max-steps", "2", "--out", str(out), "--quiet"])
    assert result.exit_code == 1, result.output
    assert "failed after 0 steps" in result.output and "Traceback" not in result.output
    assert (
        "lacks SGD._backend_apply_gradients (gradtui wraps it; tested with Keras 3.10-3.15" in result.output
    )
    run = read_run(out)
    assert run.status == "failed" and run.records == []


def test_attention_tap_sees_the_query_and_key_and_gives_the_class_back() -> None:
    """``MultiHeadAttention._compute_attention`` (wrapped on the class, dispatching per instance)
    receives the projected query (B, T, N, H) and key, the mask and the causal flag; its
    ``_dot_product_equation``/``_attention_axes`` exist; untapped, the class has its own method."""
    import keras
    import numpy as np

    gc.collect()  # models of earlier tests whose watch was never closed
    cls = keras.layers.MultiHeadAttention
    own = cls.__dict__[kc.ATTENTION]
    own = getattr(own, "__wrapped__", own)
    before = kc.attention_tapped()  # another live watch of an attention layer keeps the wrap
    tapped, other = cls(num_heads=2, key_dim=4), cls(num_heads=2, key_dim=4)
    x = np.random.default_rng(0).random((3, 5, 6)).astype("float32")
    tapped(x, x), other(x, x)  # built
    seen: list[tuple] = []
    owner = object()
    kc.tap_attention(tapped, lambda q, k, mask, causal: seen.append((q.shape, k.shape, mask, causal)), owner)
    try:
        assert kc.attention_tapped() and cls.__dict__[kc.ATTENTION] is not own
        tapped(x, x, use_causal_mask=True)
        other(x, x)
        assert seen == [((3, 5, 2, 4), (3, 5, 2, 4), None, True)]
        tapped(x, x, attention_mask=np.ones((3, 5, 5), bool))
        assert tuple(seen[-1][2].shape) == (3, 5, 5) and seen[-1][3] is False
        equation, axes = kc.attention_equation(tapped)
        assert isinstance(equation, str) and axes == 1
        assert kc.attention_query(tapped) is tapped.query_dense
        assert kc.attention_scale(tapped) == 0.5
    finally:
        kc.untap_attention(tapped, owner)
    assert kc.attention_tapped() is before
    assert before or cls.__dict__[kc.ATTENTION] is own
    assert "__gradtui_attention_taps" not in vars(tapped)
