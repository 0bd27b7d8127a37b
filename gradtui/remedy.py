"""The remedy of a run: its open diagnoses' fixes, applied to its preset as one change.

``gradtui fix RUN_DIR`` and the TUI's ``f`` both call :func:`apply_remedy`: the fixes of the
diagnoses that still hold (no ``cleared_step``) are merged, most serious kind first. Each
``[[layers]]`` entry is changed by one diagnosis's fix, whole: two remedies never mix on one
layer (deep-plain's residual connections with a dead-units fix's He init would double the
signal at each of 24 blocks); ``[train]`` keys add up, one kind of clipping at most. The result
goes through :func:`gradtui.preset.apply_fix`, which validates it like a preset file.

Headless and light: no numpy, no TensorFlow, no Textual.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gradtui.diagnosis import Diagnosis
from gradtui.preset import Preset, apply_fix

#: which fix changes an entry two fixes name: the failure that makes the others moot first
PRIORITY = (
    "non_finite",
    "exploding",
    # a transformer's instabilities: their remedies (qk_norm, z_loss) remove the cause of the
    # fading query/key gradients a vanishing diagnosis would see
    "attention_logit_growth",
    "output_logit_divergence",
    "vanishing",
    "dead_units",
    "saturation",
    "one_sided_saturation",
    "bn_statistics",
    "adam_epsilon",
    "learning_rate",
    "not_learning",
)


@dataclass
class Remedy:
    """What :func:`apply_remedy` did.

    Attributes:
        preset: the fixed preset (the original when nothing applied).
        changes: one line per changed key, ``layers[0].activation: 'sigmoid' -> 'relu' (vanishing)``.
        applied: the diagnoses whose fix (or part of it) went in.
    """

    preset: Preset
    changes: list[str] = field(default_factory=list)
    applied: list[Diagnosis] = field(default_factory=list)


def open_fixable(diagnoses: list[Diagnosis]) -> list[Diagnosis]:
    """The diagnoses that still hold and carry a fix, most serious kind first."""
    rank = {k: i for i, k in enumerate(PRIORITY)}
    live = [d for d in diagnoses if d.cleared_step is None and d.fix]
    return sorted(live, key=lambda d: rank.get(d.kind, len(PRIORITY)))


def merge(
    diagnoses: list[Diagnosis],
) -> tuple[dict[int, dict[str, Any]], dict[str, Any], dict[str, list[str]]]:
    """The per-entry changes and ``[train]`` changes of ``diagnoses``' fixes, merged in order.

    Returns ``(entries, train, why)``: ``entries[i]`` the keys to set on ``[[layers]]`` entry
    ``i``, ``train`` the keys to set in ``[train]``, ``why[key]`` the kinds behind a change
    (``"layers[0].activation"`` or ``"train.clipnorm"``). An entry an earlier (more serious)
    diagnosis changes is left to it; a ``[train]`` key it set is kept.
    """
    entries: dict[int, dict[str, Any]] = {}
    train: dict[str, Any] = {}
    why: dict[str, list[str]] = {}
    for d in diagnoses:
        fix = d.fix or {}
        layer_set = dict(fix.get("set") or {})
        for i in fix.get("entries") or []:
            if int(i) in entries or not layer_set:
                continue  # the entry is the more serious diagnosis's to change
            entries[int(i)] = dict(layer_set)
            for k in layer_set:
                why.setdefault(f"layers[{i}].{k}", []).append(d.kind)
        for k, v in (fix.get("train") or {}).items():
            if k in train:
                continue
            if k in ("clipnorm", "global_clipnorm", "clipvalue") and any(
                c in train for c in ("clipnorm", "global_clipnorm", "clipvalue")
            ):
                continue  # one kind of clipping is enough
            train[k] = v
            why.setdefault(f"train.{k}", []).append(d.kind)
    return entries, train, why


def _show(value: Any) -> str:
    if isinstance(value, dict) and "name" in value:
        rest = ", ".join(f"{k}={v!r}" for k, v in value.items() if k != "name")
        return f"{value['name']!r}" + (f" ({rest})" if rest else "")
    if isinstance(value, bool):  # as the preset file writes it
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value)


def _changes(before: Preset, after: Preset, why: dict[str, list[str]]) -> tuple[list[str], set[str]]:
    """One line per key whose value differs between ``before`` and ``after``, and the kinds
    behind those changes."""
    lines = []
    used: set[str] = set()
    b, a = before.to_dict(), after.to_dict()
    for i, (old, new) in enumerate(zip(b["layers"], a["layers"], strict=False)):
        for k in dict.fromkeys([*old, *new]):
            if old.get(k) != new.get(k):
                kinds = why.get(f"layers[{i}].{k}") or why.get(f"layers[{i}].type") or []
                was = _show(old[k]) if k in old else "(unset)"
                now = _show(new[k]) if k in new else "(dropped)"
                used.update(kinds)
                lines.append(
                    f"layers[{i}] ({old.get('type', '?')}).{k}: {was} -> {now}"
                    + (f" ({', '.join(kinds)})" if kinds else "")
                )
    for k in dict.fromkeys([*b["train"], *a["train"]]):
        if b["train"].get(k) != a["train"].get(k):
            kinds = why.get(f"train.{k}") or []
            was = _show(b["train"][k]) if k in b["train"] else "(unset)"
            now = _show(a["train"][k]) if k in a["train"] else "(dropped)"
            used.update(kinds)
            lines.append(f"train.{k}: {was} -> {now}" + (f" ({', '.join(kinds)})" if kinds else ""))
    return lines, used


def apply_remedy(preset: Preset, diagnoses: list[Diagnosis]) -> Remedy:
    """``preset`` with the fixes of the open ``diagnoses`` applied as one consistent change.

    Raises :class:`gradtui.errors.PresetError` when the merged fix does not fit the preset
    (an entry it names is not there, or a value is refused).
    """
    chosen = open_fixable(diagnoses)
    entries, train, why = merge(chosen)
    fixed = preset
    for i, layer_set in sorted(entries.items()):
        if layer_set:
            fixed = apply_fix(fixed, {"entries": [i], "set": layer_set})
    if train:
        fixed = apply_fix(fixed, {"train": train})
    lines, kinds = _changes(preset, fixed, why)
    return Remedy(fixed, lines, [d for d in chosen if d.kind in kinds])
