"""Every private part of Keras gradtui relies on, in one place.

gradtui records where every Keras training passes, whoever wrote the step: the optimizer's
application of the gradients (after loss-scale unscaling, before clipping) and the layers'
``call``. Keras has no public hook for either, so this module names the private methods it
wraps, per instance, and nothing else in gradtui touches ``keras.src`` or an underscore
attribute of a Keras object. ``tests/test_keras_compat.py`` checks each of them on the Keras
versions that ``pyproject.toml`` allows (``gradtui.versions``; ``.ci/matrix`` runs it on each).

What is wrapped, and why there:

- ``BaseOptimizer._backend_apply_gradients(grads, variables)``: called by ``apply`` (so by
  ``apply_gradients``, ``fit``'s step, a custom ``train_step`` and a ``GradientTape`` loop)
  with the gradients already divided by ``loss_scale_factor``; a ``LossScaleOptimizer`` calls
  its inner optimizer's ``apply`` with unscaled gradients and only on steps it does not skip.
  Clipping, weight decay and the update happen inside it.
- ``TFOptimizer._all_reduce_sum_gradients(grads_and_vars)``: where ``tf.distribute`` sums the
  replicas' gradients (inside ``_backend_update_step``); its result is the aggregated gradient.
- ``TFOptimizer.assign/assign_add/assign_sub(variable, value)``: every change an optimizer
  makes to a weight goes through them; their ``value`` is the update itself.
- ``BaseOptimizer._iterations``, ``_accumulated_gradients`` and ``_get_variable_index``: under
  ``gradient_accumulation_steps``, which application updates the weights and with what mean
  gradient (see :func:`accumulation`).
- ``Layer._get_call_context().training``: whether a layer's ``call`` is part of a training
  forward pass.
- ``Layer._flatten_layers(include_self=False, recursive=False)``: a layer's direct sublayers.
- ``Layer._build_shapes_dict``: the input shape a layer was built with, where it has no
  symbolic input of its own (the two layers inside a ``Bidirectional``).
- TensorFlow's ``tf.__internal__.distribute.interim.maybe_merge_call``: what Keras's optimizer
  uses to update variables from a replica context, merged or not as the strategy wants.
- TensorFlow's ``Graph._variable_creator_stack`` and the closure of ``tf.function``'s
  ``variable_capturing_scope``: whether the trace being built has created variables, in which
  case TensorFlow traces the function again and never runs this trace (see
  :func:`discarded_trace`).
- ``MultiHeadAttention._compute_attention(query, key, value, attention_mask, training, ...,
  use_causal_mask)``: where the layer turns its projected query and key into attention, after
  whatever a subclass does to them (a qk-norm that overrides it and calls ``super()``). Its
  query/key/mask are what the softmax's logits are made of, on either of Keras's paths (the
  explicit scores, or ``ops.dot_product_attention``, which never materialises them). Wrapped
  on the class (a subclass's ``super()`` call does not pass through an instance attribute),
  dispatching to the instances tapped (see :func:`tap_attention`); the layer's
  ``_dot_product_equation`` and ``_attention_axes`` say how to contract them for other ranks
  than ``(B, T, N, H)``.
- TensorFlow's ``_lower_using_switch_merge`` attribute of an ``If`` op (set with the private
  ``Operation._set_attr``): whether the runtime turns a ``tf.cond`` into ``Switch``/``Merge``
  nodes (see :func:`functional_cond`).
"""

from __future__ import annotations

import inspect
import math
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# the Keras/TensorFlow releases these are checked on: gradtui.versions (MATRIX, .ci/matrix)

#: optimizer methods wrapped per instance while a watch is attached
APPLY = "_backend_apply_gradients"
ALL_REDUCE = "_all_reduce_sum_gradients"
ASSIGNS = ("assign", "assign_add", "assign_sub")


