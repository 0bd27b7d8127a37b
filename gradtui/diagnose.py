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
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradtui.diagnosis import KINDS, Diagnosis
from gradtui.preset import Thresholds, TrainSpec
from gradtui.stack import SATURATING, LayerInfo, layer_range, matched_init, matched_variance

_KEYS = ("grad_norm", "weight_norm", "nonfinite", "saturation", "dead")
_GRAD, _WEIGHT, _NONFINITE = 0, 1, 2


@dataclass
class _Row:
    """One record as numbers: a row per layer, a column per statistic of ``_KEYS``."""

    step: int
    loss: float
    stats: np.ndarray


def _nanmedian(a: np.ndarray) -> np.ndarray:
    """Median over axis 0 ignoring NaN; NaN where a column has no number (no warning)."""
    n = (~np.isnan(a)).sum(axis=0)
    s = np.sort(a, axis=0)  # NaN sorts last
    cols = np.arange(a.shape[1])
    lo, hi = np.maximum(n - 1, 0) // 2, n // 2
    hi = np.minimum(hi, a.shape[0] - 1)
    out = (s[lo, cols] + s[hi, cols]) / 2
    out[n == 0] = math.nan
    return out


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
        self.diagnoses: list[Diagnosis] = []
        self._seen: set[str] = set()
        # The recorded layers, fixed by the first record; each record becomes one row of
        # numbers per statistic, so every rule is a few numpy operations over the window.
        self.names: list[str] = []
        self._pos: dict[str, int] = {}
        self._dense_idx: list[int] = []
        self._hidden: np.ndarray = np.zeros(0, bool)
        self.window: deque[_Row] = deque(maxlen=self.t.window)
        self.first: list[_Row] = []
        self._first_med: dict[str, np.ndarray] = {}
        self._medians: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ feeding

    def _start(self, record: dict[str, Any]) -> None:
        self._start_names(list(record["layers"]))

    def _start_names(self, layers: list[str]) -> None:
        self.names = [n for n in self.order if n in layers] + [n for n in layers if n not in self.infos]
        self._pos = {n: i for i, n in enumerate(self.names)}
        dense = [i for i, n in enumerate(self.names) if n in self.infos and self.infos[n].is_dense]
        self._dense_idx = dense or list(range(len(self.names)))
        self._hidden = np.array([not (n in self.infos and self.infos[n].is_output) for n in self.names], bool)

    def _row(self, record: dict[str, Any]) -> _Row:
        layers = record["layers"]
        stats = np.array(
            [[float(layers.get(n, {}).get(k, math.nan)) for k in _KEYS] for n in self.names], dtype=float
        ).reshape(len(self.names), len(_KEYS))
        return _Row(int(record["step"]), float(record.get("loss", math.nan)), stats)

    def feed(self, record: dict[str, Any]) -> list[Diagnosis]:
        """Add one record; return the diagnoses it raised for the first time."""
        if not self.names:
            self._start(record)
        return self._feed_row(self._row(record))

    def _append(self, row: _Row) -> None:
        self.window.append(row)
        self._medians = {}
        if len(self.first) < self.t.window:
            self.first.append(row)
            self._first_med = {}

    def _feed_row(self, row: _Row) -> list[Diagnosis]:
        self._append(row)
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
            d = rule(row)
            if d is not None:
                self._add(d, found)
        if "non_finite" in self._seen and "exploding" not in self._seen:
            # Training is about to stop: judge the growth on the finite records it left, even
            # if there are fewer than a window of them (NaN often comes at step 1 or 2).
            finite = [r for r in self.window if _finite(r.loss)]
            if finite:
                saved = self.window
                self.window = deque(finite, maxlen=self.t.window)
                self._medians = {}
                try:
                    d = self._exploding(finite[-1], force=True)
                finally:
                    self.window = saved
                    self._medians = {}
                if d is not None:
                    self._add(d, found)
        return found

    def _add(self, d: Diagnosis, found: list[Diagnosis]) -> None:
        self._seen.add(d.kind)
        self.diagnoses.append(d)
        found.append(d)

    def feed_all(self, records: list[dict[str, Any]]) -> list[Diagnosis]:
        """Feed several records; return every new diagnosis.

        The same diagnoses, at the same steps, as :meth:`feed` record by record: the rules'
        conditions are first checked for the whole batch at once (numpy over sliding windows),
        and only a record where one may hold goes through the rules one by one.
        """
        if not records:
            return []
        if not self.names:
            self._start(records[0])
        return self._feed_rows([self._row(r) for r in records])

    def feed_block(self, block: Any) -> list[Diagnosis]:
        """Feed a drain's statistics as arrays (a :class:`gradtui.probe.Records`): the same
        diagnoses as :meth:`feed_all` with its records, without building them."""
        if not len(block):
            return []
        names = block.names
        if not self.names:
            self._start_names(names)
        table = np.stack([block.field(k) for k in _KEYS], axis=-1)  # rows x layers x _KEYS
        if names != self.names:
            pos = {n: i for i, n in enumerate(names)}
            table = np.stack(
                [table[:, pos[n]] if n in pos else np.full(table[:, 0].shape, math.nan) for n in self.names],
                axis=1,
            )
        steps, losses = block.steps.tolist(), block.losses.tolist()
        return self._feed_rows([_Row(steps[i], losses[i], table[i]) for i in range(len(steps))])

    def _feed_rows(self, rows: list[_Row]) -> list[Diagnosis]:
        out: list[Diagnosis] = []
        i = 0
        while i < len(rows):
            j = self._next_candidate(rows, i)
            for row in rows[i:j]:
                self._append(row)
            if j < len(rows):
                out.extend(self._feed_row(rows[j]))
            i = j + 1
        return out

    def _next_candidate(self, rows: list[_Row], i: int) -> int:
        """The first index >= i where a rule not yet raised may hold (``len(rows)`` if none)."""
        w = self.t.window
        if len(self.first) < w or len(self.window) < w - 1:
            return i  # the first records go through the rules themselves
        unseen = set(KINDS) - self._seen
        if not unseen:
            return len(rows)
        new = rows[i:]
        history = list(self.window)[len(self.window) - (w - 1) :] + new
        stats = np.stack([r.stats for r in history])  # (w - 1 + n) x layers x statistics
        losses = np.array([r.loss for r in history])
        n = len(new)
        hits = np.zeros(n, bool)
        if "non_finite" in unseen:
            s = stats[w - 1 :]
            hits |= (s[:, :, _NONFINITE] > 0).any(1) | ~np.isfinite(s[:, :, _WEIGHT]).all(1)
            hits |= ~np.isfinite(losses[w - 1 :])
        windows = np.lib.stride_tricks.sliding_window_view(stats, w, axis=0)  # n x L x K x w
        med = _nanmedian(np.moveaxis(windows, -1, 0).reshape(w, -1)).reshape(n, *stats.shape[1:])
        with np.errstate(divide="ignore", invalid="ignore"):
            if "exploding" in unseen:
                t = self.t
                dense = self._dense_idx
                g = med[:, dense, _GRAD]
                top = g[:, -1:]
                hits |= (g > t.exploding_norm).any(1)
                hits |= ((g[:, :-1] / np.where(top > 0, top, np.nan)) > t.exploding_ratio).any(1)
                loss_win = np.lib.stride_tricks.sliding_window_view(losses, w)
                hits |= _nanmedian(loss_win.T) > t.exploding_loss
                g0 = self._first("grad_norm")[dense]
                w0 = self._first("weight_norm")[dense]
                hits |= ((g0 > 0) & (g / g0 > t.exploding_growth)).any(1)
                hits |= ((w0 > 1e-6) & (med[:, dense, _WEIGHT] / w0 > t.weight_growth)).any(1)
            if "vanishing" in unseen and len(self._dense_idx) >= 2:
                lower, top_i = self._dense_idx[:-1], self._dense_idx[-1]
                hi = stats[:, top_i : top_i + 1, _GRAD]
                ratio = np.where((hi > 0) & np.isfinite(hi), stats[:, lower, _GRAD] / hi, np.nan)
                rwin = np.lib.stride_tricks.sliding_window_view(ratio, w, axis=0)  # n x lower x w
                rmed = _nanmedian(np.moveaxis(rwin, -1, 0).reshape(w, -1)).reshape(n, len(lower))
                hits |= (rmed < self.t.vanishing_ratio).any(1)
            for kind, key, limit in (
                ("saturation", "saturation", self.t.saturation),
                ("dead_units", "dead", self.t.dead),
            ):
                if kind in unseen:
                    hits |= (med[:, self._hidden, _KEYS.index(key)] > limit).any(1)
        found = np.flatnonzero(hits)
        return i + int(found[0]) if len(found) else len(rows)

    # ------------------------------------------------------------------ helpers

    def _med(self, key: str) -> np.ndarray:
        """Per-layer median of one statistic over the window (NaN values left out)."""
        if "all" not in self._medians:
            win = np.stack([r.stats for r in self.window])  # window x layers x statistics
            self._medians["all"] = _nanmedian(win.reshape(len(win), -1)).reshape(win.shape[1:])
        return self._medians["all"][:, _KEYS.index(key)]

    def _first(self, key: str) -> np.ndarray:
        if "all" not in self._first_med:
            win = np.stack([r.stats for r in self.first])
            self._first_med["all"] = _nanmedian(win.reshape(len(win), -1)).reshape(win.shape[1:])
        return self._first_med["all"][:, _KEYS.index(key)]

    def _full(self) -> bool:
        return len(self.window) >= self.t.window

    # ------------------------------------------------------------------ rules

    def _non_finite(self, row: _Row) -> Diagnosis | None:
        s = row.stats
        bad_mask = (s[:, _NONFINITE] > 0) | np.isinf(s[:, _WEIGHT]) | np.isnan(s[:, _WEIGHT])
        if not bad_mask.any() and _finite(row.loss):
            return None
        bad = [self.names[i] for i in np.flatnonzero(bad_mask)]
        first = bad[0] if bad else None
        where = f"gradients or weights of {first}" if first else "the loss"
        message = f"NaN/Inf in {where} at step {row.step} (loss {row.loss:.4g})"
        if len(bad) > 1:
            message += f"; {len(bad)} layers affected ({layer_range(bad)})"
        advice, fix = self._explode_advice(bad or self._dense_names(), nonfinite=True)
        return Diagnosis("non_finite", first, row.step, "error", message, advice, bad, fix)

    def _dense_names(self) -> list[str]:
        return [self.names[i] for i in self._dense_idx]

    def _exploding(self, row: _Row, force: bool = False) -> Diagnosis | None:
        if not self._full() and not force:
            return None
        t = self.t
        dense = np.asarray(self._dense_idx)
        norms = self._med("grad_norm")
        nd = norms[dense]
        finite = np.isfinite(nd)
        message = None
        affected: np.ndarray = dense[:0]
        huge = dense[finite & (nd > t.exploding_norm)]
        losses = np.array([r.loss for r in self.window])
        loss = float(np.median(losses[np.isfinite(losses)])) if np.isfinite(losses).any() else math.nan
        top = int(dense[-1])
        if len(huge):
            affected = huge
            message = (
                f"gradient norm of {self.names[huge[0]]} is {norms[huge[0]]:.3g} "
                f"(above {t.exploding_norm:.3g}); {len(huge)} layer(s) affected"
            )
        elif len(dense) >= 2 and _finite(norms[top]) and norms[top] > 0:
            ratio = nd[:-1] / norms[top]
            grown = dense[:-1][finite[:-1] & (ratio > t.exploding_ratio)]
            if len(grown):
                affected = grown
                message = (
                    f"gradient norm of {self.names[grown[0]]} is {norms[grown[0]] / norms[top]:.3g} x "
                    f"that of {self.names[top]}"
                )
        if message is None and _finite(loss) and loss > t.exploding_loss:
            affected = dense
            message = f"loss is {loss:.3g} (above {t.exploding_loss:.3g}): the loss avalanches"
        if message is None and len(self.first) >= t.window and row.step > self.first[-1].step:
            g0 = self._first("grad_norm")[dense]
            w0 = self._first("weight_norm")[dense]
            w1 = self._med("weight_norm")[dense]
            with np.errstate(divide="ignore", invalid="ignore"):
                g_grew = np.isfinite(g0) & (g0 > 0) & finite & (nd / g0 > t.exploding_growth)
                w_grew = np.isfinite(w0) & (w0 > 1e-6) & np.isfinite(w1) & (w1 / w0 > t.weight_growth)
            hits = np.flatnonzero(g_grew | w_grew)
            if len(hits):
                j = int(hits[0])
                n = self.names[dense[j]]
                affected = dense[j : j + 1]
                if g_grew[j]:
                    message = (
                        f"gradient norm of {n} grew {nd[j] / g0[j]:.3g}x since the start "
                        f"({g0[j]:.3g} -> {nd[j]:.3g})"
                    )
                else:
                    message = (
                        f"weight norm of {n} grew {w1[j] / w0[j]:.3g}x since the start "
                        f"({w0[j]:.3g} -> {w1[j]:.3g})"
                    )
        if message is None:
            return None
        names = [self.names[i] for i in affected]
        advice, fix = self._explode_advice(names, nonfinite=False)
        return Diagnosis(
            "exploding", names[0] if names else None, row.step, "error", message, advice, names, fix
        )

    def _vanishing(self, row: _Row) -> Diagnosis | None:
        if not self._full() or len(self._dense_idx) < 2:
            return None
        lower, top = self._dense_idx[:-1], self._dense_idx[-1]
        g = np.stack([r.stats[:, _GRAD] for r in self.window])  # window x layers
        hi = g[:, top : top + 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where((hi > 0) & np.isfinite(hi), g[:, lower] / hi, math.nan)
        ratios = _nanmedian(ratio)
        affected = [
            i for i, r in zip(lower, ratios, strict=True) if _finite(r) and r < self.t.vanishing_ratio
        ]
        if not affected:
            return None
        by = dict(zip(lower, ratios, strict=True))
        worst = min(affected, key=lambda i: by[i])
        low = affected[0]
        names = [self.names[i] for i in affected]
        severity = "error" if by[worst] < self.t.vanishing_ratio**2 else "warning"
        message = f"gradient norm of {names[0]} is {by[low]:.2g} x that of {self.names[top]}"
        if len(affected) > 1:
            message += f"; {len(affected)} layers below {self.t.vanishing_ratio:.0e} ({layer_range(names)})"
        advice, fix = self._vanish_advice(names)
        return Diagnosis("vanishing", names[0], row.step, severity, message, advice, names, fix)

    def _act_rule(self, row: _Row, key: str, kind: str, limit: float) -> Diagnosis | None:
        if not self._full():
            return None
        vals = self._med(key)
        over = np.flatnonzero(self._hidden & np.isfinite(vals) & (vals > limit))
        if not len(over):
            return None
        names = [self.names[i] for i in over]
        worst = int(over[np.argmax(vals[over])])
        severity = "error" if vals[worst] > 0.9 else "warning"
        what = (
            "saturated (on the flat ends of the curve)"
            if kind == "saturation"
            else "dead (output 0 for the whole batch)"
        )
        message = f"{vals[worst]:.0%} of {self.names[worst]}'s units are {what}"
        if len(names) > 1:
            message += f"; {len(names)} layers above {limit:.0%} ({layer_range(names)})"
        if kind == "saturation":
            advice, fix = self._saturation_advice(names)
        else:
            advice, fix = self._dead_advice(names)
        return Diagnosis(kind, names[0], row.step, severity, message, advice, names, fix)

    def _saturation(self, row: _Row) -> Diagnosis | None:
        return self._act_rule(row, "saturation", "saturation", self.t.saturation)

    def _dead(self, row: _Row) -> Diagnosis | None:
        return self._act_rule(row, "dead", "dead_units", self.t.dead)

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

    def _entry_layers(self, names: list[str]) -> list[str]:
        """The Dense layers of the ``[[layers]]`` entries ``names`` come from (all their repeats),
        in model order: what a fix on those entries changes. Layers without an entry (a user's
        own model) stay as given."""
        entries = set(self._entries(names))
        if not entries:
            return names
        return [n for n in self.order if self.infos[n].is_dense and self.infos[n].entry in entries]

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
                # A fix changes whole [[layers]] entries: the advice names every layer of the
                # entries it changes, and nothing else (not the softmax output layer whose
                # gradients merely grew with the rest); "and" only for what the fix also sets.
                named = self._entry_layers(g_names)
                train = {"clipnorm": 1.0} if clip and nonfinite else None
                extra = f", and {clip}" if train else (f", or {clip}" if clip else f", or {lr}")
                advice = (
                    f"{self._describe(named, info)} (σ² = {var:.3g}, {var / good_var:.3g}x too large): "
                    f"use {good} ({rule}){extra}"
                )
                return advice, self._fix(named, {"initializer": good}, train)
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
