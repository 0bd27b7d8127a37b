"""Edits of a preset's layer stack and settings, each returning a new validated preset.

Every edit goes through :func:`gradtui.preset.from_dict`, the same validation a preset file
gets, so the builder can never hold a stack that ``gradtui run`` would refuse: an invalid edit
raises :class:`gradtui.errors.PresetError` and the stack stays as it was.
"""

from __future__ import annotations

import copy
from typing import Any

from gradtui.preset import SEQUENCE_DATASETS, Preset, from_dict

#: the entry ``add`` and ``insert`` create: a hidden layer that fits the ReLU family
NEW_LAYER: dict[str, Any] = {
    "type": "dense",
    "units": 64,
    "activation": "relu",
    "initializer": "he_normal",
    "bias_initializer": "zeros",
    "batch_norm": "none",
    "repeat": 1,
}


def _rebuild(preset: Preset, data: dict[str, Any]) -> Preset:
    return from_dict(data, source="builder", default_name=preset.name)


def _layers(preset: Preset) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    data = preset.to_dict()
    return data, data["layers"]


def insert_layer(preset: Preset, index: int, table: dict[str, Any] | None = None) -> Preset:
    """A copy with a new entry at ``index`` (clamped), by default :data:`NEW_LAYER`."""
    data, layers = _layers(preset)
    index = max(0, min(index, len(layers)))
    layers.insert(index, copy.deepcopy(table or NEW_LAYER))
    return _rebuild(preset, data)


def duplicate_layer(preset: Preset, index: int) -> Preset:
    """A copy with entry ``index`` repeated right after itself."""
    data, layers = _layers(preset)
    layers.insert(index + 1, copy.deepcopy(layers[index]))
    return _rebuild(preset, data)


def delete_layer(preset: Preset, index: int) -> Preset:
    """A copy without entry ``index`` (refused when it is the only dense layer)."""
    data, layers = _layers(preset)
    del layers[index]
    return _rebuild(preset, data)


def move_layer(preset: Preset, index: int, offset: int) -> Preset:
    """A copy with entry ``index`` moved by ``offset`` places (clamped to the stack)."""
    data, layers = _layers(preset)
    target = max(0, min(index + offset, len(layers) - 1))
    layers.insert(target, layers.pop(index))
    return _rebuild(preset, data)


def replace_layer(preset: Preset, index: int, table: dict[str, Any]) -> Preset:
    """A copy with entry ``index`` replaced by ``table`` (its TOML form)."""
    data, layers = _layers(preset)
    layers[index] = table
    return _rebuild(preset, data)


def set_training(
    preset: Preset, data_table: dict[str, Any], train_table: dict[str, Any], every: Any
) -> Preset:
    """A copy with the builder's training settings.

    ``train_table`` holds every key the form edits; clipping, ``max_steps``, ``loss``,
    ``epsilon``, ``weight_decay`` and ``z_loss`` keys it leaves out are removed (the form writes ``loss`` for
    a regression task only, ``epsilon`` for an optimizer that has one), other keys (``nesterov``)
    are kept.
    """
    data = preset.to_dict()
    data["data"].update(data_table)
    if data["data"].get("source") is None or data["data"].get("dataset") not in SEQUENCE_DATASETS:
        data["data"].pop("source", None)  # the text file of the text data set only; none: the stdlib
    dropped = (
        "clipnorm",
        "clipvalue",
        "global_clipnorm",
        "max_steps",
        "momentum",
        "loss",
        "epsilon",
        "weight_decay",
        "z_loss",
    )
    train = {k: v for k, v in data["train"].items() if k not in dropped}
    train.update(train_table)
    data["train"] = train
    data["monitor"]["every"] = every
    return _rebuild(preset, data)
