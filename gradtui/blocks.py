"""The Keras layers and loss gradtui defines for the builder: a transformer block, its
qk-normalized attention, a learned position embedding, and cross-entropy with a z-loss.

Imported only by :mod:`gradtui.build` (it imports Keras at import time). Every layer is a plain
Keras layer built from Keras's own parts, so ``gradtui.watch`` and the recorder see it as they
see a user's: a row per attention projection (``query``, ``key``, ``value``,
``attention_output``), per feed-forward ``Dense`` and per ``LayerNormalization``.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

#: the LayerNormalization epsilon of a block (transformers use 1e-5 or 1e-6; Keras's 1e-3 is
#: meant for BatchNorm-sized activations)
NORM_EPSILON = 1e-5


@keras.saving.register_keras_serializable(package="gradtui")
class QKNormAttention(keras.layers.MultiHeadAttention):
    """``MultiHeadAttention`` with LayerNorm on its queries and keys (qk-layernorm).

    Dehghani et al. (2023) and Wortsman et al. (2023): normalizing each head's query and key
    vectors before their dot product bounds the attention logits, which otherwise grow without
    bound at high learning rates until the attention collapses to one-hot.

    The projections are Keras's own (``query_dense``, ``key_dense``...). Each projected query
    and key vector of a head (its last axis, ``key_dim``) goes through a ``LayerNormalization``
    (``query_norm``, ``key_norm``, one scale and offset shared by the heads) in
    :meth:`_compute_attention`, the method Keras documents for overriding, which then hands the
    normalized tensors to ``MultiHeadAttention._compute_attention``: the logits the layer
    computes, ``q·k/√key_dim``, are those of the normalized vectors, on Keras's own code path.

    Args:
        norm_epsilon (float): the epsilon of the two LayerNormalizations. Defaults to 1e-5.
        **kwargs: ``MultiHeadAttention``'s arguments.
    """

    def __init__(self, *args: Any, norm_epsilon: float = NORM_EPSILON, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.norm_epsilon = norm_epsilon

    def build(self, query_shape: Any, value_shape: Any, key_shape: Any = None) -> None:
        """Build Keras's projections, then the two norms on their per-head vectors."""
        super().build(query_shape, value_shape, key_shape)
        head = (None, None, self.num_heads, self.key_dim)
        self.query_norm = keras.layers.LayerNormalization(
            epsilon=self.norm_epsilon, dtype=self.dtype_policy, name="query_norm"
        )
        self.query_norm.build(head)
        self.key_norm = keras.layers.LayerNormalization(
            epsilon=self.norm_epsilon, dtype=self.dtype_policy, name="key_norm"
        )
        self.key_norm.build(head)

    def _compute_attention(
        self,
        query: Any,
        key: Any,
        value: Any,
        attention_mask: Any = None,
        training: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        return super()._compute_attention(
            self.query_norm(query), self.key_norm(key), value, attention_mask, training, *args, **kwargs
        )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "norm_epsilon": self.norm_epsilon}