def installed_versions() -> tuple[str, str]:
    """The installed Keras and TensorFlow versions, whose internals this module names
    (:mod:`gradtui.versions` judges them against the tested releases)."""
    import keras
    import tensorflow as tf

    return str(keras.__version__), str(tf.__version__)


def inner_optimizer(optimizer: Any) -> Any:
    """The optimizer that applies unscaled gradients (a ``LossScaleOptimizer``'s inner one)."""
    while hasattr(optimizer, "inner_optimizer"):
        optimizer = optimizer.inner_optimizer
    return optimizer


def held_optimizers(model: Any) -> list[Any]:
    """The optimizers a model holds: ``model.optimizer`` (what ``compile`` made), then any other
    attribute that is a Keras optimizer (a GAN's ``d_optimizer`` and ``g_optimizer``)."""
    import keras

    found = [getattr(model, "optimizer", None)] + list(vars(model).values())
    out: list[Any] = []
    for value in found:
        if isinstance(value, keras.optimizers.Optimizer) and all(value is not o for o in out):
            out.append(value)
    return out


def accumulation(optimizer: Any, grads: list[Any], variables: list[Any]) -> tuple[Any, list[Any]] | None:
    """Under ``gradient_accumulation_steps`` (k): whether this application updates the weights
    (``(_iterations + 1) % k == 0``) and the gradients that update applies, ``(g + acc) / k``
    with ``acc`` the accumulator of each variable (``_accumulated_gradients``, read before the
    application changes it), as ``BaseOptimizer._backend_apply_gradients`` computes them.
    ``None`` without accumulation."""
    import tensorflow as tf

    k = getattr(optimizer, "gradient_accumulation_steps", None)
    if not k:
        return None
    is_update = tf.equal((tf.convert_to_tensor(optimizer._iterations) + 1) % k, 0)
    applied = []
    for g, v in zip(grads, variables, strict=True):
        if g is None:
            applied.append(None)
            continue
        acc = optimizer._accumulated_gradients[optimizer._get_variable_index(v)]
        applied.append((tf.convert_to_tensor(g) + tf.convert_to_tensor(acc)) / k)
    return is_update, applied


def missing_hooks(model: Any, optimizer: Any) -> list[str]:
    """The private methods and attributes gradtui wraps that this model, its optimizer (the
    inner one of a ``LossScaleOptimizer``) or the installed Keras/TensorFlow lack."""
    missing: list[str] = []
    optimizer = inner_optimizer(optimizer) if optimizer is not None else None
    if optimizer is not None:
        kind = type(optimizer).__name__
        for name in (APPLY, *ASSIGNS, "scale_loss"):
            if not callable(getattr(optimizer, name, None)):
                missing.append(f"{kind}.{name}")
    if not callable(getattr(model, "compute_loss", None)):
        missing.append(f"{type(model).__name__}.compute_loss")
    for name in ("_get_call_context", "_flatten_layers"):
        if not callable(getattr(model, name, None)):
            missing.append(f"Layer.{name}")
    try:
        from keras.src.layers.layer import CallContext

        if not callable(getattr(CallContext, "get_value", None)):
            missing.append("CallContext.get_value")
    except ImportError:
        missing.append("keras.src.layers.layer.CallContext")
    if attention_layers(model):
        params = inspect.signature(getattr(attention_class(), ATTENTION, None) or (lambda: None)).parameters
        if not {"query", "key", "attention_mask"} <= set(params):
            missing.append(f"MultiHeadAttention.{ATTENTION}(query, key, attention_mask)")
    import tensorflow as tf

    interim = getattr(getattr(getattr(tf, "__internal__", None), "distribute", None), "interim", None)
    if not callable(getattr(interim, "maybe_merge_call", None)):
        missing.append("tf.__internal__.distribute.interim.maybe_merge_call")
    return missing


def has_hooks(optimizer: Any) -> bool:
    """Whether this Keras version's optimizer has the private methods gradtui wraps (the
    optimizer's part of :func:`missing_hooks`)."""
    return callable(getattr(optimizer, APPLY, None)) and all(
        callable(getattr(optimizer, m, None)) for m in ASSIGNS
    )


