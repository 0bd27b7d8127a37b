"""The builder's view of a preset: per-entry parameters and σ², pre-flight advice, plan errors.

Pure Python over :mod:`gradtui.stack` (no TensorFlow, no Textual), recomputed on every edit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from gradtui.errors import GradtuiError
from gradtui.preset import DataSpec, Preset, named_input
from gradtui.stack import Advice, LayerInfo, param_counts, plan, preflight

_SPEC_CACHE: dict[tuple[str, float], tuple[tuple[int, ...], int]] = {}


def cached_input_spec(data: DataSpec) -> tuple[tuple[int, ...], int]:
    """:func:`gradtui.data.input_spec`, cached per data file and its modification time.

    A named data set costs nothing (not even importing numpy, which the first screen does not
    need); a file is read once, not on every keystroke.
    """
    named = named_input(data)
    if named is not None:
        return named
    from gradtui.data import input_spec

    if os.path.sep not in data.dataset and not data.dataset.endswith((".npz", ".csv")):
        return input_spec(data)
    try:
        mtime = os.path.getmtime(data.dataset)
    except OSError:
        mtime = -1.0
    key = (data.dataset, mtime)
    if key not in _SPEC_CACHE:
        _SPEC_CACHE[key] = input_spec(data)
    return _SPEC_CACHE[key]


@dataclass
class StackInfo:
    """What the builder shows about a preset besides its entries.

    Attributes:
        layers: the planned Keras layers (empty when the plan failed).
        entry_params: parameters of each ``[[layers]]`` entry (all its repeats).
        entry_variance: σ² of the first kernel (dense, conv, recurrent) of each entry.
        entry_output: the output shape of each entry (its last layer's, without the batch axis).
        advice: pre-flight advice.
        params: total, trainable and non-trainable parameter counts.
        input_shape: the data's sample shape; ``classes`` its number of classes.
        error: why the stack cannot be built as it stands, or ``None``.
    """

    layers: list[LayerInfo] = field(default_factory=list)
    entry_params: dict[int, int] = field(default_factory=dict)
    entry_variance: dict[int, float | None] = field(default_factory=dict)
    entry_output: dict[int, tuple[int, ...]] = field(default_factory=dict)
    advice: list[Advice] = field(default_factory=list)
    params: dict[str, int] = field(default_factory=dict)
    input_shape: tuple[int, ...] = ()
    classes: int = 0
    error: str | None = None


def stack_info(preset: Preset) -> StackInfo:
    """Plan the preset's model and gather the builder's per-entry figures and advice."""
    info = StackInfo()
    try:
        info.input_shape, info.classes = cached_input_spec(preset.data)
        info.layers = plan(preset, info.input_shape, info.classes)
    except GradtuiError as exc:
        info.error = exc.one_line()
        return info
    for layer in info.layers:
        if layer.entry is None:
            continue
        info.entry_params[layer.entry] = info.entry_params.get(layer.entry, 0) + layer.params
        if layer.is_weighted and layer.entry not in info.entry_variance:
            info.entry_variance[layer.entry] = layer.variance
        info.entry_output[layer.entry] = layer.output_shape
    info.params = param_counts(info.layers)
    info.advice = preflight(info.layers, preset.train)
    return info