@keras.saving.register_keras_serializable(package="gradtui")
class TransformerBlock(keras.layers.Layer):
    """One transformer block: self-attention and a feed-forward part, each with its residual
    connection and LayerNormalization.

    ``norm = "pre"`` (the default, GPT-2 and later): ``x + attention(norm(x))``, then
    ``x + ffn(norm(x))``. ``norm = "post"`` (Vaswani et al. 2017): ``norm(x + attention(x))``,
    then ``norm(x + ffn(x))``. The feed-forward part is ``Dense(ffn_units, activation)`` then a
    linear ``Dense`` back to the input's width.

    Its sublayers, in the order the data passes them (pre-norm), are named ``attention_norm``,
    ``multi_head_attention`` (``query``, ``key``, ``value``, ``attention_output``, and with
    ``qk_norm`` ``query_norm``, ``key_norm``), ``ffn_norm``, ``ffn_dense``, ``ffn_output``.

    Args:
        heads (int): attention heads.
        key_dim (int): size of each head's query and key (and value).
        ffn_units (int): units of the feed-forward part's hidden Dense.
        norm (str): ``"pre"`` or ``"post"``. Defaults to ``"pre"``.
        qk_norm (bool): LayerNorm on queries and keys (:class:`QKNormAttention`). Defaults to False.
        causal (bool): each position attends only to itself and the positions before it.
            Defaults to False.
        dropout (float): dropout on the output of each residual branch. Defaults to 0.
        activation (str): the feed-forward part's activation. Defaults to ``"gelu"``.

    Example:
        >>> block = TransformerBlock(heads=4, key_dim=32, ffn_units=512, causal=True)
        >>> y = block(keras.ops.zeros((2, 64, 128)))  # (batch, steps, width) in and out
    """

    def __init__(
        self,
        heads: int,
        key_dim: int,
        ffn_units: int,
        norm: str = "pre",
        qk_norm: bool = False,
        causal: bool = False,
        dropout: float = 0.0,
        activation: str = "gelu",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.heads, self.key_dim, self.ffn_units = heads, key_dim, ffn_units
        self.norm, self.qk_norm, self.causal = norm, qk_norm, causal
        self.dropout, self.activation = dropout, activation

    def build(self, input_shape: Any) -> None:
        """Make and build every sublayer for an input of shape ``(batch, steps, width)``.

        They are made here, in the order the data passes them, which is the order of their rows.
        """
        policy = self.dtype_policy
        width = int(input_shape[-1])
        cls = QKNormAttention if self.qk_norm else keras.layers.MultiHeadAttention

        def attention() -> None:
            self.attention = cls(self.heads, self.key_dim, dtype=policy, name="multi_head_attention")
            self.attention.build(input_shape, input_shape)

        def norm(name: str) -> Any:
            layer = keras.layers.LayerNormalization(epsilon=NORM_EPSILON, dtype=policy, name=name)
            layer.build(input_shape)
            return layer

        if self.norm == "pre":
            self.attention_norm = norm("attention_norm")
            attention()
            self.ffn_norm = norm("ffn_norm")
        else:
            attention()
            self.attention_norm = norm("attention_norm")
        self.ffn_dense = keras.layers.Dense(
            self.ffn_units, activation=self.activation, dtype=policy, name="ffn_dense"
        )
        self.ffn_dense.build(input_shape)
        self.ffn_output = keras.layers.Dense(width, dtype=policy, name="ffn_output")
        self.ffn_output.build((*input_shape[:-1], self.ffn_units))
        if self.norm == "post":
            self.ffn_norm = norm("ffn_norm")
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=policy, name="dropout")

    def call(self, x: Any, training: Any = None) -> Any:
        if self.norm == "pre":
            h = self.attention_norm(x)
            h = self.attention(h, h, use_causal_mask=self.causal, training=training)
            x = x + self.dropout_layer(h, training=training)
            h = self.ffn_output(self.ffn_dense(self.ffn_norm(x)))
            return x + self.dropout_layer(h, training=training)
        h = self.attention(x, x, use_causal_mask=self.causal, training=training)
        x = self.attention_norm(x + self.dropout_layer(h, training=training))
        h = self.ffn_output(self.ffn_dense(x))
        return self.ffn_norm(x + self.dropout_layer(h, training=training))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "heads": self.heads,
            "key_dim": self.key_dim,
            "ffn_units": self.ffn_units,
            "norm": self.norm,
            "qk_norm": self.qk_norm,
            "causal": self.causal,
            "dropout": self.dropout,
            "activation": self.activation,
        }


@keras.saving.register_keras_serializable(package="gradtui")
class PositionEmbedding(keras.layers.Layer):
    """A learned position embedding added to its input: ``x + P[:steps]``.

    Args:
        length (int): the longest sequence it takes (its table's rows).
    """

    def __init__(self, length: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.length = length

    def build(self, input_shape: Any) -> None:
        """One row of ``width`` learned values per position."""
        self.embeddings = self.add_weight(
            shape=(self.length, int(input_shape[-1])),
            initializer=keras.initializers.RandomUniform(-0.05, 0.05),
            name="embeddings",
        )

    def call(self, x: Any) -> Any:
        steps = ops.shape(x)[1]
        return x + ops.cast(self.embeddings[:steps], x.dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "length": self.length}


@keras.saving.register_keras_serializable(package="gradtui")
class ZLossCrossentropy(keras.losses.Loss):
    """Sparse categorical cross-entropy on logits plus a z-loss (PaLM, Chowdhery et al. 2022):
    ``z_loss * log(Z)²`` per prediction, with ``log Z = logsumexp(logits)``, which keeps the
    output logits' log-partition near 0. The mean over the batch (and positions) of the sum is
    the loss: cross-entropy + ``z_loss`` · mean(log Z²).

    Args:
        z_loss (float): the coefficient (1e-4 in PaLM).
    """

    def __init__(self, z_loss: float, name: str = "sparse_categorical_crossentropy", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.z_loss = float(z_loss)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        ce = keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
        log_z = ops.logsumexp(y_pred, axis=-1)
        return ce + self.z_loss * ops.square(log_z)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "z_loss": self.z_loss}


def attention_logits(layer: Any, x: Any) -> Any:
    """The attention logits ``q·k/√key_dim`` a self-attention layer computes for input ``x``,
    shape ``(batch, heads, steps, steps)``, before any mask: from its own query and key
    projections (Keras's public ``query_dense``/``key_dense``), normalized as the layer
    normalizes them (:class:`QKNormAttention`). A probe for tests and benchmarks."""
    q = layer.query_dense(x)
    k = layer.key_dense(x)
    if isinstance(layer, QKNormAttention):
        q, k = layer.query_norm(q), layer.key_norm(k)
    return ops.einsum("btnh,bsnh->bnts", q, k) / ops.sqrt(ops.cast(layer.key_dim, q.dtype))
