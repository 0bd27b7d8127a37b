"""Diagnoses: pure functions over recorded statistics, no TensorFlow.

Each rule reads the median of the last ``window`` records, so one noisy step raises nothing,
while a problem present from the start is flagged after ``window`` records (step 2 with
``every = 1``), long before the loss curve would tell anyone. Thresholds are principled orders
of magnitude (see :class:`gradtui.preset.Thresholds`), overridable in ``[monitor]``.

Each rule is written once, as numpy over a block of windows (:class:`_Views`): a drain of the
recorder is judged at once, and a single record is a block of one row. A rule gives, for every
row, whether its condition holds and, for the row where it first holds, the diagnosis. A
diagnosis whose condition stops holding gets ``cleared_step`` and stays in the list; if the
condition comes back, ``cleared_step`` is reset to ``None`` (the entry keeps the step and the
message of its first raising, and is not reported as new again). After ``non_finite`` nothing
clears: the statistics of a network with NaN in it say nothing about its health.

Every diagnosis carries advice specific to the stack (which layers, what to change them to),
drawn from the four remedies: initialization matched to the activation, a non-saturating
activation, batch normalization, gradient clipping, or the learning rate; and a
machine-readable ``fix`` the TUI applies with one key.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradtui.diagnosis import Diagnosis, keras_terms
from gradtui.preset import Thresholds, TrainSpec
from gradtui.stack import SATURATING, LayerInfo, layer_range, matched_init, matched_variance

#: the per-layer statistics the rules read, by their ``stats.jsonl`` names; a column a record or
#: a drain does not have is NaN (``act_mean``: the mean output of a layer's activation)
KEYS = (
    "grad_norm",
    "weight_norm",
    "nonfinite",
    "saturation",
    "dead",
    "update_ratio",
    "act_mean",
    "time_ratio",
)
COL = {k: i for i, k in enumerate(KEYS)}
#: this many weighted layers without skip connections or normalization make a deep plain stack
DEEP_PLAIN = 16
#: a single step whose update is this fraction of the layer's weights after it (‖Δw‖/‖w‖; 1 when
#: the step threw the weights far from where they were) is a one-step catastrophe, when the
#: gradient was huge or the weights grew ``weight_growth`` times from their initial norm
ONE_STEP_RATIO = 0.5
#: the diagnoses an explosion explains: units saturated or dead and gradients vanished because
#: the weights were thrown out; raised only while nothing explodes
AFTER_EXPLOSION = ("vanishing", "saturation", "dead_units", "one_sided_saturation")
#: ``bn_statistics``: training-mode accuracy above inference-mode accuracy by more than this
BN_ACCURACY_GAP = 0.2
#: ``bn_statistics`` of a regression: inference-mode loss above this multiple of training-mode's
BN_LOSS_RATIO = 2.0
#: the BatchNorm momentum the ``bn_statistics`` fix sets (averages over ~10 steps)
BN_MOMENTUM_FIX = 0.9
#: layers whose gradients scale differently from a weight layer's (per-feature affine
#: parameters): left out of the depth comparisons (vanishing, exploding, learning rate)
NORMALIZATION = ("BatchNormalization", "LayerNormalization", "GroupNormalization", "UnitNormalization")
#: layers whose weights are an activation's parameters, not a transformation of the signal
ACTIVATION_TYPES = ("PReLU", "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax")
RECURRENT = ("SimpleRNN", "LSTM", "GRU", "Bidirectional", "RNN")
#: output range (low, high) of the activations whose mean says which asymptote they approach
RANGES = {"sigmoid": (0.0, 1.0), "hard_sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "softsign": (-1.0, 1.0)}


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


def _number(value: Any) -> float:
    """A record's value as a float; NaN for what is not a number (a field left out, null)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _window_median(x: np.ndarray, w: int) -> np.ndarray:
    """Median (NaN left out) of each run of ``w`` consecutive rows: ``len(x) - w + 1`` rows."""
    win = np.lib.stride_tricks.sliding_window_view(x, w, axis=0)  # n x ... x w
    n = win.shape[0]
    return _nanmedian(np.moveaxis(win, -1, 0).reshape(w, -1)).reshape(n, *x.shape[1:])


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


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _round_lr(x: float) -> float:
    """A learning rate to one significant digit (0.0523 -> 0.05)."""
    return float(f"{x:.0e}")


@dataclass
class _Views:
    """What the rules read for ``n`` consecutive rows: each row's own values and the medians
    of the window of ``w`` records that ends at it."""

    steps: np.ndarray  # (n,)
    losses: np.ndarray  # (n,) the row's own loss
    last: np.ndarray  # (n, L, K) the row's own statistics
    med: np.ndarray  # (n, L, K) window medians
    loss_med: np.ndarray  # (n,) window median of the finite losses
    vratio: np.ndarray  # (n, D - 1) window median of each lower depth layer's norm / the top's
    full: np.ndarray  # (n,) a whole window of records ends here
    grown: np.ndarray  # (n,) past the first window: growth since the start can be judged
    plateau: np.ndarray  # (n,) mean loss over the last plateau_steps steps (NaN: too early)
    recent: np.ndarray  # (n,) mean loss over the second half of those steps

    def __len__(self) -> int:
        return len(self.steps)


#: a rule: for every row of the views whether it holds, and the diagnosis at a row
_Rule = Callable[[_Views], tuple[np.ndarray, Callable[[int], Diagnosis]]]


