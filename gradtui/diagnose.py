"""Diagnoses: pure functions over recorded statistics, no TensorFlow.

Each rule reads the median of the last ``window`` records, so one noisy step raises nothing,
while a problem present from the start is flagged after ``window`` records (step 2 with
``every = 1``), long before the loss curve would tell anyone. Thresholds are principled orders
of magnitude (see :class:`gradtui.preset.Thresholds`), overridable in ``[monitor]``.

The rules are parts: one module per kind in :mod:`gradtui.rules`, registered in
:data:`gradtui.rules.RULES`. Each is written once, as numpy over a block of windows
(:class:`~gradtui.rules.base.Views`): a drain of the recorder is judged at once, and a single
record is a block of one row. This :class:`Diagnoser` feeds them, raises each kind once when it
first holds and keeps its state: a diagnosis whose condition stops holding gets
``cleared_step`` and stays in the list; if the condition comes back, ``cleared_step`` is reset
to ``None`` (the entry keeps the step and the message of its first raising, and is not reported
as new again). After ``non_finite`` nothing clears: the statistics of a network with NaN in it
say nothing about its health.

Every diagnosis carries advice specific to the stack (which layers, what to change them to),
drawn from the four remedies: initialization matched to the activation, a non-saturating
activation, batch normalization, gradient clipping, or the learning rate; and a
machine-readable ``fix`` the TUI applies with one key.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gradtui.diagnosis import Diagnosis, keras_terms
from gradtui.preset import Thresholds, TrainSpec
from gradtui.roles import role_of
from gradtui.rules import RULES, bn_statistics, exploding
from gradtui.rules.advice import ACTIVATION_TYPES, NORMALIZATION, recurrent_gain
from gradtui.rules.base import COL, KEYS, Views, finite, number, window_median
from gradtui.stack import LayerInfo

__all__ = ["COL", "KEYS", "Diagnoser", "Diagnosis", "diagnose", "recurrent_gain"]

#: the optimizers with an epsilon added to their gradient's running RMS (Keras names)
EPSILON_OPTIMIZERS = ("adam", "adamw", "nadam", "adamax", "rmsprop", "adagrad", "adadelta", "lamb")
#: Keras's default epsilon of those optimizers
KERAS_EPSILON = 1e-7
#: output range (low, high) of the activations whose mean says which asymptote they approach
RANGES = {"sigmoid": (0.0, 1.0), "hard_sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "softsign": (-1.0, 1.0)}


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
        optimizer: Any = None,
    ) -> None:
        self.infos = {x.name: x for x in layers}
        #: the optimizer's name (``adam``, ``sgd``...; lower case) and its epsilon where it has one,
        #: from the optimizer itself (a ``gradtui.watch``) or the preset's ``[train]``
        self.optimizer_name, self.epsilon = optimizer_facts(optimizer, train)
        #: the largest learning rate the optimizer steps with (``None``: unknown), the pace
        #: an adaptive optimizer's updates keep (see :mod:`gradtui.rules.exploding`)
        self.peak_lr = peak_learning_rate(optimizer, train)
        #: advice in Keras terms rather than preset keys (a ``gradtui.watch`` of the user's own code)
        self.keras_terms = keras_terms
        #: each layer's weight norm before any update (the reference of weight growth)
        self.initial_weights = dict(initial_weights or {})
        self.order = [x.name for x in layers]
        self.t = thresholds or Thresholds()
        self.train = train
        #: the rules judged on the recorded rows (:data:`gradtui.rules.RULES`)
        self.rules = RULES
        #: what a rule keeps between feeds, by its kind (e.g. since when a condition holds)
        self.memory: dict[str, Any] = {}
        self._explained_by = {r.kind: r.explained_by for r in RULES}
        self.diagnoses: list[Diagnosis] = []
        self._by_kind: dict[str, Diagnosis] = {}
        self._frozen = False  # set by non_finite: nothing clears or is raised again after it
        # The recorded layers, fixed by the first record.
        self.names: list[str] = []
        self.roles: list[str] = []
        self.params: np.ndarray = np.zeros(0)
        self.depth: np.ndarray = np.zeros(0, int)
        self.hidden: np.ndarray = np.zeros(0, bool)
        self.ranges: np.ndarray = np.zeros((0, 2))
        self.w_init: np.ndarray = np.zeros(0)
        self.classes = self._classes(layers)
        # The last window - 1 rows (to complete the windows of the next rows), the first
        # window's rows (growth since the start), the loss history of the last plateau_steps.
        self._tail: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._count = 0
        self._first: list[np.ndarray] = []
        self.first_med: np.ndarray | None = None
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
        #: each row's role in the model (:mod:`gradtui.roles`): what advice applies to it
        self.roles = [role_of(n, x) for n, x in zip(self.names, infos, strict=True)]
        #: each row's trainable parameter count (NaN: unknown)
        self.params = np.array(
            [float(x.trainable) if x is not None and x.trainable else math.nan for x in infos]
        )
        depth = [
            i
            for i, x in enumerate(infos)
            if x is None or (x.type not in NORMALIZATION and x.type not in ACTIVATION_TYPES)
        ]
        self.depth = np.array(depth or list(range(len(self.names))), int)
        self.hidden = np.array([not (x is not None and x.is_output) for x in infos], bool)
        self.w_init = np.array([float(self.initial_weights.get(n, math.nan)) for n in self.names], float)
        self.ranges = np.array(
            [RANGES.get(x.activation if x is not None else "", (math.nan, math.nan)) for x in infos], float
        ).reshape(len(self.names), 2)

    @property
    def step0(self) -> int | None:
        """The first step fed (a watch's repeated ``fit`` calls continue the steps)."""
        return self._step0

    def role_mask(self, roles: tuple[str, ...]) -> np.ndarray:
        """Which rows have one of ``roles``."""
        return np.array([r in roles for r in self.roles], bool)

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
            [[[number(r["layers"].get(n, {}).get(k)) for k in KEYS] for n in self.names] for r in records],
            dtype=float,
        ).reshape(len(records), len(self.names), len(KEYS))
        steps = np.array([int(r["step"]) for r in records], np.int64)
        # a loss of null (computed out of gradtui's sight) is unknown, not NaN: as in the
        # monitor's drains it is given as 0 and takes part in no alarm
        losses = np.array([0.0 if r.get("loss") is None else number(r.get("loss")) for r in records], float)
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
        rules = self.rules
        holds = {}
        build = {}
        for rule in rules:
            holds[rule.kind], build[rule.kind] = rule.check(self, views)
        found: list[Diagnosis] = []
        kinds = [r.kind for r in rules]
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
        by = self._explained_by[kind]
        if any(v for k, v in on.items() if k != kind and ("*" in by or k in by)):
            return np.zeros_like(holds)
        return holds

    def _exploding_before_nan(self, views: Views, i: int) -> list[Diagnosis]:
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
        one = Views(
            steps=h_steps[keep[-1:]],
            losses=h_losses[keep[-1:]],
            last=stats[-1:],
            med=window_median(stats, w),
            loss_med=window_median(h_losses[keep][:, None], w)[:, 0],
            vratio=self._vratio_median(stats, w),
            full=np.ones(1, bool),
            grown=np.array([last_index >= self.t.window and self.first_med is not None]),
            plateau=np.full(1, math.nan),
            recent=np.full(1, math.nan),
        )
        holds, build = exploding.check(self, one)
        if not holds[0]:
            return []
        d = self._raised(build(0))
        self._by_kind["exploding"] = d
        self.diagnoses.append(d)
        return [d]

    def _views(self, steps: np.ndarray, losses: np.ndarray, stats: np.ndarray) -> Views:
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
                self.first_med = window_median(np.stack(self._first), w)[0]
        # pad to a whole window before the first row: NaN is left out of every median
        pad = np.full((w - 1 - t, L, K), math.nan)
        p_stats = np.concatenate([pad, h_stats])
        p_losses = np.concatenate([np.full(w - 1 - t, math.nan), h_losses])
        p_losses = np.where(np.isfinite(p_losses), p_losses, math.nan)
        plateau, recent = self._plateau(steps, losses)
        views = Views(
            steps=steps,
            losses=losses,
            last=stats,
            med=window_median(p_stats, w),
            loss_med=window_median(p_losses[:, None], w)[:, 0],
            vratio=self._vratio_median(p_stats, w),
            full=index >= w - 1,
            grown=(index >= w) & (self.first_med is not None),
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
        d = self.depth
        if len(d) < 2:
            return np.full((len(stats) - w + 1, 0), math.nan)
        g = stats[:, d, COL["grad_norm"]]
        hi = g[:, -1:]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where((hi > 0) & np.isfinite(hi), g[:, :-1] / hi, math.nan)
        return window_median(ratio, w)

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
        if self._frozen or not (finite(inference) and finite(training)):
            return []
        judged = bn_statistics.judge(self, step, inference, training, metric)
        if judged is None:
            return []
        holds, build = judged
        d = self._by_kind.get(bn_statistics.KIND)
        if d is not None:
            if holds and d.cleared_step is not None:
                d.cleared_step = None
            elif not holds and d.cleared_step is None:
                d.cleared_step = int(step)
            return []
        if not holds:
            return []
        found = self._raised(build())
        self._by_kind[bn_statistics.KIND] = found
        self.diagnoses.append(found)
        return [found]


def optimizer_facts(optimizer: Any, train: TrainSpec | None) -> tuple[str | None, float | None]:
    """The optimizer's lower-case class name and its epsilon (``None`` where it has none): of a
    Keras optimizer object (a loss-scale wrapper is looked through), else of ``[train]``."""
    if optimizer is not None:
        inner = getattr(optimizer, "inner_optimizer", None)
        opt = inner if inner is not None else optimizer
        eps = getattr(opt, "epsilon", None)
        try:
            epsilon = float(eps) if eps is not None else None
        except (TypeError, ValueError):
            epsilon = None
        return type(opt).__name__.lower(), epsilon
    if train is not None:
        name = str(train.optimizer).lower()
        if name in EPSILON_OPTIMIZERS:
            return name, float(train.epsilon) if train.epsilon is not None else KERAS_EPSILON
        return name, None
    return None, None


def peak_learning_rate(optimizer: Any, train: TrainSpec | None) -> float | None:
    """The learning rate (a schedule's initial or peak one) of a Keras optimizer object, else
    ``[train] learning_rate`` (warm-up and cosine decay never exceed it); ``None`` if unknown."""
    if optimizer is not None:
        inner = getattr(optimizer, "inner_optimizer", None)
        opt = inner if inner is not None else optimizer
        lr = getattr(opt, "learning_rate", None)
        for attr in ("target_learning_rate", "initial_learning_rate"):
            lr = getattr(lr, attr, lr) if not isinstance(lr, (int, float)) else lr
        try:
            value = float(lr)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
        return value if math.isfinite(value) and value > 0 else None
    if train is not None and train.learning_rate:
        return float(train.learning_rate)
    return None


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