#: per instance and method name, the wraps in place, innermost first: ``(owner, make)``
_CHAIN = "__gradtui_wraps_"


def wrap_method(
    obj: Any, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]], owner: Any = None
) -> None:
    """Replace ``obj.name`` on this instance only with ``make(current)``.

    Wraps stack: each is remembered with its ``owner`` (a watch, a recorder), so that
    :func:`unwrap_method` takes off exactly one owner's wrap and leaves the others in place.
    ``object.__setattr__`` bypasses Keras's attribute tracking (a wrapped method is not state).
    """
    chain = vars(obj).get(_CHAIN + name)
    if chain is None:
        # what the instance had before any wrap (its own attribute, if it had one)
        chain = {"base": vars(obj).get(name), "wraps": []}
        object.__setattr__(obj, _CHAIN + name, chain)
    chain["wraps"].append((owner, make))
    object.__setattr__(obj, name, make(getattr(obj, name)))


def unwrap_method(obj: Any, name: str, owner: Any = None) -> None:
    """Take ``owner``'s wrap of ``obj.name`` off (the latest wrap when ``owner`` is None); the
    wraps of other owners stay, rebuilt in their order over what the instance had before."""
    chain = vars(obj).get(_CHAIN + name)
    if chain is None:
        return
    wraps = chain["wraps"]
    at = next((i for i in range(len(wraps) - 1, -1, -1) if owner is None or wraps[i][0] is owner), None)
    if at is None:
        return
    del wraps[at]
    if chain["base"] is None:
        if name in vars(obj):
            object.__delattr__(obj, name)
    else:
        object.__setattr__(obj, name, chain["base"])
    if not wraps:
        object.__delattr__(obj, _CHAIN + name)
        return
    for _, make in wraps:
        object.__setattr__(obj, name, make(getattr(obj, name)))


