"""Attention statistics (``attn_logit_max``, ``attn_entropy`` on a MultiHeadAttention's query row)
and ``logz_mean`` (on a logits output's row), recorded by gradtui.watch during a user's own fit:
checked against an independent NumPy computation from the layer's own query and key projections
on the same batch, on both of Keras's attention paths, under XLA, at every = 2, with a mask, for
a qk-norm subclass and under mixed precision; the training itself unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import gradtui
from gradtui.runlog import read_run

T, V, HEADS, KEY_DIM, CLASSES, N = 10, 40, 2, 8, 5, 48


def _layers():
    import keras

    class Block(keras.layers.Layer):
        """A user's block holding the attention (so its rows are nested: ``block/attention/...``)."""

        def __init__(self, attention, causal: bool, **kwargs) -> None:
            super().__init__(**kwargs)
            self.attention = attention
            self.causal = causal

        def call(self, x, mask=None):
            kwargs = {"attention_mask": mask} if mask is not None else {"use_causal_mask": self.causal}
            return x + self.attention(x, x, **kwargs)

    class QKNormAttention(keras.layers.MultiHeadAttention):
        """LayerNorm on q and k: what the softmax sees are the normalised ones."""

        def build(self, query_shape, value_shape, key_shape=None):
            super().build(query_shape, value_shape, key_shape)
            self.q_norm = keras.layers.LayerNormalization(name="q_norm")
            self.k_norm = keras.layers.LayerNormalization(name="k_norm")
            self.q_norm.build((None, None, self.num_heads, self.key_dim))
            self.k_norm.build((None, None, self.num_heads, self.key_dim))

        def _compute_attention(self, query, key, value, *args, **kwargs):
            return super()._compute_attention(self.q_norm(query), self.k_norm(key), value, *args, **kwargs)

    return Block, QKNormAttention


def make_model(
    *,
    causal: bool = True,
    dropout: float = 0.0,
    qk_norm: bool = False,
    jit: bool = False,
    masked: bool = False,
):
    import keras

    Block, QKNormAttention = _layers()
    keras.utils.set_random_seed(3)
    cls = QKNormAttention if qk_norm else keras.layers.MultiHeadAttention
    attention = cls(num_heads=HEADS, key_dim=KEY_DIM, dropout=dropout, name="attention")
    tokens = keras.Input((T,), dtype="int32")
    x = keras.layers.Embedding(V, 16, name="embedding")(tokens)
    if masked:
        mask = keras.Input((T, T), dtype="bool")
        x = Block(attention, causal, name="block")(x, mask)
        inputs = [tokens, mask]
    else:
        x = Block(attention, causal, name="block")(x)
        inputs = tokens
    x = keras.layers.GlobalAveragePooling1D()(x)
    out = keras.layers.Dense(CLASSES, name="logits")(x)
    model = keras.Model(inputs, out)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit,
    )
    return model


def data(masked: bool = False):
    rng = np.random.default_rng(0)
    x = rng.integers(0, V, (N, T)).astype("int32")
    y = rng.integers(0, CLASSES, N)
    if not masked:
        return x, y
    mask = rng.random((N, T, T)) < 0.6
    mask[:, :, 0] = True  # every query sees a position
    mask[:, 3, :] = False  # ...but query 3 sees none: it is left out of the entropy
    return [x, mask], y


