"""Advice shared by several rules: which layers a fix changes, the recurrent layers' own
remedies, the explosion's and the learning rate's remedies. A kind's own advice lives in its
module."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from gradtui.roles import NO_ACTIVATION_ADVICE, role
from gradtui.rules.base import round_lr
from gradtui.stack import LayerInfo, layer_range, matched_init, matched_variance

if TYPE_CHECKING:
    from gradtui.diagnose import Diagnoser

#: layers whose gradients scale differently from a weight layer's (per-feature affine
#: parameters): left out of the depth comparisons (vanishing, exploding, learning rate)
NORMALIZATION = ("BatchNormalization", "LayerNormalization", "GroupNormalization", "UnitNormalization")
#: layers whose weights are an activation's parameters, not a transformation of the signal
ACTIVATION_TYPES = ("PReLU", "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax")
RECURRENT = ("SimpleRNN", "LSTM", "GRU", "Bidirectional", "RNN")
#: the BatchNorm momentum the ``bn_statistics`` fix sets (averages over ~10 steps)
BN_MOMENTUM_FIX = 0.9


def recurrent_gain(info: LayerInfo) -> float | None:
    """The gain of a recurrent kernel's initializer: the factor by which it scales a state of
    ``units`` values each time step (an orthogonal matrix: 1; N(0, σ²): σ·√units). Above 1 the
    state and its gradient grow through time until tanh saturates (Pascanu et al. 2013)."""
    spec = getattr(info, "recurrent_initializer", None)
    units = info.fan_out
    if spec is None or not units:
        return None
    name = spec.name
    if name in ("orthogonal", "identity"):
        return float(spec.param("gain", 1.0))
    if name in ("random_normal", "truncated_normal"):
        return float(spec.param("stddev", 0.05)) * math.sqrt(units)
    if name == "random_uniform":
        lo, hi = float(spec.param("minval", -0.05)), float(spec.param("maxval", 0.05))
        return (hi - lo) / math.sqrt(12) * math.sqrt(units)
    if name.startswith(("glorot", "lecun")):
        return 1.0
    if name.startswith("he_"):
        return math.sqrt(2.0)
    if name == "variance_scaling":
        return math.sqrt(float(spec.param("scale", 1.0)))
    if name == "zeros":
        return 0.0
    return None


def weighted(info: LayerInfo) -> bool:
    """A layer that transforms the signal with weights (dense, conv, recurrent, embedding):
    not a normalization's or an activation's parameters."""
    return info.has_weights and info.type not in NORMALIZATION and info.type not in ACTIVATION_TYPES


def layer_groups(dx: Diagnoser, names: list[str]) -> list[tuple[list[str], LayerInfo]]:
    """Consecutive layers with the same activation, initializer and BatchNorm, grouped: the
    layers whose activation, initializer and BatchNorm advice can change (:mod:`gradtui.roles`:
    not embeddings or attention projections)."""
    groups: list[tuple[list[str], LayerInfo]] = []
    for n in names:
        info = dx.infos.get(n)
        if info is None or not weighted(info) or role(info) in NO_ACTIVATION_ADVICE:
            continue
        key = (
            info.activation,
            info.initializer.label() if info.initializer else "?",
            info.batch_norm,
        )
        if groups:
            g_names, g_info = groups[-1]
            g_key = (
                g_info.activation,
                g_info.initializer.label() if g_info.initializer else "?",
                g_info.batch_norm,
            )
            if g_key == key:
                g_names.append(n)
                continue
        groups.append(([n], info))
    return groups


def entry_indices(dx: Diagnoser, names: list[str]) -> list[int]:
    return sorted({dx.infos[n].entry for n in names if n in dx.infos and dx.infos[n].entry is not None})


def entry_layers(dx: Diagnoser, names: list[str]) -> list[str]:
    """The weighted layers of the ``[[layers]]`` entries ``names`` come from (all their repeats),
    in model order: what a fix on those entries changes. Layers without an entry (a user's
    own model) stay as given."""
    entries = set(entry_indices(dx, names))
    if not entries:
        return names
    return [n for n in dx.order if weighted(dx.infos[n]) and dx.infos[n].entry in entries]


def describe(dx: Diagnoser, names: list[str], info: LayerInfo) -> str:
    init = info.initializer.label() if info.initializer else "its initializer"
    bn = f", batch_norm = '{info.batch_norm}'" if info.batch_norm != "none" else ""
    return f"{layer_range(names)} use {info.activation} with {init}{bn}"


def make_fix(
    dx: Diagnoser, names: list[str], layer_set: dict[str, Any] | None, train_set: dict[str, Any] | None
) -> dict[str, Any] | None:
    fix: dict[str, Any] = {}
    entries = entry_indices(dx, names)
    if layer_set and entries:
        fix["entries"] = entries
        fix["set"] = layer_set
    if train_set:
        fix["train"] = train_set
    return fix or None


def bn_train(dx: Diagnoser) -> dict[str, Any] | None:
    """With a fix that adds BatchNorm: its momentum for a run of a few hundred steps
    (Keras's 0.99 lags there: ``bn_statistics``; 0.9 is PyTorch's default 0.1)."""
    now = dx.train.batch_norm_momentum if dx.train else None
    if now is not None and now <= BN_MOMENTUM_FIX:
        return None
    return {"batch_norm_momentum": BN_MOMENTUM_FIX}


def clipping(dx: Diagnoser) -> bool:
    t = dx.train
    return bool(t and (t.clipnorm or t.clipvalue or t.global_clipnorm))


def recurrent_rows(dx: Diagnoser, names: list[str]) -> list[str]:
    return [n for n in names if n in dx.infos and dx.infos[n].type in RECURRENT]


def recurrent_advice(dx: Diagnoser, names: list[str], kind: str) -> tuple[str, dict[str, Any] | None]:
    """A recurrent layer's remedies are its own (never relu/he_normal/batch_norm, which
    change what the cell is): its recurrent kernel (orthogonal, gain 1), its cell (LSTM/GRU
    gates keep a path for the gradient) and gradient clipping (Pascanu et al. 2013)."""
    info = dx.infos[names[0]]
    where = f"{layer_range(names)} ({info.type})"
    clip = not clipping(dx)
    train = {"clipnorm": 1.0} if clip else None
    gain = recurrent_gain(info)
    if gain is not None and gain > 1.2:
        spec = info.recurrent_initializer.label()  # type: ignore[union-attr]
        advice = (
            f"{where}: its recurrent kernel ({spec}) scales the state by ~{gain:.2g} a time step, so "
            "the state and its gradient grow through time until tanh saturates: use "
            "recurrent_initializer = 'orthogonal' (gain 1)" + (", and clipnorm = 1.0" if clip else "")
        )
        return advice, make_fix(dx, names, {"recurrent_initializer": "orthogonal"}, train)
    if kind == "exploding":
        if clip:
            return (
                f"{where} explodes through time: clip gradients with clipnorm = 1.0, or lower learning_rate",
                make_fix(dx, [], None, {"clipnorm": 1.0}),
            )
        lr_now = dx.train.learning_rate if dx.train else 0.01
        return (
            f"{where}: gradients are already clipped; lower learning_rate (e.g. {lr_now / 10:g})",
            make_fix(dx, [], None, {"learning_rate": lr_now / 10}),
        )
    if info.type == "SimpleRNN":
        advice = f"{where}: use lstm or gru (their gates keep a path for the gradient through time)" + (
            ", or clipnorm = 1.0" if clip else ""
        )
        return advice, make_fix(dx, names, {"type": "lstm", "activation": "tanh"}, None)
    advice = (
        f"{where}: its recurrent kernel is already orthogonal-like; "
        + ("clip gradients with clipnorm = 1.0, or " if clip else "")
        + "lower learning_rate"
    )
    return advice, make_fix(dx, [], None, train) if train else None


def explode_advice(dx: Diagnoser, names: list[str], *, nonfinite: bool) -> tuple[str, dict[str, Any] | None]:
    groups = layer_groups(dx, names) or layer_groups(dx, dx.order)
    clip = "" if clipping(dx) else "clipnorm = 1.0"
    lr = "lower learning_rate"
    recurrent = recurrent_rows(dx, names)
    if recurrent:
        # the recurrent kernel is applied once a time step: its gradient grows like a power
        # of it (Pascanu et al. 2013), which clipping bounds without changing its direction
        return recurrent_advice(dx, recurrent, "exploding")
    for g_names, info in groups:
        var = info.variance
        good_var = matched_variance(info.activation, info.fan_in, info.fan_out) if info.fan_in else None
        if var is not None and good_var and var > 4 * good_var:
            good, rule, _ = matched_init(info.activation)
            # A fix changes whole [[layers]] entries: the advice names every layer of the
            # entries it changes, and nothing else (not the softmax output layer whose
            # gradients merely grew with the rest); "and" only for what the fix also sets.
            named = entry_layers(dx, g_names)
            train = {"clipnorm": 1.0} if clip and nonfinite else None
            extra = f", and {clip}" if train else (f", or {clip}" if clip else f", or {lr}")
            advice = (
                f"{describe(dx, named, info)} (σ² = {var:.3g}, {var / good_var:.3g}x too large): "
                f"use {good} ({rule}){extra}"
            )
            return advice, make_fix(dx, named, {"initializer": good}, train)
    if clip:
        return f"clip gradients with {clip} (keeps their direction), or {lr}", make_fix(
            dx, [], None, {"clipnorm": 1.0}
        )
    lr_now = dx.train.learning_rate if dx.train else 0.01
    return (
        f"gradients are already clipped; {lr} (e.g. {lr_now / 10:g}) or add batch_norm",
        make_fix(dx, [], None, {"learning_rate": lr_now / 10}),
    )


def lr_advice(dx: Diagnoser, factor: float, too: str) -> tuple[str, dict[str, Any] | None]:
    """Scale the learning rate by target/observed update ratio (the ratio is proportional
    to it, for SGD and for Adam alike)."""
    lr_now = dx.train.learning_rate if dx.train else None
    way = "lower" if too == "large" else "raise"
    if lr_now is None or not math.isfinite(factor):
        return f"{way} the learning rate about {factor:.2g}x", None
    new = round_lr(lr_now * factor)
    return (
        f"{way} learning_rate from {lr_now:g} to {new:g} (x{factor:.2g}: brings ‖Δw‖/‖w‖ to "
        f"~{dx.t.update_ratio_target:g})",
        make_fix(dx, [], None, {"learning_rate": new}),
    )


def depth_names(dx: Diagnoser) -> list[str]:
    """The rows the depth comparisons read (not normalization or activation parameters)."""
    return [dx.names[i] for i in dx.depth]