class Diagnoser:
    """Feeds on records and reports each kind of problem once, when it first holds, and when
    it stops holding (``cleared_step``).

    Args:
        layers: the model's :class:`LayerInfo` (names, activations, initializers, entries).
        thresholds: the rules' thresholds. Defaults to :class:`Thresholds`.
        train: the training settings, so advice can say whether clipping is already on and
            which learning rate to use.
        initial_weights: each layer's weight norm before the first update (the recorded
            ``weight_norm`` is taken after each step's update). Without it, weight growth is
            judged from the first records.

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
        initial_weights: dict[str, float] | None = None,
        keras_terms: bool = False,
    ) -> None:
        self.infos = {x.name: x for x in layers}
        #: advice in Keras terms rather than preset keys (a ``gradtui.watch`` of the user's own code)
        self.keras_terms = keras_terms
        #: each layer's weight norm before any update (the reference of weight growth)
        self.initial_weights = dict(initial_weights or {})
        self.order = [x.name for x in layers]
        self.t = thresholds or Thresholds()
        self.train = train
        self.diagnoses: list[Diagnosis] = []
        self._by_kind: dict[str, Diagnosis] = {}
        self._frozen = False  # set by non_finite: nothing clears or is raised again after it
        # The recorded layers, fixed by the first record.
        self.names: list[str] = []
        self._depth: np.ndarray = np.zeros(0, int)
        self._hidden: np.ndarray = np.zeros(0, bool)
        self._range: np.ndarray = np.zeros((0, 2))
        self._w_init: np.ndarray = np.zeros(0)
        self.classes = self._classes(layers)
        # The last window - 1 rows (to complete the windows of the next rows), the first
        # window's rows (growth since the start), the loss history of the last plateau_steps.
        self._tail: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._count = 0
        self._first: list[np.ndarray] = []
        self._first_med: np.ndarray | None = None
        self._loss_steps = np.zeros(0, np.int64)
        self._loss_vals = np.zeros(0)
        self._step0: int | None = None

    @staticmethod
    def _classes(layers: list[LayerInfo]) -> int | None:
        out = next((x for x in reversed(layers) if x.is_output), None)
        if out is None:
            return None
        if out.activation == "softmax" and out.fan_out >= 2:
            return out.fan_out
        if out.activation == "sigmoid" and out.fan_out == 1:
            return 2
        return None

    # ------------------------------------------------------------------ feeding

    def _start_names(self, layers: list[str]) -> None:
        self.names = [n for n in self.order if n in layers] + [n for n in layers if n not in self.infos]
        infos = [self.infos.get(n) for n in self.names]
        depth = [
            i
            for i, x in enumerate(infos)
            if x is None or (x.type not in NORMALIZATION and x.type not in ACTIVATION_TYPES)
        ]
        self._depth = np.array(depth or list(range(len(self.names))), int)
        self._hidden = np.array([not (x is not None and x.is_output) for x in infos], bool)
        self._w_init = np.array([float(self.initial_weights.get(n, math.nan)) for n in self.names], float)
        self._range = np.array(
            [RANGES.get(x.activation if x is not None else "", (math.nan, math.nan)) for x in infos], float
        ).reshape(len(self.names), 2)

    def _raised(self, d: Diagnosis) -> Diagnosis:
        """A diagnosis as it is raised: its advice in Keras terms for a ``watch`` of user code."""
        if self.keras_terms:
            d.advice = keras_terms(d.advice)
        return d

    def feed(self, record: dict[str, Any]) -> list[Diagnosis]:
        """Add one record; return the diagnoses it raised for the first time."""
        return self.feed_all([record])

    def feed_all(self, records: list[dict[str, Any]]) -> list[Diagnosis]:
        """Feed several records (``stats.jsonl`` dicts); return every new diagnosis."""
        if not records:
            return []
        if not self.names:
            self._start_names(list(records[0]["layers"]))
        stats = np.array(
            [[[_number(r["layers"].get(n, {}).get(k)) for k in KEYS] for n in self.names] for r in records],
            dtype=float,
        ).reshape(len(records), len(self.names), len(KEYS))
        steps = np.array([int(r["step"]) for r in records], np.int64)
        # a loss of null (computed out of gradtui's sight) is unknown, not NaN: as in the
        # monitor's drains it is given as 0 and takes part in no alarm
        losses = np.array([0.0 if r.get("loss") is None else _number(r.get("loss")) for r in records], float)
        return self._feed_rows(steps, losses, stats)

    def feed_block(self, block: Any) -> list[Diagnosis]:
        """Feed a drain's statistics as arrays (a :class:`gradtui.probe.Records`, read by column
        name with ``block.field``): the same diagnoses as :meth:`feed_all` with its records."""
        if not len(block):
            return []
        names = block.names
        if not self.names:
            self._start_names(names)
        n = len(block)
        cols = []
        for k in KEYS:
            try:
                cols.append(np.asarray(block.field(k), float))
            except (KeyError, ValueError, IndexError):
                cols.append(np.full((n, len(names)), math.nan))
        table = np.stack(cols, axis=-1)  # rows x layers x KEYS
        if names != self.names:
            pos = {x: i for i, x in enumerate(names)}
            table = np.stack(
                [table[:, pos[x]] if x in pos else np.full(table[:, 0].shape, math.nan) for x in self.names],
                axis=1,
            )
        return self._feed_rows(np.asarray(block.steps, np.int64), np.asarray(block.losses, float), table)

    def _feed_rows(self, steps: np.ndarray, losses: np.ndarray, stats: np.ndarray) -> list[Diagnosis]:
        views = self._views(steps, losses, stats)
        rules: list[tuple[str, _Rule]] = [
            ("non_finite", self._non_finite),
            ("exploding", self._exploding),
            ("vanishing", self._vanishing),
            ("saturation", self._saturation),
            ("dead_units", self._dead),
            ("one_sided_saturation", self._one_sided),
            ("learning_rate", self._learning_rate),
            ("not_learning", self._not_learning),
        ]
        holds = {}
        build = {}
        for kind, rule in rules:
            holds[kind], build[kind] = rule(views)
        found: list[Diagnosis] = []
        kinds = [k for k, _ in rules]
        n = len(views)
        i = 0
        while i < n:
            # the next row where some kind changes: raised (or raised again) or cleared
            on = {k: k in self._by_kind and self._by_kind[k].cleared_step is None for k in kinds}
            eff = np.stack([self._effective(k, holds[k][i:], on) for k in kinds])
            state = np.array([on[k] for k in kinds])[:, None]
            changed = eff != state
            if self._frozen:  # after non_finite a raised diagnosis stays as it is
                changed &= ~np.array([k in self._by_kind for k in kinds])[:, None]
            change = np.flatnonzero(changed.any(0))
            if not len(change):
                break
            c = int(change[0])
            i += c
            for k, h, moved in zip(kinds, eff[:, c], changed[:, c], strict=True):
                if not moved:
                    continue
                d = self._by_kind.get(k)
                if h and d is None:
                    now = {x: x in self._by_kind and self._by_kind[x].cleared_step is None for x in kinds}
                    if not self._effective(k, holds[k][i : i + 1], now)[0]:
                        continue  # explained by a diagnosis raised at this same row
                    d = self._raised(build[k](i))
                    self._by_kind[k] = d
                    self.diagnoses.append(d)
                    found.append(d)
                elif h and d is not None:
                    d.cleared_step = None
                elif not h and d is not None:
                    d.cleared_step = int(views.steps[i])
            if not self._frozen and "non_finite" in self._by_kind:
                self._frozen = True
                found.extend(self._exploding_before_nan(views, i))
            i += 1
        return found

    def _effective(self, kind: str, holds: np.ndarray, on: dict[str, bool]) -> np.ndarray:
        """Whether a kind holds, given what else is raised: updates out of range in a network
        whose gradients explode, vanish or die are those diagnoses' to tell, and a network that does not learn is
        worth a diagnosis of its own only while nothing else explains it. Only the raising
        depends on the others: a raised diagnosis clears when its own condition stops."""
        if on[kind]:
            return holds
        if kind == "learning_rate" and any(
            on[k] for k in ("exploding", "non_finite", "vanishing", "dead_units")
        ):
            # the steps are out of range because the gradients are: the learning rate is not the cause
            return np.zeros_like(holds)
        if kind in AFTER_EXPLOSION and (on["exploding"] or on["non_finite"]):
            return np.zeros_like(holds)
        if kind == "not_learning" and any(v for k, v in on.items() if k != "not_learning"):
            return np.zeros_like(holds)
        return holds

    def _exploding_before_nan(self, views: _Views, i: int) -> list[Diagnosis]:
        """Training is about to stop: judge the growth on the finite records left in the
        window that ends at row ``i``, even fewer than a window of them (NaN often comes at
        step 1 or 2)."""
        if "exploding" in self._by_kind:
            return []
        h_steps, h_losses, h_stats, offset = self._h
        end = offset + i + 1
        lo = max(0, end - self.t.window)
        keep = np.flatnonzero(np.isfinite(h_losses[lo:end])) + lo
        if not len(keep):
            return []
        w = len(keep)
        stats = h_stats[keep]
        last_index = self._count - len(h_steps) + int(keep[-1])  # global index of the row judged
        one = _Views(
            steps=h_steps[keep[-1:]],
            losses=h_losses[keep[-1:]],
            last=stats[-1:],
            med=_window_median(stats, w),
            loss_med=_window_median(h_losses[keep][:, None], w)[:, 0],
            vratio=self._vratio_median(stats, w),
            full=np.ones(1, bool),
            grown=np.array([last_index >= self.t.window and self._first_med is not None]),
            plateau=np.full(1, math.nan),
            recent=np.full(1, math.nan),
        )
        holds, build = self._exploding(one)
        if not holds[0]:
            return []
        d = self._raised(build(0))
        self._by_kind["exploding"] = d
        self.diagnoses.append(d)
        return [d]

    def _views(self, steps: np.ndarray, losses: np.ndarray, stats: np.ndarray) -> _Views:
        """The rows with the windows that end at them (the last rows of earlier feeds complete
        the first windows); keeps what the next feed needs."""
        w, n = self.t.window, len(steps)
        L, K = len(self.names), len(KEYS)
        if self._tail is None:
            self._tail = (np.zeros(0, np.int64), np.zeros(0), np.zeros((0, L, K)))
        t_steps, t_losses, t_stats = self._tail
        h_steps = np.concatenate([t_steps, steps])
        h_losses = np.concatenate([t_losses, losses])
        h_stats = np.concatenate([t_stats, stats])
        t = len(t_steps)
        self._h = (h_steps, h_losses, h_stats, t)
        index = np.arange(self._count, self._count + n)  # each new row's global index
        if len(self._first) < w:
            self._first.extend(stats[: w - len(self._first)])
            if len(self._first) == w:
                self._first_med = _window_median(np.stack(self._first), w)[0]
        # pad to a whole window before the first row: NaN is left out of every median
        pad = np.full((w - 1 - t, L, K), math.nan)
        p_stats = np.concatenate([pad, h_stats])
        p_losses = np.concatenate([np.full(w - 1 - t, math.nan), h_losses])
        p_losses = np.where(np.isfinite(p_losses), p_losses, math.nan)
        plateau, recent = self._plateau(steps, losses)
        views = _Views(
            steps=steps,
            losses=losses,
            last=stats,
            med=_window_median(p_stats, w),
            loss_med=_window_median(p_losses[:, None], w)[:, 0],
            vratio=self._vratio_median(p_stats, w),
            full=index >= w - 1,
            grown=(index >= w) & (self._first_med is not None),
            plateau=plateau,
            recent=recent,
        )
        keep = max(w - 1, 0)
        self._tail = (
            h_steps[len(h_steps) - keep :],
            h_losses[len(h_steps) - keep :],
            h_stats[len(h_steps) - keep :],
        )
        self._count += n
        return views

    def _vratio_median(self, stats: np.ndarray, w: int) -> np.ndarray:
        """Window median of each lower depth layer's gradient norm over the top layer's."""
        d = self._depth
        if len(d) < 2:
            return np.full((len(stats) - w + 1, 0), math.nan)
        g = stats[:, d, COL["grad_norm"]]
        hi = g[:, -1:]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where((hi > 0) & np.isfinite(hi), g[:, :-1] / hi, math.nan)
        return _window_median(ratio, w)

    def _plateau(self, steps: np.ndarray, losses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each row, the mean loss over the last ``plateau_steps`` steps and over their
        second half (NaN before that many steps were seen)."""
        span = max(1, int(self.t.plateau_steps))
        if self._step0 is None:
            self._step0 = int(steps[0])
        all_steps = np.concatenate([self._loss_steps, steps])
        all_losses = np.concatenate([self._loss_vals, losses])
        ok = np.isfinite(all_losses)
        csum = np.concatenate([[0.0], np.cumsum(np.where(ok, all_losses, 0.0))])
        ccount = np.concatenate([[0], np.cumsum(ok)])
        n0 = len(self._loss_steps)
        ends = np.arange(n0, len(all_steps)) + 1

        def mean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            cnt = ccount[b] - ccount[a]
            with np.errstate(divide="ignore", invalid="ignore"):
                m = (csum[b] - csum[a]) / cnt
            bad = (ccount[b] - ccount[a]) != (b - a)  # a NaN/Inf loss in the span
            return np.where((cnt > 0) & ~bad, m, math.nan)

        starts = np.searchsorted(all_steps, steps - span, side="right")
        mids = np.searchsorted(all_steps, steps - span // 2, side="right")
        whole = mean(starts, ends)
        recent = mean(mids, ends)
        early = steps - self._step0 < span
        whole[early] = math.nan
        keep = all_steps > all_steps[-1] - span
        self._loss_steps, self._loss_vals = all_steps[keep], all_losses[keep]
        return whole, recent

    # ------------------------------------------------------------------ rules

    def _non_finite(self, v: _Views) -> tuple[np.ndarray, Callable[[int], Diagnosis]]:
        s = v.last
        bad_mask = (s[:, :, COL["nonfinite"]] > 0) | ~np.isfinite(s[:, :, COL["weight_norm"]])
        holds = bad_mask.any(1) | ~np.isfinite(v.losses)

        def build(j: int) -> Diagnosis:
            step, loss = int(v.steps[j]), float(v.losses[j])
            bad = [self.names[i] for i in np.flatnonzero(bad_mask[j])]
            first = bad[0] if bad else None
            where = f"gradients or weights of {first}" if first else "the loss"
            message = f"NaN/Inf in {where} at step {step} (loss {loss:.4g})"
            if len(bad) > 1:
                message += f"; {len(bad)} layers affected ({layer_range(bad)})"
            advice, fix = self._explode_advice(bad or self._depth_names(), nonfinite=True)
            return Diagnosis("non_finite", first, step, "error", message, advice, bad, fix)

        return holds, build

    def _depth_names(self) -> list[str]:
        return [self.names[i] for i in self._depth]

    def _exploding(self, v: _Views) -> tuple[np.ndarray, Callable[[int], Diagnosis]]:
        t, d = self.t, self._depth
        g = v.med[:, d, COL["grad_norm"]]  # n x D
        fin = np.isfinite(g)
        huge = fin & (g > t.exploding_norm)
        top = g[:, -1]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = g[:, :-1] / top[:, None]
            top_ok = (np.isfinite(top) & (top > 0))[:, None]
            by_ratio = fin[:, :-1] & top_ok & (ratio > t.exploding_ratio)
            by_loss = np.isfinite(v.loss_med) & (v.loss_med > t.exploding_loss)
            g_grew = w_grew = np.zeros_like(fin)
            w_init = self._w_init[d]
            w0 = self._w_ref(d)
            if self._first_med is not None:
                g0 = self._first_med[d, COL["grad_norm"]]
                w1 = v.med[:, d, COL["weight_norm"]]
                g_grew = np.isfinite(g0) & (g0 > 0) & fin & (g / g0 > t.exploding_growth)
                w_grew = np.isfinite(w0) & (w0 > 1e-6) & np.isfinite(w1) & (w1 / w0 > t.weight_growth)
                g_grew &= v.grown[:, None]
                # where the weights before the first update are known, ``thrown`` judges them
                w_grew &= v.grown[:, None] & ~(np.isfinite(w_init) & (w_init > 1e-6))
            # one step is enough (no window): a step that moved a layer by its own size, with a
            # huge gradient or weights thrown far from their initial norm (a zero-initialized
            # layer also moves by its own size on its first step, harmlessly)
            ur1 = v.last[:, d, COL["update_ratio"]]
            g1 = v.last[:, d, COL["grad_norm"]]
            w_last = v.last[:, d, COL["weight_norm"]]
            thrown = (
                np.isfinite(w_init)
                & (w_init > 1e-6)
                & np.isfinite(w_last)
                & (w_last / w_init > t.weight_growth)
            )
            one_step = (
                np.isfinite(ur1)
                & (ur1 > ONE_STEP_RATIO)
                & ((np.isfinite(g1) & (g1 > t.exploding_norm)) | thrown)
            )
        # weights thrown far from their initial norm hold at every row, as the weights stay there
        w_grew = w_grew | thrown
        holds = (
            (v.full & (huge.any(1) | by_ratio.any(1) | by_loss | g_grew.any(1)))
            | w_grew.any(1)
            | one_step.any(1)
        )

        def build(j: int) -> Diagnosis:
            affected: np.ndarray = d[:0]
            if one_step[j].any() and not (v.full[j] and huge[j].any()):
                affected = d[one_step[j]]
                k = int(np.flatnonzero(one_step[j])[0])
                i0 = int(affected[0])
                message = (
                    f"one step moved {self.names[i0]} by its own size (‖Δw‖/‖w‖ = {ur1[j, k]:.2g}; "
                    f"gradient norm {g1[j, k]:.3g}"
                )
                if np.isfinite(w_init[k]) and w_init[k] > 0:
                    message += f", weight norm {w_init[k]:.3g} -> {w_last[j, k]:.3g}"
                message += f") at step {int(v.steps[j])}: the weights were thrown out"
            elif huge[j].any():
                affected = d[huge[j]]
                i0 = int(affected[0])
                message = (
                    f"gradient norm of {self.names[i0]} is {v.med[j, i0, 0]:.3g} "
                    f"(above {t.exploding_norm:.3g}); {len(affected)} layer(s) affected"
                )
            elif by_ratio[j].any():
                affected = d[:-1][by_ratio[j]]
                i0 = int(affected[0])
                message = (
                    f"gradient norm of {self.names[i0]} is {ratio[j, by_ratio[j]][0]:.3g} x "
                    f"that of {self.names[d[-1]]}"
                )
            elif by_loss[j]:
                affected = d
                message = f"loss is {v.loss_med[j]:.3g} (above {t.exploding_loss:.3g}): the loss avalanches"
            else:
                k = int(np.flatnonzero(g_grew[j] | w_grew[j])[0])
                n = self.names[d[k]]
                affected = d[k : k + 1]
                g0 = self._first_med[d, COL["grad_norm"]]  # type: ignore[index]
                if g_grew[j, k]:
                    message = (
                        f"gradient norm of {n} grew {g[j, k] / g0[k]:.3g}x since the start "
                        f"({g0[k]:.3g} -> {g[j, k]:.3g})"
                    )
                else:
                    w1 = w_last[j, k] if thrown[j, k] else v.med[j, d[k], COL["weight_norm"]]
                    message = (
                        f"weight norm of {n} grew {w1 / w0[k]:.3g}x since the start ({w0[k]:.3g} -> {w1:.3g})"
                    )
            names = [self.names[i] for i in affected]
            advice, fix = self._explode_advice(names, nonfinite=False)
            return Diagnosis(
                "exploding",
                names[0] if names else None,
                int(v.steps[j]),
                "error",
                message,
                advice,
                names,
                fix,
            )

        return holds, build

    def _w_ref(self, d: np.ndarray) -> np.ndarray:
        """The weight norms growth is measured from: before any update where known, else the
        median of the first records (taken after their updates)."""
        first = (
            self._first_med[d, COL["weight_norm"]]
            if self._first_med is not None
            else np.full(len(d), math.nan)
        )
        init = self._w_init[d] if len(self._w_init) else np.full(len(d), math.nan)
        return np.where(np.isfinite(init) & (init > 1e-6), init, first)

    def _vanishing(self, v: _Views) -> tuple[np.ndarray, Callable[[int], Diagnosis]]:
        d = self._depth
        r = v.vratio  # n x (D - 1)
        # a dead layer passes no gradient to its own weights: its gradient of 0 is the dead
        # units' (their fix, not BatchNorm or residuals, cures it), not a vanishing one
        with np.errstate(invalid="ignore"):
            dead = v.med[:, d[:-1], COL["dead"]] > self.t.dead
        aff = np.isfinite(r) & (r < self.t.vanishing_ratio) & ~dead
        holds = v.full & aff.any(1) if len(d) >= 2 else np.zeros(len(v), bool)
        # through time: the gradient reaching a recurrent layer's first time step against its
        # largest (the latest measured curve, carried between measurements)
        tr = v.last[:, :, COL["time_ratio"]]
        # a plain recurrent layer only: an LSTM's or GRU's gates learn to carry the gradient
        # (their early steps often start small and recover: lstm-pixels at step 30)
        plain = np.array([n in self.infos and self.infos[n].type == "SimpleRNN" for n in self.names], bool)
        with np.errstate(invalid="ignore"):
            in_time = plain & np.isfinite(tr) & (tr < self.t.vanishing_ratio)
        holds = holds | in_time.any(1)

        def build(j: int) -> Diagnosis:
            if not (len(d) >= 2 and v.full[j] and aff[j].any()):
                return self._vanishing_in_time(v, j, in_time[j], tr[j])
            lower = d[:-1]
            affected = lower[aff[j]]
            ratios = r[j, aff[j]]
            names = [self.names[i] for i in affected]
            severity = "error" if ratios.min() < self.t.vanishing_ratio**2 else "warning"
            message = f"gradient norm of {names[0]} is {ratios[0]:.2g} x that of {self.names[d[-1]]}"
            if len(names) > 1:
                message += f"; {len(names)} layers below {self.t.vanishing_ratio:.0e} ({layer_range(names)})"
            advice, fix = self._vanish_advice(names)
            return Diagnosis("vanishing", names[0], int(v.steps[j]), severity, message, advice, names, fix)

        return holds, build

    def _vanishing_in_time(self, v: _Views, j: int, affected: np.ndarray, ratio: np.ndarray) -> Diagnosis:
        """Vanishing through time (Bengio, Simard & Frasconi 1994; Pascanu et al. 2013): what
        reaches a SimpleRNN's first time steps is a tiny part of what reaches its last."""
        idx = np.flatnonzero(affected)
        names = [self.names[i] for i in idx]
        worst = int(idx[np.argmin(ratio[idx])])
        severity = "error" if ratio[worst] < self.t.vanishing_ratio**2 else "warning"
        share = (
            "no gradient at all (it underflows to 0)"
            if ratio[worst] == 0.0
            else f"{ratio[worst]:.2g} x the largest it receives"
        )
        message = (
            f"the gradient reaching {self.names[worst]}'s first time step is {share}: the start of "
            "the sequence stops shaping the weights"
        )
        advice = (
            f"{layer_range(names)}: use lstm or gru (their gates keep a path for the gradient through time)"
        )
        fix = self._fix(names, {"type": "lstm", "activation": "tanh"}, None)
        return Diagnosis("vanishing", names[0], int(v.steps[j]), severity, message, advice, names, fix)

    def _act_rule(
        self, v: _Views, key: str, kind: str, limit: float
    ) -> tuple[np.ndarray, Callable[[int], Diagnosis]]:
        vals = v.med[:, :, COL[key]]
        with np.errstate(invalid="ignore"):
            over = self._hidden & np.isfinite(vals) & (vals > limit)
        holds = v.full & over.any(1)

        def build(j: int) -> Diagnosis:
            idx = np.flatnonzero(over[j])
            names = [self.names[i] for i in idx]
            worst = int(idx[np.argmax(vals[j, idx])])
            severity = "error" if vals[j, worst] > 0.9 else "warning"
            what = (
                "saturated (on the flat ends of the curve)"
                if kind == "saturation"
                else "dead (output 0 for the whole batch)"
            )
            # the layer the diagnosis is filed under (its header) first, then the worst one
            first = int(idx[0])
            message = f"{vals[j, first]:.0%} of {self.names[first]}'s units are {what}"
            if len(names) > 1:
                message += f"; {len(names)} layers above {limit:.0%} ({layer_range(names)})"
                if worst != first:
                    message += f", the most {self.names[worst]} ({vals[j, worst]:.0%})"
            if kind == "saturation":
                advice, fix = self._saturation_advice(names)
            else:
                advice, fix = self._dead_advice(names)
            return Diagnosis(kind, names[0], int(v.steps[j]), severity, message, advice, names, fix)

        return holds, build

    def _saturation(self, v: _Views) -> tuple[np.ndarray, Callable[[int], Diagnosis]]:
        return self._act_rule(v, "saturation", "saturation", self.t.saturation)

    def _dead(self, v: _Views) -> tuple[np.ndarray, Callable[[int], Diagnosis]]:
        return self._act_rule(v, "dead", "dead_units", self.t.dead)

    def _one_sided(self, v: _Views) -> tuple[np.ndarray, Callable[[int], Diagnosis]]:
        """Outputs collapsed toward one asymptote (Glorot & Bengio 2010, Fig. 2): a sigmoid
        layer whose mean output sits in the last ``asymptote`` fraction of its range."""
        lo, hi = self._range[:, 0], self._range[:, 1]
        with np.errstate(invalid="ignore"):
            pos = (v.med[:, :, COL["act_mean"]] - lo) / (hi - lo)  # 0 at the low end, 1 at the high
            a = self.t.asymptote
            over = self._hidden & np.isfinite(pos) & ((pos < a) | (pos > 1 - a))
        holds = v.full & over.any(1)

        def build(j: int) -> Diagnosis:
            idx = np.flatnonzero(over[j])
            worst = int(idx[np.argmax(np.abs(pos[j, idx] - 0.5))])
            names = [self.names[i] for i in idx]
            mean = v.med[j, :, COL["act_mean"]]
            side = lo[worst] if pos[j, worst] < 0.5 else hi[worst]
            act = self.infos[self.names[worst]].activation if self.names[worst] in self.infos else "?"
            message = (
                f"{self.names[worst]}'s outputs collapsed toward {side:g} ({act}: mean {mean[worst]:.2g}"
            )
            if self._first_med is not None and _finite(float(self._first_med[worst, COL["act_mean"]])):
                message += f", {self._first_med[worst, COL['act_mean']]:.2g} at the start"
            message += ")"
            others = [
                i for i in np.flatnonzero(self._hidden & np.isfinite(pos[j])) if i not in set(idx.tolist())
            ]
            if others:
                message += (
                    f"; the other hidden layers' means are {np.nanmin(mean[others]):.2g}.."
                    f"{np.nanmax(mean[others]):.2g}"
                )
            if len(names) > 1:
                message += f"; {len(names)} layers at one end ({layer_range(names)})"
            advice, fix = self._one_sided_advice(names, side)
            return Diagnosis(
                "one_sided_saturation",
                self.names[worst],
                int(v.steps[j]),
                "warning",
                message,
                advice,
                names,
                fix,
            )

        return holds, build

    def _learning_rate(self, v: _Views) -> tuple[np.ndarray, Callable[[int], Diagnosis]]:
        """The update ratio ‖Δw‖/‖w‖ far from ~1e-3: a layer that moves by a tenth of its
        weights a step (too large), or a network whose typical layer moves by less than 1e-5
        (too small: a thousand steps change the weights by 1%)."""
        t, d = self.t, self._depth
        ur = v.med[:, d, COL["update_ratio"]]
        fin = np.isfinite(ur)
        with np.errstate(invalid="ignore"):
            high = fin & (ur > t.update_ratio_high)
            typical = _nanmedian(np.where(fin, ur, math.nan).T)
            low = np.isfinite(typical) & (typical < t.update_ratio_low)
        holds = v.full & (high.any(1) | low)

        def build(j: int) -> Diagnosis:
            target = t.update_ratio_target
            if high[j].any():
                affected = d[high[j]]
                observed = float(np.max(ur[j, high[j]]))
                too = "large"
                message = (
                    f"update ratio ‖Δw‖/‖w‖ of {self.names[affected[0]]} is {ur[j, high[j]][0]:.2g} a step "
                    f"(above {t.update_ratio_high:g}; ~{target:g} is typical): the step is too large"
                )
            else:
                with np.errstate(invalid="ignore"):
                    affected = d[fin[j] & (ur[j] < t.update_ratio_low)]
                observed = float(typical[j])
                too = "small"
                message = (
                    f"update ratio ‖Δw‖/‖w‖ is {observed:.2g} a step (median of {len(d)} layers; below "
                    f"{t.update_ratio_low:g}, ~{target:g} is typical): the weights do not move"
                )
            names = [self.names[i] for i in affected]
            if len(names) > 1:
                message += f"; {len(names)} layers ({layer_range(names)})"
            factor = target / observed if observed > 0 else math.inf
            advice, fix = self._lr_advice(factor, too)
            return Diagnosis(
                "learning_rate",
                names[0] if names else None,
                int(v.steps[j]),
                "warning",
                message,
                advice,
                names,
                fix,
            )

        return holds, build

    def _not_learning(self, v: _Views) -> tuple[np.ndarray, Callable[[int], Diagnosis]]:
        """The loss at chance (ln of the classes) for ``plateau_steps`` steps, and not below it
        lately: a loss that falls toward chance from above has learned only to be unsure."""
        if self.classes is None:
            return np.zeros(len(v), bool), lambda j: None  # type: ignore[return-value]
        t = self.t
        chance = math.log(self.classes)
        with np.errstate(invalid="ignore"):
            holds = (
                v.full
                & np.isfinite(v.plateau)
                & (np.abs(v.plateau - chance) < t.chance_tol * chance)
                & (v.recent > chance * (1 - t.chance_tol / 2))
            )

        def build(j: int) -> Diagnosis:
            d = self._depth
            ur = v.med[j, d, COL["update_ratio"]]
            ur = ur[np.isfinite(ur)]
            span = int(t.plateau_steps)
            message = (
                f"the loss has stayed at chance for {span} steps (mean {v.plateau[j]:.3g}; "
                f"ln({self.classes}) = {chance:.3g})"
            )
            fix = None
            if len(ur):
                typical = float(np.median(ur))
                message += f"; update ratios {ur.min():.1g}..{ur.max():.1g} (median {typical:.1g})"
                if 0 < typical < t.update_ratio_target / 10:
                    advice, fix = self._lr_advice(t.update_ratio_target / typical, "small")
                    return Diagnosis(
                        "not_learning",
                        None,
                        int(v.steps[j]),
                        "warning",
                        message,
                        f"the weights hardly move: {advice}",
                        [],
                        fix,
                    )
            advice = (
                "the weights move but the loss does not: check that the labels belong to the inputs "
                "(shuffled or constant labels teach nothing) and that the inputs are scaled; then try "
                "optimizer = 'adam' with learning_rate = 0.001"
            )
            return Diagnosis("not_learning", None, int(v.steps[j]), "warning", message, advice, [], fix)

        return holds, build

    # ------------------------------------------------------------------ BatchNorm statistics

    def judge_modes(self, step: int, inference: float, training: float, *, metric: str) -> list[Diagnosis]:
        """``bn_statistics``: the same validation batch scored in inference mode (BatchNorm's
        moving statistics) and in training mode (the batch's own). Keras's momentum 0.99
        averages over ~100 steps of weights that keep changing, so in a short run the moving
        statistics describe an older network: inference is far worse than training mode.

        Args:
            step: the step the check was made after.
            inference, training: the batch's ``metric`` in each mode.
            metric: ``accuracy`` (higher is better) or ``loss`` (lower is better).

        Returns the diagnosis when it is raised; a raised one clears when the gap closes.
        """
        names = [n for n in self.order if self.infos[n].type == "BatchNormalization"]
        if self._frozen or not names or not (_finite(inference) and _finite(training)):
            return []
        if metric == "accuracy":
            holds = training - inference > BN_ACCURACY_GAP
            gap = (
                f"accuracy {inference:.2f} in inference mode, {training:.2f} with the batch's own statistics"
            )
        else:
            holds = inference > BN_LOSS_RATIO * training and inference - training > 1e-6
            gap = f"loss {inference:.3g} in inference mode, {training:.3g} with the batch's own statistics"
        d = self._by_kind.get("bn_statistics")
        if d is not None:
            if holds and d.cleared_step is not None:
                d.cleared_step = None
            elif not holds and d.cleared_step is None:
                d.cleared_step = int(step)
            return []
        if not holds:
            return []
        momentum = self.train.batch_norm_momentum if self.train else None
        now = 0.99 if momentum is None else momentum
        message = (
            f"BatchNorm's moving statistics lag the batches': on one validation batch, {gap}; "
            f"{len(names)} BatchNormalization layer(s) ({layer_range(names)}), momentum {now:g}"
        )
        if now > BN_MOMENTUM_FIX:
            advice = (
                f"momentum {now:g} averages the statistics over ~{1 / (1 - now):.0f} steps of a network "
                f"that keeps changing: set batch_norm_momentum = {BN_MOMENTUM_FIX:g} in [train] "
                "(BatchNormalization(momentum=0.9) in Keras), or train longer"
            )
            fix = self._fix([], None, {"batch_norm_momentum": BN_MOMENTUM_FIX})
        else:
            epochs = self.train.epochs if self.train else None
            advice = (
                "train longer (more epochs) so the moving statistics catch up, or lower the learning_rate"
            )
            fix = self._fix([], None, {"epochs": 2 * epochs}) if epochs else None
        found = self._raised(
            Diagnosis("bn_statistics", names[0], int(step), "warning", message, advice, names, fix)
        )
        self._by_kind["bn_statistics"] = found
        self.diagnoses.append(found)
        return [found]

    # ------------------------------------------------------------------ advice

    @staticmethod
    def _weighted(info: LayerInfo) -> bool:
        """A layer that transforms the signal with weights (dense, conv, recurrent, embedding):
        not a normalization's or an activation's parameters."""
        return info.has_weights and info.type not in NORMALIZATION and info.type not in ACTIVATION_TYPES

    def _groups(self, names: list[str]) -> list[tuple[list[str], LayerInfo]]:
        """Consecutive layers with the same activation, initializer and BatchNorm, grouped."""
        groups: list[tuple[list[str], LayerInfo]] = []
        for n in names:
            info = self.infos.get(n)
            if info is None or not self._weighted(info):
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
        """The weighted layers of the ``[[layers]]`` entries ``names`` come from (all their repeats),
        in model order: what a fix on those entries changes. Layers without an entry (a user's
        own model) stay as given."""
        entries = set(self._entries(names))
        if not entries:
            return names
        return [n for n in self.order if self._weighted(self.infos[n]) and self.infos[n].entry in entries]

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

    def _bn_train(self) -> dict[str, Any] | None:
        """With a fix that adds BatchNorm: its momentum for a run of a few hundred steps
        (Keras's 0.99 lags there: ``bn_statistics``; 0.9 is PyTorch's default 0.1)."""
        now = self.train.batch_norm_momentum if self.train else None
        if now is not None and now <= BN_MOMENTUM_FIX:
            return None
        return {"batch_norm_momentum": BN_MOMENTUM_FIX}

    def _clipping(self) -> bool:
        t = self.train
        return bool(t and (t.clipnorm or t.clipvalue or t.global_clipnorm))

    def _recurrent(self, names: list[str]) -> list[str]:
        return [n for n in names if n in self.infos and self.infos[n].type in RECURRENT]

    def _recurrent_advice(self, names: list[str], kind: str) -> tuple[str, dict[str, Any] | None]:
        """A recurrent layer's remedies are its own (never relu/he_normal/batch_norm, which
        change what the cell is): its recurrent kernel (orthogonal, gain 1), its cell (LSTM/GRU
        gates keep a path for the gradient) and gradient clipping (Pascanu et al. 2013)."""
        info = self.infos[names[0]]
        where = f"{layer_range(names)} ({info.type})"
        clip = not self._clipping()
        train = {"clipnorm": 1.0} if clip else None
        gain = recurrent_gain(info)
        if gain is not None and gain > 1.2:
            spec = info.recurrent_initializer.label()  # type: ignore[union-attr]
            advice = (
                f"{where}: its recurrent kernel ({spec}) scales the state by ~{gain:.2g} a time step, so "
                "the state and its gradient grow through time until tanh saturates: use "
                "recurrent_initializer = 'orthogonal' (gain 1)" + (", and clipnorm = 1.0" if clip else "")
            )
            return advice, self._fix(names, {"recurrent_initializer": "orthogonal"}, train)
        if kind == "exploding":
            if clip:
                return (
                    f"{where} explodes through time: clip gradients with clipnorm = 1.0, or lower learning_rate",
                    self._fix([], None, {"clipnorm": 1.0}),
                )
            lr_now = self.train.learning_rate if self.train else 0.01
            return (
                f"{where}: gradients are already clipped; lower learning_rate (e.g. {lr_now / 10:g})",
                self._fix([], None, {"learning_rate": lr_now / 10}),
            )
        if info.type == "SimpleRNN":
            advice = f"{where}: use lstm or gru (their gates keep a path for the gradient through time)" + (
                ", or clipnorm = 1.0" if clip else ""
            )
            return advice, self._fix(names, {"type": "lstm", "activation": "tanh"}, None)
        advice = (
            f"{where}: its recurrent kernel is already orthogonal-like; "
            + ("clip gradients with clipnorm = 1.0, or " if clip else "")
            + "lower learning_rate"
        )
        return advice, self._fix([], None, train) if train else None

    def _vanish_advice(self, names: list[str]) -> tuple[str, dict[str, Any] | None]:
        if self._recurrent(names):
            return self._recurrent_advice(self._recurrent(names), "vanishing")
        groups = self._groups(names)
        if not groups:
            return "use relu with he_normal, or add batch_norm = 'before'", None
        names_all = [n for g, _ in groups for n in g]
        g_names, info = groups[0]
        act = info.activation
        if act in SATURATING or act in ("linear", "softmax"):
            conv = [n for n in self._entry_layers(names_all) if self.infos[n].type.startswith("Conv")]
            if conv and info.batch_norm == "none":
                # a convolution's channel dies as a whole (0 at every position): relu alone on a
                # stack of narrow convolutions trades vanishing for dead channels, as measured on
                # conv-sigmoid; BatchNorm keeps each channel's pre-activations centred on 0
                advice = (
                    f"{self._describe(g_names, info)}: {len(conv)} convolutions; use relu with he_normal "
                    f"and batch_norm = 'before' (relu alone leaves whole channels dead)"
                )
                return advice, self._fix(
                    names_all,
                    {"activation": "relu", "initializer": "he_normal", "batch_norm": "before"},
                    self._bn_train(),
                )
            advice = f"{self._describe(g_names, info)}: use relu with he_normal, or batch_norm = 'before'"
            return advice, self._fix(names_all, {"activation": "relu", "initializer": "he_normal"}, None)
        good, rule, _ = matched_init(act)
        weighted = [n for n in self.order if n in self.infos and self._weighted(self.infos[n])]
        residual = any(getattr(x, "role", None) == "add" for x in self.infos.values())
        if len(weighted) >= DEEP_PLAIN and not residual and info.batch_norm == "none":
            # a deep plain stack of a non-saturating activation: He et al. (2016)'s remedy
            advice = (
                f"{self._describe(g_names, info)}, {len(weighted)} weighted layers without skip "
                f"connections: add residual = true (each block keeps a path for the gradient), "
                f"or use {good} ({rule})"
            )
            return advice, self._fix(names_all, {"residual": True}, None)
        if info.initializer is not None and not info.initializer.name.startswith(good.split("_")[0]):
            advice = f"{self._describe(g_names, info)}: use {good} ({rule}), or batch_norm = 'before'"
            return advice, self._fix(names_all, {"initializer": good}, None)
        advice = (
            f"{self._describe(g_names, info)}: the initialization already fits {act}; add "
            "batch_norm = 'before', or residual = true (a skip connection around each block keeps "
            "a path for the gradient), or use fewer layers"
        )
        return advice, self._fix(names_all, {"batch_norm": "before"}, self._bn_train())

    def _explode_advice(self, names: list[str], *, nonfinite: bool) -> tuple[str, dict[str, Any] | None]:
        groups = self._groups(names) or self._groups(self.order)
        clip = "" if self._clipping() else "clipnorm = 1.0"
        lr = "lower learning_rate"
        recurrent = self._recurrent(names)
        if recurrent:
            # the recurrent kernel is applied once a time step: its gradient grows like a power
            # of it (Pascanu et al. 2013), which clipping bounds without changing its direction
            return self._recurrent_advice(recurrent, "exploding")
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
        if self._recurrent(names):
            return self._recurrent_advice(self._recurrent(names), "saturation")
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

    def _one_sided_advice(self, names: list[str], side: float) -> tuple[str, dict[str, Any] | None]:
        if self._recurrent(names):
            return self._recurrent_advice(self._recurrent(names), "saturation")
        groups = self._groups(names)
        if not groups:
            return "use tanh (centred on 0) or relu with he_normal, or batch_norm = 'before'", None
        g_names, info = groups[0]
        why = (
            "sigmoid's outputs are not centred on 0, and the layers above learn to push this one "
            "to an end (Glorot & Bengio 2010)"
            if info.activation in ("sigmoid", "hard_sigmoid")
            else f"its outputs sit near {side:g}, where the derivative is small"
        )
        advice = (
            f"{self._describe(g_names, info)}: {why}; add batch_norm = 'before' to keep the "
            "pre-activations centred, or use tanh with glorot_uniform, or relu with he_normal"
        )
        return advice, self._fix(names, {"batch_norm": "before"}, None)

    def _lr_advice(self, factor: float, too: str) -> tuple[str, dict[str, Any] | None]:
        """Scale the learning rate by target/observed update ratio (the ratio is proportional
        to it, for SGD and for Adam alike)."""
        lr_now = self.train.learning_rate if self.train else None
        way = "lower" if too == "large" else "raise"
        if lr_now is None or not math.isfinite(factor):
            return f"{way} the learning rate about {factor:.2g}x", None
        new = _round_lr(lr_now * factor)
        return (
            f"{way} learning_rate from {lr_now:g} to {new:g} (x{factor:.2g}: brings ‖Δw‖/‖w‖ to "
            f"~{self.t.update_ratio_target:g})",
            self._fix([], None, {"learning_rate": new}),
        )

    def _dead_advice(self, names: list[str]) -> tuple[str, dict[str, Any] | None]:
        if self._recurrent(names):
            return self._recurrent_advice(self._recurrent(names), "dead_units")
        groups = self._groups(names)
        if not groups:
            return "use leaky_relu or elu with he_normal, or lower the learning_rate", None
        g_names, info = groups[0]
        bias = info.bias_initializer
        shift = float(bias.param("value", 0.0)) if bias is not None and bias.name == "constant" else 0.0
        if shift < 0:
            advice = (
                f"{self._describe(g_names, info)}: bias_initializer {bias.label()} pushes every "  # type: ignore[union-attr]
                "pre-activation below 0, where relu outputs 0 and passes no gradient: use "
                "bias_initializer = 'zeros', and leaky_relu (negative_slope 0.2) so no unit can die"
            )
        else:
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
