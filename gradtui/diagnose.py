"""Diagnoses: pure functions over recorded statistics, no TensorFlow.

Each rule reads the median of the last ``window`` records, so one noisy step raises nothing,
while a problem present from the start is flagged after ``window`` records (step 2 with
``every = 1``), long before the loss curve would tell anyone. Thresholds are principled orders
of magnitude (see :class:`gradtui.preset.Thresholds`), overridable in ``[monitor]``.

Every diagnosis carries advice specific to the stack (which layers, what to change them to),
drawn from the four remedies: initialization matched to the activation, a non-saturating
activation, batch normalization, gradient clipping; and a machine-readable ``fix`` the TUI
applies with one key.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gradtui.preset import Thresholds, TrainSpec
from gradtui.stack import SATURATING, LayerInfo, layer_range, matched_init, matched_variance

KINDS = ("vanishing", "exploding", "non_finite", "saturation", "dead_units")


@dataclass
class Diagnosis:
    """One problem found in the recorded statistics (SPEC section 3)."""

    kind: str
    layer: str | None
    step: int
    severity: str
    message: str
    advice: str
    layers: list[str] = field(default_factory=list)
    fix: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``summary.json`` form."""
        return {
            "kind": self.kind,
            "layer": self.layer,
            "step": self.step,
            "severity": self.severity,
            "message": self.message,
            "advice": self.advice,
            "layers": list(self.layers),
            "fix": self.fix,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Diagnosis:
        """Read back a ``summary.json`` diagnosis."""
        return cls(
            kind=d["kind"],
            layer=d.get("layer"),
            step=int(d.get("step", 0)),
            severity=d.get("severity", "warning"),
            message=d.get("message", ""),
            advice=d.get("advice", ""),
            layers=list(d.get("layers") or []),
            fix=d.get("fix"),
        )


def _median(values: list[float]) -> float:
    vals = sorted(v for v in values if not math.isnan(v))
    if not vals:
        return math.nan
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


class Diagnoser:
    """Feeds on records one by one and reports each kind of problem once, when it first holds.

    Args:
        layers: the model's :class:`LayerInfo` (names, activations, initializers, entries).
        thresholds: the rules' thresholds. Defaults to :class:`Thresholds`.
        train: the training settings, so advice can say whether clipping is already on.

    Example:
        >>> d = Diagnoser(layers)
        >>> for record in records:
        ...     for diagnosis in d.feed(record):
        ...         print(diagnosis.message)
    """

    def __init__(
        self,
        layers: list[LayerInfo],
        thresholds: Thresholds | None = None,
        train: TrainSpec | None = None,
    ) -> None:
        self.infos = {x.name: x for x in layers}
        self.order = [x.name for x in layers]
        self.t = thresholds or Thresholds()
        self.train = train
        self.window: deque[dict[str, Any]] = deque(maxlen=self.t.window)
        self.first: list[dict[str, Any]] = []
        self.diagnoses: list[Diagnosis] = []
        self._seen: set[str] = set()

    # ------------------------------------------------------------------ feeding

    def feed(self, record: dict[str, Any]) -> list[Diagnosis]:
        """Add one record; return the diagnoses it raised for the first time."""
        self.window.append(record)
        if len(self.first) < self.t.window:
            self.first.append(record)
        found: list[Diagnosis] = []
        rules = (
            ("non_finite", self._non_finite),
            ("exploding", self._exploding),
            ("vanishing", self._vanishing),
            ("saturation", self._saturation),
            ("dead_units", self._dead),
        )
        for kind, rule in rules:
            if kind in self._seen:
                continue
            d = rule(record)
            if d is not None:
                self._add(d, found)
        if "non_finite" in self._seen and "exploding" not in self._seen:
            # Training is about to stop: judge the growth on the finite records it left, even
            # if there are fewer than a window of them (NaN often comes at step 1 or 2).
            finite = [r for r in self.window if _finite(r.get("loss", 0.0))]
            if finite:
                saved = self.window
                self.window = deque(finite, maxlen=self.t.window)
                try:
                    d = self._exploding(finite[-1], force=True)
                finally:
                    self.window = saved
                if d is not None:
                    self._add(d, found)
        return found

    def _add(self, d: Diagnosis, found: list[Diagnosis]) -> None:
        self._seen.add(d.kind)
        self.diagnoses.append(d)
        found.append(d)

    def feed_all(self, records: list[dict[str, Any]]) -> list[Diagnosis]:
        """Feed several records; return every new diagnosis."""
        out: list[Diagnosis] = []
        for r in records:
            out.extend(self.feed(r))
        return out

    # ------------------------------------------------------------------ helpers

    def _dense(self, record: dict[str, Any]) -> list[str]:
        names = [n for n in self.order if n in record["layers"]]
        dense = [n for n in names if self.infos[n].is_dense]
        return dense or names

    def _med(self, layer: str, key: str) -> float:
        return _median([r["layers"].get(layer, {}).get(key, math.nan) for r in self.window])

    def _first_med(self, layer: str, key: str) -> float:
        return _median([r["layers"].get(layer, {}).get(key, math.nan) for r in self.first])

    def _full(self) -> bool:
        return len(self.window) >= self.t.window

    # ------------------------------------------------------------------ rules

    def _non_finite(self, record: dict[str, Any]) -> Diagnosis | None:
        loss = record.get("loss", 0.0)
        bad = [
            n
            for n in self.order
            if n in record["layers"]
            and (
                record["layers"][n].get("nonfinite", 0) > 0
                or not _finite(record["layers"][n].get("weight_norm", 0.0))
            )
        ]
        if not bad and _finite(loss):
            return None
        first = bad[0] if bad else None
        where = f"gradients or weights of {first}" if first else "the loss"
        message = f"NaN/Inf in {where} at step {record['step']} (loss {loss:.4g})"
        if len(bad) > 1:
            message += f"; {len(bad)} layers affected ({layer_range(bad)})"
        advice, fix = self._explode_advice(bad or self._dense(record), nonfinite=True)
        return Diagnosis("non_finite", first, record["step"], "error", message, advice, bad, fix)

    def _exploding(self, record: dict[str, Any], force: bool = False) -> Diagnosis | None:
        if not self._full() and not force:
            return None
        dense = self._dense(record)
        t = self.t
        message = None
        affected: list[str] = []
        norms = {n: self._med(n, "grad_norm") for n in dense}
        huge = [n for n in dense if _finite(norms[n]) and norms[n] > t.exploding_norm]
        loss = _median([r.get("loss", math.nan) for r in self.window])
        if huge:
            affected = huge
            message = (
                f"gradient norm of {huge[0]} is {norms[huge[0]]:.3g} "
                f"(above {t.exploding_norm:.3g}); {len(huge)} layer(s) affected"
            )
        elif len(dense) >= 2 and _finite(norms[dense[-1]]) and norms[dense[-1]] > 0:
            top = dense[-1]
            grown = [n for n in dense[:-1] if _finite(norms[n]) and norms[n] / norms[top] > t.exploding_ratio]
            if grown:
                affected = grown
                message = f"gradient norm of {grown[0]} is {norms[grown[0]] / norms[top]:.3g} x that of {top}"
        if message is None and _finite(loss) and loss > t.exploding_loss:
            affected = dense
            message = f"loss is {loss:.3g} (above {t.exploding_loss:.3g}): the loss avalanches"
        if message is None and len(self.first) >= t.window and record["step"] > self.first[-1]["step"]:
            for n in dense:
                g0, g1 = self._first_med(n, "grad_norm"), norms[n]
                w0, w1 = self._first_med(n, "weight_norm"), self._med(n, "weight_norm")
                if _finite(g0) and g0 > 0 and _finite(g1) and g1 / g0 > t.exploding_growth:
                    affected = [n]
                    message = (
                        f"gradient norm of {n} grew {g1 / g0:.3g}x since the start ({g0:.3g} -> {g1:.3g})"
                    )
                    break
                if _finite(w0) and w0 > 1e-6 and _finite(w1) and w1 / w0 > t.weight_growth:
                    affected = [n]
                    message = f"weight norm of {n} grew {w1 / w0:.3g}x since the start ({w0:.3g} -> {w1:.3g})"
                    break
        if message is None:
            return None
        advice, fix = self._explode_advice(affected, nonfinite=False)
        return Diagnosis(
            "exploding",
            affected[0] if affected else None,
            record["step"],
            "error",
            message,
            advice,
            affected,
            fix,
        )

    def _vanishing(self, record: dict[str, Any]) -> Diagnosis | None:
        if not self._full():
            return None
        dense = self._dense(record)
        if len(dense) < 2:
            return None
        top = dense[-1]
        ratios = {}
        for n in dense[:-1]:
            vals = []
            for r in self.window:
                lo = r["layers"].get(n, {}).get("grad_norm", math.nan)
                hi = r["layers"].get(top, {}).get("grad_norm", math.nan)
                if _finite(lo) and _finite(hi) and hi > 0:
                    vals.append(lo / hi)
            ratios[n] = _median(vals)
        affected = [n for n in dense[:-1] if _finite(ratios[n]) and ratios[n] < self.t.vanishing_ratio]
        if not affected:
            return None
        worst = min(affected, key=lambda n: ratios[n])
        low = affected[0]
        severity = "error" if ratios[worst] < self.t.vanishing_ratio**2 else "warning"
        message = f"gradient norm of {low} is {ratios[low]:.2g} x that of {top}"
        if len(affected) > 1:
            message += (
                f"; {len(affected)} layers below {self.t.vanishing_ratio:.0e} ({layer_range(affected)})"
            )
        advice, fix = self._vanish_advice(affected)
        return Diagnosis("vanishing", low, record["step"], severity, message, advice, affected, fix)

    def _act_rule(self, record: dict[str, Any], key: str, kind: str, limit: float) -> Diagnosis | None:
        if not self._full():
            return None
        vals = {}
        for n in self.order:
            info = self.infos[n]
            if n in record["layers"] and key in record["layers"][n] and not info.is_output:
                vals[n] = self._med(n, key)
        affected = [n for n, v in vals.items() if _finite(v) and v > limit]
        if not affected:
            return None
        worst = max(affected, key=lambda n: vals[n])
        severity = "error" if vals[worst] > 0.9 else "warning"
        what = (
            "saturated (on the flat ends of the curve)"
            if kind == "saturation"
            else "dead (output 0 for the whole batch)"
        )
        message = f"{vals[worst]:.0%} of {worst}'s units are {what}"
        if len(affected) > 1:
            message += f"; {len(affected)} layers above {limit:.0%} ({layer_range(affected)})"
        if kind == "saturation":
            advice, fix = self._saturation_advice(affected)
        else:
            advice, fix = self._dead_advice(affected)
        return Diagnosis(kind, affected[0], record["step"], severity, message, advice, affected, fix)

    def _saturation(self, record: dict[str, Any]) -> Diagnosis | None:
        return self._act_rule(record, "saturation", "saturation", self.t.saturation)

    def _dead(self, record: dict[str, Any]) -> Diagnosis | None:
        d = self._act_rule(record, "dead", "dead_units", self.t.dead)
        return d

    # ------------------------------------------------------------------ advice

    def _groups(self, names: list[str]) -> list[tuple[list[str], LayerInfo]]:
        """Consecutive layers with the same activation, initializer and BatchNorm, grouped."""
        groups: list[tuple[list[str], LayerInfo]] = []
        for n in names:
            info = self.infos[n]
            if not info.is_dense:
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

    def _entries(self, names: list[str]) -> list[int]:
        return sorted(
            {self.infos[n].entry for n in names if n in self.infos and self.infos[n].entry is not None}
        )

    def _describe(self, names: list[str], info: LayerInfo) -> str:
        init = info.initializer.label() if info.initializer else "its initializer"
        bn = f", batch_norm = '{info.batch_norm}'" if info.batch_norm != "none" else ""
        return f"{layer_range(names)} use {info.activation} with {init}{bn}"

    def _fix(
        self, names: list[str], layer_set: dict[str, Any] | None, train_set: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        fix: dict[str, Any] = {}
        entries = self._entries(names)
        if layer_set and entries:
            fix["entries"] = entries
            fix["set"] = layer_set
        if train_set:
            fix["train"] = train_set
        return fix or None

    def _clipping(self) -> bool:
        t = self.train
        return bool(t and (t.clipnorm or t.clipvalue or t.global_clipnorm))

    def _vanish_advice(self, names: list[str]) -> tuple[str, dict[str, Any] | None]:
        groups = self._groups(names)
        if not groups:
            return "use relu with he_normal, or add batch_norm = 'before'", None
        names_all = [n for g, _ in groups for n in g]
        g_names, info = groups[0]
        act = info.activation
        if act in SATURATING or act in ("linear", "softmax"):
            advice = f"{self._describe(g_names, info)}: use relu with he_normal, or batch_norm = 'before'"
            return advice, self._fix(names_all, {"activation": "relu", "initializer": "he_normal"}, None)
        good, rule, _ = matched_init(act)
        if info.initializer is not None and not info.initializer.name.startswith(good.split("_")[0]):
            advice = f"{self._describe(g_names, info)}: use {good} ({rule}), or batch_norm = 'before'"
            return advice, self._fix(names_all, {"initializer": good}, None)
        advice = (
            f"{self._describe(g_names, info)}: the initialization already fits {act}; add "
            "batch_norm = 'before' or use fewer layers"
        )
        return advice, self._fix(names_all, {"batch_norm": "before"}, None)

    def _explode_advice(self, names: list[str], *, nonfinite: bool) -> tuple[str, dict[str, Any] | None]:
        groups = self._groups(names) or self._groups(self.order)
        clip = "" if self._clipping() else "clipnorm = 1.0"
        lr = "lower learning_rate"
        for g_names, info in groups:
            var = info.variance
            good_var = matched_variance(info.activation, info.fan_in, info.fan_out) if info.fan_in else None
            if var is not None and good_var and var > 4 * good_var:
                good, rule, _ = matched_init(info.activation)
                extra = f", and {clip}" if clip else f", and {lr}"
                advice = (
                    f"{self._describe(g_names, info)} (σ² = {var:.3g}, {var / good_var:.3g}x too large): "
                    f"use {good} ({rule}){extra}"
                )
                all_names = [n for n in names if n in self.infos and self.infos[n].is_dense] or g_names
                train = {"clipnorm": 1.0} if clip and nonfinite else None
                return advice, self._fix(all_names, {"initializer": good}, train)
        if clip:
            return f"clip gradients with {clip} (keeps their direction), or {lr}", self._fix(
                [], None, {"clipnorm": 1.0}
            )
        lr_now = self.train.learning_rate if self.train else 0.01
        return (
            f"gradients are already clipped; {lr} (e.g. {lr_now / 10:g}) or add batch_norm",
            self._fix([], None, {"learning_rate": lr_now / 10}),
        )

    def _saturation_advice(self, names: list[str]) -> tuple[str, dict[str, Any] | None]:
        groups = self._groups(names)
        if not groups:
            return "use relu with he_normal, or batch_norm = 'before'", None
        g_names, info = groups[0]
        var = info.variance
        good_var = matched_variance(info.activation, info.fan_in, info.fan_out) if info.fan_in else None
        if var is not None and good_var and var > 4 * good_var:
            good, rule, _ = matched_init(info.activation)
            advice = (
                f"{self._describe(g_names, info)} (σ² = {var:.3g}, {var / good_var:.3g}x {rule}): "
                f"use {good}, or batch_norm = 'before' to keep pre-activations near 0"
            )
            return advice, self._fix(names, {"initializer": good}, None)
        advice = f"{self._describe(g_names, info)}: add batch_norm = 'before', or use relu with he_normal"
        return advice, self._fix(names, {"batch_norm": "before"}, None)

    def _dead_advice(self, names: list[str]) -> tuple[str, dict[str, Any] | None]:
        groups = self._groups(names)
        if not groups:
            return "use leaky_relu or elu with he_normal, or lower the learning_rate", None
        g_names, info = groups[0]
        advice = (
            f"{self._describe(g_names, info)}: use leaky_relu (negative_slope 0.2) or elu with "
            "he_normal, keep bias_initializer = 'zeros', or lower learning_rate"
        )
        return advice, self._fix(
            names,
            {
                "activation": {"name": "leaky_relu", "negative_slope": 0.2},
                "initializer": "he_normal",
                "bias_initializer": "zeros",
            },
            None,
        )


def diagnose(
    records: list[dict[str, Any]],
    layers: list[LayerInfo],
    thresholds: Thresholds | None = None,
    train: TrainSpec | None = None,
) -> list[Diagnosis]:
    """All diagnoses over a finished list of records."""
    d = Diagnoser(layers, thresholds, train)
    d.feed_all(records)
    return d.diagnoses
