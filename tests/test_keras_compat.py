"""The private parts of Keras that gradtui wraps (gradtui/keras_compat.py) exist and behave as
gradtui relies on, on the Keras version installed; pyproject.toml allows only versions listed
in ``keras_compat.TESTED``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gradtui import keras_compat as kc


def test_the_installed_keras_is_a_tested_one() -> None:
    import keras

    minor = ".".join(keras.__version__.split(".")[:2])
    assert minor in kc.TESTED, f"Keras {keras.__version__}: check keras_compat and add it to TESTED"


def test_pyproject_allows_only_tested_keras_versions() -> None:
    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    spec = re.search(r'"keras([^"]*)"', text).group(1)
    assert ">=3." in spec and "<" in spec, spec
    upper = re.search(r"<\s*3\.(\d+)", spec)
    newest = max(int(v.split(".")[1]) for v in kc.TESTED)
    assert upper is not None and int(upper.group(1)) == newest + 1, spec


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
