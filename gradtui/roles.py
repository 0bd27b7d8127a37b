"""The role of a row in its model, from its :class:`~gradtui.stack.LayerInfo`: what a layer
does decides which remedies apply to it (issue 22).

Relu with he_normal or batch_norm is advice for a hidden dense or convolutional layer; an
embedding is a lookup table and a normalization a per-feature scale, neither has an activation
or an initializer to match; an attention projection's gradient fades when its softmax
saturates, which is ``attention_logit_growth``'s to tell, not ``vanishing``'s. Headless and
TensorFlow-free: the roles are read from the layer's class name, its key (a watched user
model's row key is its path joined with ``/``; Keras's ``MultiHeadAttention`` names its
projections ``query``, ``key``, ``value`` and ``attention_output``) and what the builder knows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gradtui.stack import LayerInfo

HIDDEN = "hidden"
OUTPUT = "output"
PROJECTION = "residual_projection"
RECURRENT = "recurrent"
EMBEDDING = "embedding"
QUERY = "attention_query"
KEY = "attention_key"
VALUE = "attention_value"
ATTENTION_OUTPUT = "attention_output"
NORMALIZATION = "normalization"
ACTIVATION = "activation"
OTHER = "other"

#: the four projections of an attention layer
ATTENTION = (QUERY, KEY, VALUE, ATTENTION_OUTPUT)
#: the roles relu/he_normal, an initializer matched to an activation or batch_norm never apply to
NO_ACTIVATION_ADVICE = (EMBEDDING, *ATTENTION, NORMALIZATION, ACTIVATION)

#: Keras's names of a MultiHeadAttention's sublayers, by role
_ATTENTION_NAMES = {"query": QUERY, "key": KEY, "value": VALUE, "attention_output": ATTENTION_OUTPUT}
_NORMALIZATION_TYPES = (
    "BatchNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "UnitNormalization",
    "RMSNormalization",
    "SpectralNormalization",
)
_ACTIVATION_TYPES = ("PReLU", "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax")
_RECURRENT_TYPES = ("SimpleRNN", "LSTM", "GRU", "Bidirectional", "RNN", "ConvLSTM1D", "ConvLSTM2D")
_PROJECTION_TYPES = ("Dense", "EinsumDense")


def attention_role(key: str, type_: str = "EinsumDense") -> str | None:
    """The attention role of a row by its key (``.../query``), or ``None``."""
    if type_ not in _PROJECTION_TYPES:
        return None
    return _ATTENTION_NAMES.get(key.rsplit("/", 1)[-1])


def role(info: LayerInfo) -> str:
    """The role of ``info``'s row: one of the constants of this module."""
    t = info.type
    if t in _NORMALIZATION_TYPES:
        return NORMALIZATION
    if t in _ACTIVATION_TYPES:
        return ACTIVATION
    attention = attention_role(info.name, t)
    if attention is not None:
        return attention
    if getattr(info, "role", "") in ATTENTION:  # the builder's own parts say so
        return info.role
    if "Embedding" in t:
        return EMBEDDING
    if t in _RECURRENT_TYPES or (info.inner or "") in _RECURRENT_TYPES:
        return RECURRENT
    if info.is_output:
        return OUTPUT
    if getattr(info, "role", "") == "projection":
        return PROJECTION
    if t in _PROJECTION_TYPES or t.startswith(("Conv", "DepthwiseConv", "SeparableConv")):
        return HIDDEN
    return OTHER


def role_of(key: str, info: LayerInfo | None) -> str:
    """The role of the row ``key``; a row the model's description does not know is judged by
    its key alone (an attention projection) or taken as hidden."""
    if info is not None:
        return role(info)
    return attention_role(key) or HIDDEN