@contextmanager
def wrapped(obj: Any, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Iterator[None]:
    """``wrap_method`` for the duration of a ``with`` block (nested wraps restore in order)."""
    token = object()
    wrap_method(obj, name, make, token)
    try:
        yield
    finally:
        unwrap_method(obj, name, token)


def training_call(layer: Any) -> bool:
    """Whether the ``call`` running now is part of a training forward pass."""
    try:
        ctx = layer._get_call_context()
    except Exception:
        return True
    training = ctx.get_value("training") if ctx is not None else None
    return bool(training) if training is not None else False


def sublayers(layer: Any) -> list[Any]:
    """A layer's direct sublayers (a model's layers, a block's, a wrapper's), Input layers left out."""
    try:
        subs = list(layer._flatten_layers(include_self=False, recursive=False))
    except Exception:
        subs = list(getattr(layer, "layers", []) or [])
    return [s for s in subs if type(s).__name__ != "InputLayer"]


def distribution_strategy(model: Any) -> Any:
    """The ``tf.distribute`` strategy a model was built under (the default one when none)."""
    import tensorflow as tf

    strategy = getattr(model, "_distribute_strategy", None)
    return strategy if strategy is not None else tf.distribute.get_strategy()


def merge_call(fn: Callable[..., Any], strategy: Any, *args: Any) -> Any:
    """Run ``fn(distribution, *args)`` from a replica context the way Keras's optimizer updates
    variables: in a cross-replica merge where the strategy wants one, directly otherwise (the
    default strategy, strategies that need no merge call)."""
    import tensorflow as tf

    return tf.__internal__.distribute.interim.maybe_merge_call(fn, strategy, *args)


def input_shape(layer: Any) -> tuple[Any, ...] | None:
    """The shape of a built layer's (first) input, batch axis included, or ``None``."""
    try:
        return tuple(layer.input.shape)
    except Exception:
        pass
    shapes = getattr(layer, "_build_shapes_dict", None) or {}
    for value in shapes.values():
        if isinstance(value, (list, tuple)):
            return tuple(value)
    return None


def functional_cond(pred: Any, true_fn: Callable[[], Any], false_fn: Callable[[], Any]) -> Any:
    """``tf.cond(pred, true_fn, false_fn)`` run as one ``If`` node that calls the branch taken.

    By default TensorFlow lowers a ``tf.function``'s ``tf.cond`` to ``Switch``/``Merge``: every
    tensor a branch captures gets a ``Switch`` node, and every node of the untaken branch still
    passes through the executor (as a dead tensor), on every step. The recorder's branches
    capture a tensor per gradient, weight and update and hold dozens to hundreds of nodes, and
    are taken one step in ``every`` (or, for the NaN count, almost never): kept functional,
    the untaken branch costs one function call instead. (Inside XLA, ``If`` is never lowered.)
    """
    import tensorflow as tf

    out = tf.cond(pred, true_fn, false_fn)
    if tf.executing_eagerly():
        return out
    from tensorflow.core.framework import attr_value_pb2

    for tensor in tf.nest.flatten(out):
        op = tensor.op
        while op.type == "Identity" and op.inputs:  # cond_v2 returns identities of the If's outputs
            op = op.inputs[0].op
        if op.type in ("If", "StatelessIf"):
            op._set_attr("_lower_using_switch_merge", attr_value_pb2.AttrValue(b=False))
    return out


def discarded_trace() -> bool:
    """Whether the ``tf.function`` trace being built will never run: it has already created
    variables (a Keras optimizer builds its slots inside the first trace of a step).

    On its first call a ``tf.function`` traces with variable creation allowed; if that trace
    created any, TensorFlow lifts their initializers out and traces again without, and runs
    only the second trace. (If lifting fails, it runs the first one once, behind a condition on
    the variables being uninitialized; the recorder then misses that one step.) False outside
    a trace, and whenever this cannot be told.
    """
    import tensorflow as tf

    if tf.executing_eagerly():
        return False
    stack = getattr(tf.compat.v1.get_default_graph(), "_variable_creator_stack", None) or []
    for entry in reversed(stack):
        creator = entry[1] if isinstance(entry, tuple) else entry
        name = getattr(creator, "__name__", "")
        if name == "invalid_creator_scope":  # the second trace: variables may not be created
            return False
        if name == "variable_capturing_scope":  # the innermost tf.function's first trace
            for cell in getattr(creator, "__closure__", None) or ():
                try:
                    value = cell.cell_contents
                except ValueError:
                    continue
                if isinstance(value, list):  # ``created_variables``: weak references
                    return bool(value)
            return False
    return False


# ---------------------------------------------------------------------------- attention

#: the method of ``keras.layers.MultiHeadAttention`` that turns projected q/k/v into attention
ATTENTION = "_compute_attention"
#: per tapped instance, the taps ``[(owner, fn)]`` (an attribute of the instance)
_ATTENTION_TAPS = "__gradtui_attention_taps"
#: the instances tapped now; the class's own method while any is (``None``: not wrapped)
_TAPPED: weakref.WeakSet[Any] = weakref.WeakSet()
_ORIGINAL_ATTENTION: list[Any] = []


def attention_class() -> Any:
    """``keras.layers.MultiHeadAttention``."""
    import keras

    return keras.layers.MultiHeadAttention


def attention_layers(model: Any) -> list[Any]:
    """Every ``MultiHeadAttention`` (subclasses included) inside a model, at any depth, once each,
    in the model's order."""
    cls = attention_class()
    out: list[Any] = []
    seen: set[int] = set()

    def walk(layer: Any) -> None:
        for sub in sublayers(layer):
            if id(sub) in seen:
                continue
            seen.add(id(sub))
            if isinstance(sub, cls):
                out.append(sub)
            walk(sub)

    walk(model)
    return out


def attention_query(layer: Any) -> Any:
    """A ``MultiHeadAttention``'s query projection (``query_dense``; ``_query_dense`` before it
    was public)."""
    try:
        return layer.query_dense
    except AttributeError:
        return getattr(layer, "_query_dense", None)


def attention_scale(layer: Any) -> float:
    """The factor a ``MultiHeadAttention`` multiplies q.k by: 1/sqrt(key_dim), as it computes it."""
    return 1.0 / math.sqrt(float(layer.key_dim))


def attention_equation(layer: Any) -> tuple[str, int]:
    """The einsum ``(key, query) -> scores`` a built ``MultiHeadAttention`` contracts with, and
    its number of attention axes (1 for sequences)."""
    return layer._dot_product_equation, len(layer._attention_axes)


def _attention_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any, Any, bool]:
    """``(query, key, attention_mask, use_causal_mask)`` of a ``_compute_attention`` call."""
    bound = _ATTENTION_SIGNATURE[0].bind_partial(None, *args, **kwargs).arguments
    return (
        bound.get("query"),
        bound.get("key"),
        bound.get("attention_mask"),
        bool(bound.get("use_causal_mask", False)),
    )