def expected(model, x, mask=None, causal=True):
    """The two numbers from the layer's own projections, in NumPy (before any update)."""
    attention = model.get_layer("block").attention
    tokens = x[0] if isinstance(x, list) else x
    e = model.get_layer("embedding")(tokens)
    q = attention.query_dense(e)
    k = attention.key_dense(e)
    if hasattr(attention, "q_norm"):
        q, k = attention.q_norm(q), attention.k_norm(k)
    q, k = np.asarray(q, np.float64), np.asarray(k, np.float64)
    logits = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(KEY_DIM)
    valid = np.ones(logits.shape, bool)
    if mask is not None:
        valid &= mask[:, None]
    elif causal:
        valid &= np.tril(np.ones((T, T), bool))
    top = np.abs(np.where(valid, logits, 0.0)).max()
    z = np.where(valid, logits, -np.inf)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.exp(z - z.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(-1)  # (b, n, t)
    seen = valid.any(-1)
    per_head = np.where(seen, h, 0.0).sum((0, 2)) / seen.sum((0, 2))
    return top, per_head.min()


def recorded(run_dir: Path, key: str = "block/attention/query") -> list[dict]:
    return [r["layers"][key] | {"step": r["step"]} for r in read_run(run_dir).records]


@pytest.mark.parametrize(
    "case",
    [
        {},  # ops.dot_product_attention with is_causal: the logits are never materialised
        {"dropout": 0.3},  # the explicit scores and _masked_softmax
        {"jit": True},
        {"every": 2},
        {"masked": True, "causal": False},
        {"qk_norm": True},
    ],
    ids=["dot-product-path", "explicit-path", "jit_compile", "every2", "attention-mask", "qk-norm-subclass"],
)
def test_recorded_attention_statistics_match_the_layers_own_query_and_key(tmp_path: Path, case: dict) -> None:
    every = case.pop("every", 1)
    model = make_model(**case)
    x, y = data(case.get("masked", False))
    mask = x[1] if isinstance(x, list) else None
    top, entropy = expected(model, x, mask, case.get("causal", True))
    attention = model.get_layer("block").attention
    calls = []  # which of Keras's paths the layer takes
    attention._masked_softmax = lambda *a, f=attention._masked_softmax: calls.append(1) or f(*a)
    monitor = gradtui.watch(model, out=tmp_path / "run", every=every)
    # the first step sees the whole set with the initial weights: the same batch as ``expected``
    model.fit(x, y, batch_size=N, epochs=3, shuffle=False, verbose=0)
    monitor.close()
    assert bool(calls) == (case.get("dropout", 0.0) > 0)
    rows = recorded(tmp_path / "run")
    assert [r["step"] for r in rows] == list(range(0, 3, every))
    first = rows[0]
    assert first["attn_logit_max"] == pytest.approx(top, rel=1e-4)
    assert first["attn_entropy"] == pytest.approx(entropy, rel=1e-4, abs=1e-5)
    for r in rows:
        assert 0.0 <= r["attn_entropy"] <= np.log(T) + 1e-4
    # the statistics are the query projection's only
    others = read_run(tmp_path / "run").records[0]["layers"]
    assert [k for k, v in others.items() if "attn_logit_max" in v] == ["block/attention/query"]


def test_the_logits_grow_and_the_entropy_falls_with_the_query_kernel(tmp_path: Path) -> None:
    x, y = data()
    got = []
    for scale in (1.0, 8.0):
        model = make_model(causal=False)
        q = model.get_layer("block").attention.query_dense
        q.kernel.assign(q.kernel * scale)
        monitor = gradtui.watch(model, out=tmp_path / f"run{scale}")
        model.fit(x, y, batch_size=N, epochs=1, verbose=0)
        monitor.close()
        got.append(recorded(tmp_path / f"run{scale}")[0])
    assert got[1]["attn_logit_max"] == pytest.approx(8.0 * got[0]["attn_logit_max"], rel=1e-3)
    assert got[1]["attn_entropy"] < got[0]["attn_entropy"] <= np.log(T) + 1e-4


def test_logz_mean_is_the_mean_logsumexp_of_the_output_logits(tmp_path: Path) -> None:
    model = make_model()
    x, y = data()
    z = np.asarray(model(x, training=True), np.float64)
    want = np.mean(np.log(np.exp(z).sum(-1)))
    monitor = gradtui.watch(model, out=tmp_path / "run")
    model.fit(x, y, batch_size=N, epochs=2, shuffle=False, verbose=0)
    monitor.close()
    rows = recorded(tmp_path / "run", "logits")
    assert rows[0]["logz_mean"] == pytest.approx(want, rel=1e-5)
    assert np.isfinite(rows[1]["logz_mean"]) and rows[1]["logz_mean"] != rows[0]["logz_mean"]


def test_no_logz_on_a_softmax_or_a_regression_output(tmp_path: Path) -> None:
    import keras

    from gradtui.rows import rows_of

    for activation, loss, has in (
        (None, "mse", False),
        ("softmax", "sparse_categorical_crossentropy", False),
    ):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation=activation)])
        model.compile("sgd", loss)
        assert rows_of(model)[-1].logits is has
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile("sgd", keras.losses.CategoricalCrossentropy(from_logits=True))
    assert rows_of(model)[-1].logits is True


def test_the_training_is_the_same_with_and_without_watch(tmp_path: Path) -> None:
    x, y = data()
    plain, watched = make_model(), make_model()
    monitor = gradtui.watch(watched, out=tmp_path / "run")
    h_plain = plain.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    h_watched = watched.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    monitor.close()
    np.testing.assert_allclose(h_plain.history["loss"], h_watched.history["loss"], rtol=1e-6)
    for a, b in zip(plain.get_weights(), watched.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_mixed_precision_records_float32_statistics(tmp_path: Path) -> None:
    import keras

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = make_model()
        x, y = data()
        top, entropy = expected(model, x)
        monitor = gradtui.watch(model, out=tmp_path / "run")
        model.fit(x, y, batch_size=N, epochs=1, verbose=0)
        monitor.close()
    finally:
        keras.config.set_dtype_policy(before)
    first = recorded(tmp_path / "run")[0]
    assert first["attn_logit_max"] == pytest.approx(top, rel=1e-2)
    assert first["attn_entropy"] == pytest.approx(entropy, rel=1e-2)