_ATTENTION_SIGNATURE: list[inspect.Signature] = []


def _dispatching(original: Any) -> Any:
    def _compute_attention(self: Any, *args: Any, **kwargs: Any) -> Any:
        taps = vars(self).get(_ATTENTION_TAPS)
        if taps:
            query, key, mask, causal = _attention_arguments(args, kwargs)
            for _, fn in list(taps):
                fn(query, key, mask, causal)
        return original(self, *args, **kwargs)

    _compute_attention.__wrapped__ = original  # type: ignore[attr-defined]
    _compute_attention.__doc__ = original.__doc__
    _compute_attention.__name__ = original.__name__
    _compute_attention.__qualname__ = original.__qualname__
    return _compute_attention


def tap_attention(layer: Any, fn: Callable[[Any, Any, Any, bool], None], owner: Any) -> None:
    """Call ``fn(query, key, attention_mask, use_causal_mask)`` whenever this layer's attention
    is computed (``MultiHeadAttention._compute_attention``, reached from its ``call`` or from a
    subclass's ``super()``), before it is: the projected query ``(B, T, N, H)`` and key
    ``(B, S, N, H)`` the layer's logits are made of, its boolean mask ``(B, T, S)`` or ``None``,
    and whether a causal mask applies on top (Keras's native causal path). Other instances pass
    straight through; :func:`untap_attention` gives the class back its own method once no
    instance is tapped."""
    cls = attention_class()
    if not _ORIGINAL_ATTENTION:
        original = cls.__dict__[ATTENTION]
        _ORIGINAL_ATTENTION.append(original)
        _ATTENTION_SIGNATURE[:] = [inspect.signature(original)]
        setattr(cls, ATTENTION, _dispatching(original))
    taps = vars(layer).get(_ATTENTION_TAPS)
    if taps is None:
        taps = []
        object.__setattr__(layer, _ATTENTION_TAPS, taps)
    taps.append((owner, fn))
    _TAPPED.add(layer)


def untap_attention(layer: Any, owner: Any) -> None:
    """Take ``owner``'s taps off ``layer`` (see :func:`tap_attention`)."""
    taps = vars(layer).get(_ATTENTION_TAPS)
    if taps is not None:
        taps[:] = [(o, f) for o, f in taps if o is not owner]
        if not taps:
            object.__delattr__(layer, _ATTENTION_TAPS)
            _TAPPED.discard(layer)
    if not len(_TAPPED) and _ORIGINAL_ATTENTION:
        setattr(attention_class(), ATTENTION, _ORIGINAL_ATTENTION.pop())


def attention_tapped() -> bool:
    """Whether ``MultiHeadAttention._compute_attention`` is wrapped now (some instance tapped)."""
    return bool(_ORIGINAL_ATTENTION)
