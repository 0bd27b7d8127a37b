"""The form that edits one ``[[layers]]`` entry: its type and the keys that type takes.

Each type shows only its own fields (``LAYER_KEYS``): units for dense and recurrent entries,
filters/kernel_size/strides/padding for convolutions, pool_size for pools, the recurrent
initializer and return_sequences/bidirectional for SimpleRNN/LSTM/GRU, input_dim/output_dim for
an embedding (and its ``positions`` switch), epsilon for the normalizations, residual for dense
and conv entries, and for a ``transformer`` block heads, key_dim, ffn_units, norm (pre/post), the
qk_norm and causal switches, dropout and the feed-forward activation (``gelu`` by default).

A field is shown and written when the entry's type takes its key (``LAYER_KEYS``), so the form
follows the preset loader: a key the loader does not know is never written.

Every change is sent to the app as the entry's TOML table (:class:`LayerForm.Edited`); the app
validates it through the preset loader, so the form accepts exactly what a preset file does,
and shows the loader's one-line error when it does not.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Select, Static, Switch

from gradtui.preset import (
    ACTIVATION_PARAMS,
    ACTIVATIONS,
    BATCH_NORM,
    CONV_TYPES,
    INITIALIZERS,
    LAYER_KEYS,
    LAYER_TYPES,
    PADDINGS,
    POOL_TYPES,
    RECURRENT_TYPES,
    VS_DISTRIBUTIONS,
    VS_MODES,
    LayerSpec,
    Spec,
)

#: numeric initializer parameters, each with an Input of its own
INIT_NUMBERS = ("scale", "stddev", "mean", "minval", "maxval", "value", "gain")
BIAS_INITIALIZERS = ("zeros", "ones", "constant", "random_normal", "random_uniform", "glorot_uniform")
BOOLS = ("false", "true")
#: a transformer block's LayerNorm places (SPEC section 2): before each sub-layer, or after the residual
NORMS = ("pre", "post")
#: the switches of the form: field id -> the entry key it sets
SWITCHES = {"#f-positions": "positions", "#f-qk-norm": "qk_norm", "#f-causal": "causal"}
#: a transformer block's sizes: field id -> the entry key it sets
TRANSFORMER_SIZES = (("#f-heads", "heads"), ("#f-key-dim", "key_dim"), ("#f-ffn-units", "ffn_units"))
#: a transformer's feed-forward activation when the entry names none (SPEC section 2)
TRANSFORMER_ACTIVATION = "gelu"
#: the value a field takes when a new type needs it and it is empty
TYPE_DEFAULTS = {
    "#f-units": "32",
    "#f-filters": "16",
    "#f-kernel": "3",
    "#f-strides": "1",
    "#f-pool": "2",
    "#f-input-dim": "100",
    "#f-output-dim": "16",
    "#f-heads": "4",
    "#f-dropout": "0",
}


def _size_text(value: int | tuple[int, ...] | None) -> str:
    if value is None:
        return ""
    return ", ".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


def _size(text: str) -> Any:
    """``3`` -> 3, ``3, 3`` -> [3, 3]; anything else goes to the loader, which names the key."""
    parts = [p.strip() for p in text.replace("x", ",").split(",") if p.strip()]
    if len(parts) > 1:
        return [_num(p) for p in parts]
    return _num(text)


def _first_param(name: str) -> str | None:
    """The one numeric parameter of an initializer the recurrent field edits (stddev, gain...)."""
    params = INITIALIZERS.get(name, {})
    return next((p for p in ("stddev", "gain", "scale", "value", "maxval") if p in params), None)


def _options(values: tuple[str, ...] | list[str]) -> list[tuple[str, str]]:
    return [(v, v) for v in values]


def _num(text: str) -> Any:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text  # the loader names the key and says a number is needed


class LayerForm(VerticalScroll):
    """Edit the highlighted layer entry; changes apply at once when they are valid."""

    #: in a field, letters are typed, not keys: the footer says how to get the keys back
    BINDINGS = [Binding("escape", "app.leave_field", "Leave field (keys)")]

    DEFAULT_CSS = """
    LayerForm { height: auto; max-height: 100%; }
    LayerForm .field { height: 1; }
    LayerForm .field > Label { width: 15; padding: 0 1 0 0; text-align: right; color: $text-muted; }
    LayerForm .field > Input { width: 1fr; }
    LayerForm .field > Select { width: 1fr; }
    LayerForm .field > Switch { border: none; height: 1; padding: 0 1; width: auto; }
    LayerForm .field > Switch:focus { background-tint: $foreground 10%; }
    LayerForm .field > Label.switch-state { width: 1fr; text-align: left; padding: 0 0 0 1; }
    LayerForm #form-error { color: $error; height: auto; }
    LayerForm #form-title { text-style: bold; color: $accent; }
    """

    class Edited(Message):
        """The entry at ``index`` now reads ``table`` (its TOML form, not yet validated)."""

        def __init__(self, index: int, table: dict[str, Any]) -> None:
            self.index = index
            self.table = table
            super().__init__()

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.index = -1
        #: the shown entry's recurrent initializer: parameters the form has no field for are kept
        self._recurrent_init = Spec("orthogonal")
        #: whether the entry sets ``causal`` itself (or the switch was turned): otherwise the key is
        #: left out and the data set decides (causal for ``text``), shown as the switch's state
        self._causal_set = False
        #: what an unset ``causal`` means for the stack's data set
        self._causal_default = True

    def compose(self) -> ComposeResult:
        """The fields; those that do not apply to the entry's type are hidden."""
        yield Static("Layer", id="form-title")
        yield from self._field("type", Select(_options(LAYER_TYPES), allow_blank=False, id="f-type"))
        yield from self._field("units", Input(id="f-units", type="integer"))
        yield from self._field("filters", Input(id="f-filters", type="integer"))
        yield from self._field("kernel_size", Input(id="f-kernel"), id="row-kernel")
        yield from self._field("strides", Input(id="f-strides"))
        yield from self._field("padding", Select(_options(PADDINGS), allow_blank=False, id="f-padding"))
        yield from self._field("pool_size", Input(id="f-pool"))
        yield from self._field("input_dim", Input(id="f-input-dim", type="integer"))
        yield from self._field("output_dim", Input(id="f-output-dim", type="integer"))
        yield from self._switch("positions", "f-positions")
        yield from self._field("heads", Input(id="f-heads", type="integer"))
        # empty: the loader's default, worked out from the model's width once the input is known
        yield from self._field("key_dim", Input(id="f-key-dim", type="integer", placeholder="width / heads"))
        yield from self._field("ffn_units", Input(id="f-ffn-units", type="integer", placeholder="4 × width"))
        yield from self._field("norm", Select(_options(NORMS), allow_blank=False, id="f-norm"))
        yield from self._switch("qk_norm", "f-qk-norm")
        yield from self._switch("causal", "f-causal")
        yield from self._field("dropout", Input(id="f-dropout"))
        yield from self._field(
            "activation", Select(_options(ACTIVATIONS), allow_blank=False, id="f-activation")
        )
        yield from self._field("slope/alpha", Input(id="f-act-param"), id="row-act-param")
        yield from self._field(
            "initializer", Select(_options(list(INITIALIZERS)), allow_blank=False, id="f-init")
        )
        for p in INIT_NUMBERS:
            yield from self._field(f"  {p}", Input(id=f"f-init-{p}"), id=f"row-init-{p}")
        yield from self._field(
            "  mode", Select(_options(VS_MODES), allow_blank=False, id="f-init-mode"), id="row-init-mode"
        )
        yield from self._field(
            "  distribution",
            Select(_options(VS_DISTRIBUTIONS), allow_blank=False, id="f-init-distribution"),
            id="row-init-distribution",
        )
        yield from self._field(
            "bias init", Select(_options(BIAS_INITIALIZERS), allow_blank=False, id="f-bias")
        )
        yield from self._field("  bias value", Input(id="f-bias-value"), id="row-bias-value")
        yield from self._field(
            "recurrent init", Select(_options(list(INITIALIZERS)), allow_blank=False, id="f-rinit")
        )
        yield from self._field("  param", Input(id="f-rinit-param"), id="row-rinit-param")
        yield from self._field(
            "return_seq", Select(_options(BOOLS), allow_blank=False, id="f-return-seq"), id="row-return-seq"
        )
        yield from self._field("bidirectional", Select(_options(BOOLS), allow_blank=False, id="f-bidir"))
        yield from self._field("batch_norm", Select(_options(BATCH_NORM), allow_blank=False, id="f-bn"))
        yield from self._field("residual", Select(_options(BOOLS), allow_blank=False, id="f-residual"))
        yield from self._field("rate", Input(id="f-rate"), id="row-rate")
        yield from self._field("momentum", Input(id="f-bn-momentum"), id="row-bn-momentum")
        yield from self._field("epsilon", Input(id="f-bn-epsilon"), id="row-bn-epsilon")
        yield from self._field("repeat", Input(id="f-repeat", type="integer"))
        yield Static("", id="form-error")

    def _field(self, label: str, widget: Input | Select, id: str | None = None) -> ComposeResult:
        row_id = id or f"row-{(widget.id or '').removeprefix('f-')}"
        with Horizontal(classes="field", id=row_id):
            yield Label(label)
            widget.compact = True
            yield widget

    def _switch(self, label: str, id: str) -> ComposeResult:
        """An on/off key: a switch and the word ``on`` or ``off`` beside it (read without colour)."""
        with Horizontal(classes="field", id=f"row-{id.removeprefix('f-')}"):
            yield Label(label)
            yield Switch(id=id, animate=False)
            yield Label("off", classes="switch-state")

    # ------------------------------------------------------------------ show

    def show(self, index: int, spec: LayerSpec, *, causal_default: bool = True) -> None:
        """Fill the form with entry ``index`` without sending any change back.

        ``causal_default`` is what a transformer entry without ``causal`` gets from the data set.
        """
        self.index = index
        self._causal_default = causal_default
        self._causal_set = getattr(spec, "causal", None) is not None
        self.query_one("#form-title", Static).update(f"Layer entry {index}  ({spec.type})")
        with self.prevent(Input.Changed, Select.Changed, Switch.Changed):
            self._set("#f-type", spec.type)
            self._set("#f-units", str(spec.units or ""))
            default_act = TRANSFORMER_ACTIVATION if spec.type == "transformer" else "linear"
            act = spec.activation or Spec(default_act)
            self._set("#f-activation", act.name)
            act_params = dict(act.params)
            default = ACTIVATION_PARAMS.get(act.name, {})
            val = next(iter(act_params.values()), next(iter(default.values()), ""))
            self._set("#f-act-param", f"{val:g}" if isinstance(val, float) else str(val))
            init = spec.initializer
            self._set("#f-init", init.name)
            params = {**INITIALIZERS[init.name], **dict(init.params)}
            for p in INIT_NUMBERS:
                v = params.get(p, "")
                self._set(f"#f-init-{p}", f"{v:g}" if isinstance(v, (int, float)) else "")
            self._set("#f-init-mode", params.get("mode", "fan_in"))
            self._set("#f-init-distribution", params.get("distribution", "truncated_normal"))
            bias = spec.bias_initializer
            self._set("#f-bias", bias.name if bias.name in BIAS_INITIALIZERS else "zeros")
            self._set("#f-bias-value", f"{bias.param('value', 0.0):g}")
            self._set("#f-bn", spec.batch_norm)
            self._set("#f-filters", str(spec.filters or ""))
            self._set("#f-kernel", _size_text(spec.kernel_size))
            self._set("#f-strides", _size_text(spec.strides))
            self._set("#f-padding", spec.padding)
            self._set("#f-pool", _size_text(spec.pool_size))
            self._set("#f-input-dim", str(spec.input_dim or ""))
            self._set("#f-output-dim", str(spec.output_dim or ""))
            rinit = spec.recurrent_initializer
            self._recurrent_init = rinit
            self._set("#f-rinit", rinit.name)
            first = _first_param(rinit.name)
            value = rinit.param(first, INITIALIZERS[rinit.name].get(first)) if first else None
            self._set("#f-rinit-param", f"{value:g}" if isinstance(value, (int, float)) else "")
            self._set("#f-return-seq", "true" if spec.return_sequences else "false")
            self._set("#f-bidir", "true" if spec.bidirectional else "false")
            self._set("#f-residual", "true" if spec.residual else "false")
            self._set("#f-rate", f"{spec.rate:g}" if spec.rate is not None else "0.2")
            self._set("#f-bn-momentum", f"{spec.momentum:g}" if spec.momentum is not None else "0.99")
            self._set("#f-bn-epsilon", f"{spec.epsilon:g}" if spec.epsilon is not None else "0.001")
            self._set("#f-repeat", str(spec.repeat))
            # the transformer's keys and the embedding's positions (read by name: an entry type
            # without them leaves the fields as they were, filled when the type changes)
            for selector, key in TRANSFORMER_SIZES:
                value = getattr(spec, key, None)
                self._set(selector, str(value) if value is not None else "")
            dropout = getattr(spec, "dropout", None)
            self._set("#f-dropout", f"{dropout:g}" if isinstance(dropout, (int, float)) else "0")
            self._set("#f-norm", str(getattr(spec, "norm", None) or "pre"))
            for selector, key in SWITCHES.items():
                self.query_one(selector, Switch).value = self._switch_value(spec, key)
        self.error = ""
        self._arrange()

    def _switch_value(self, spec: LayerSpec, key: str) -> bool:
        """The shown state of an on/off key; ``causal`` unset is the data set's default."""
        value = getattr(spec, key, None)
        if value is None:
            return key == "causal" and self._causal_default
        return bool(value)

    def _set(self, selector: str, value: str) -> None:
        widget = self.query_one(selector)
        if isinstance(widget, (Select, Input)):
            widget.value = value

    def _arrange(self) -> None:
        """Show only the fields that apply to the chosen type, activation and initializer."""
        kind = self.query_one("#f-type", Select).value
        act = self.query_one("#f-activation", Select).value
        init = self.query_one("#f-init", Select).value
        bias = self.query_one("#f-bias", Select).value
        keys = LAYER_KEYS.get(str(kind), ())
        kernel = "initializer" in keys
        rinit = str(self.query_one("#f-rinit", Select).value)
        shown = {
            "#row-units": "units" in keys,
            "#row-filters": "filters" in keys,
            "#row-kernel": "kernel_size" in keys,
            "#row-strides": "strides" in keys,
            "#row-padding": "padding" in keys,
            "#row-pool": "pool_size" in keys,
            "#row-input-dim": "input_dim" in keys,
            "#row-output-dim": "output_dim" in keys,
            "#row-activation": "activation" in keys,
            # a recurrent cell or a transformer's feed-forward Dense takes a plain name only
            "#row-act-param": "activation" in keys
            and kind not in (*RECURRENT_TYPES, "transformer")
            and act in ACTIVATION_PARAMS,
            "#row-init": kernel,
            "#row-bias": kernel,
            "#row-bias-value": kernel and bias == "constant",
            "#row-rinit": "recurrent_initializer" in keys,
            "#row-rinit-param": "recurrent_initializer" in keys and _first_param(rinit) is not None,
            "#row-return-seq": "return_sequences" in keys,
            "#row-bidir": "bidirectional" in keys,
            "#row-bn": "batch_norm" in keys,
            "#row-residual": "residual" in keys,
            "#row-rate": kind == "dropout",
            "#row-bn-momentum": kind == "batch_norm",
            "#row-bn-epsilon": "epsilon" in keys,
            "#row-positions": "positions" in keys,
            "#row-heads": "heads" in keys,
            "#row-key-dim": "key_dim" in keys,
            "#row-ffn-units": "ffn_units" in keys,
            "#row-norm": "norm" in keys,
            "#row-qk-norm": "qk_norm" in keys,
            "#row-causal": "causal" in keys,
            "#row-dropout": "dropout" in keys,
        }
        allowed = INITIALIZERS.get(str(init), {})
        for p in (*INIT_NUMBERS, "mode", "distribution"):
            shown[f"#row-init-{p}"] = kernel and p in allowed
        for selector, visible in shown.items():
            self.query_one(selector).display = visible
        # a transformer's activation is its feed-forward network's, not the block's output
        self.query_one("#row-activation Label", Label).update(
            "ffn activation" if "ffn_units" in keys else "activation"
        )
        for selector in SWITCHES:
            on = self.query_one(selector, Switch).value
            state = "on" if on else "off"
            if selector == "#f-causal" and not self._causal_set:
                state += " (auto)"
            self.query_one(f"#row-{selector.removeprefix('#f-')} .switch-state", Label).update(state)
        if act in ACTIVATION_PARAMS:
            self.query_one("#row-act-param Label", Label).update(next(iter(ACTIVATION_PARAMS[str(act)])))
        first = _first_param(rinit)
        if first:
            self.query_one("#row-rinit-param Label", Label).update(f"  {first}")

    @property
    def error(self) -> str:
        """The validation error shown under the form."""
        return str(self.query_one("#form-error", Static).content)

    @error.setter
    def error(self, text: str) -> None:
        self.query_one("#form-error", Static).update(Text(text))  # it quotes what was typed: never markup

    # ------------------------------------------------------------------ edit

    def table(self) -> dict[str, Any]:
        """The entry as a TOML table, from the fields that apply to its type."""

        def val(selector: str) -> str:
            w = self.query_one(selector)
            return str(w.value) if isinstance(w, (Input, Select)) else ""

        kind = val("#f-type")
        keys = LAYER_KEYS.get(kind, ())
        out: dict[str, Any] = {"type": kind}
        if "activation" in keys:
            act = val("#f-activation")
            if (
                kind not in (*RECURRENT_TYPES, "transformer")
                and act in ACTIVATION_PARAMS
                and val("#f-act-param").strip()
            ):
                out["activation"] = {
                    "name": act,
                    next(iter(ACTIVATION_PARAMS[act])): _num(val("#f-act-param")),
                }
            else:
                out["activation"] = act
        if "units" in keys:
            out["units"] = _num(val("#f-units"))
        if kind in CONV_TYPES:
            out["filters"] = _num(val("#f-filters"))
            out["kernel_size"] = _size(val("#f-kernel"))
            out["strides"] = _size(val("#f-strides") or "1")
            out["padding"] = val("#f-padding")
        if kind in POOL_TYPES:
            out["pool_size"] = _size(val("#f-pool") or "2")
        if kind == "embedding":
            out["input_dim"] = _num(val("#f-input-dim"))
            out["output_dim"] = _num(val("#f-output-dim"))
        if "initializer" in keys:
            init = val("#f-init")
            params: dict[str, Any] = {}
            for p in INITIALIZERS[init]:
                if p in ("mode", "distribution"):
                    params[p] = val(f"#f-init-{p}")
                elif val(f"#f-init-{p}").strip():
                    params[p] = _num(val(f"#f-init-{p}"))
            # defaults are written only when changed, so a plain name stays a plain name
            params = {k: v for k, v in params.items() if v != INITIALIZERS[init].get(k)}
            out["initializer"] = {"name": init, **params} if params else init
            bias = val("#f-bias")
            if bias == "constant":
                out["bias_initializer"] = {"name": "constant", "value": _num(val("#f-bias-value") or "0")}
            else:
                out["bias_initializer"] = bias
        if "positions" in keys:
            out["positions"] = self.query_one("#f-positions", Switch).value
        for selector, key in TRANSFORMER_SIZES:
            # key_dim and ffn_units left empty: the loader's default, from the model's width
            if key in keys and (val(selector).strip() or key == "heads"):
                out[key] = _num(val(selector))
        if "norm" in keys:
            out["norm"] = val("#f-norm")
        for selector, key in SWITCHES.items():
            if key in keys and key != "positions" and (key != "causal" or self._causal_set):
                out[key] = self.query_one(selector, Switch).value
        if "dropout" in keys:
            out["dropout"] = _num(val("#f-dropout") or "0")
        if "recurrent_initializer" in keys:
            name = val("#f-rinit")
            shown = self._recurrent_init
            rparams = dict(shown.params) if shown.name == name else {}
            first = _first_param(name)
            if first and val("#f-rinit-param").strip():
                rparams[first] = _num(val("#f-rinit-param"))
            rparams = {k: v for k, v in rparams.items() if v != INITIALIZERS[name].get(k)}
            out["recurrent_initializer"] = {"name": name, **rparams} if rparams else name
            out["return_sequences"] = val("#f-return-seq") == "true"
            out["bidirectional"] = val("#f-bidir") == "true"
        if "batch_norm" in keys:
            out["batch_norm"] = val("#f-bn")
        if "residual" in keys and val("#f-residual") == "true":
            out["residual"] = True
        if kind == "dropout":
            out["rate"] = _num(val("#f-rate"))
        if kind == "batch_norm":
            out["momentum"] = _num(val("#f-bn-momentum") or "0.99")
        if "epsilon" in keys:
            out["epsilon"] = _num(val("#f-bn-epsilon") or "0.001")
        out["repeat"] = _num(val("#f-repeat") or "1")
        return out

    def _changed(self) -> None:
        if self.index < 0:  # the fields' own start-up events, before any entry is shown
            return
        self._arrange()
        self.post_message(self.Edited(self.index, self.table()))

    def on_select_changed(self, event: Select.Changed) -> None:
        """A choice changed: send the entry (a new initializer starts from its defaults)."""
        event.stop()
        if event.select.id == "f-type":
            self._fill_type_defaults(str(event.value))
        if event.select.id == "f-rinit" and event.value in INITIALIZERS:
            first = _first_param(str(event.value))
            value = INITIALIZERS[str(event.value)].get(first) if first else None
            with self.prevent(Input.Changed):
                self.query_one("#f-rinit-param", Input).value = f"{value:g}" if value is not None else ""
        if event.select.id == "f-init" and event.value in INITIALIZERS:
            defaults = INITIALIZERS[str(event.value)]
            with self.prevent(Input.Changed, Select.Changed):
                for p in INIT_NUMBERS:
                    v = defaults.get(p)
                    self.query_one(f"#f-init-{p}", Input).value = f"{v:g}" if v is not None else ""
                self.query_one("#f-init-mode", Select).value = defaults.get("mode", "fan_in")
                self.query_one("#f-init-distribution", Select).value = defaults.get(
                    "distribution", "truncated_normal"
                )
        self._changed()

    def _fill_type_defaults(self, kind: str) -> None:
        """A new type starts with values for the keys it needs that are still empty (a dense
        entry turned into conv2d gets 16 filters and a 3x3 kernel), and a recurrent one with
        tanh, its own default activation, where the entry had none; a transformer with gelu, its
        feed-forward network's default."""
        with self.prevent(Input.Changed, Select.Changed):
            for selector, default in TYPE_DEFAULTS.items():
                field = self.query_one(selector, Input)
                if not field.value.strip():
                    field.value = default
            act = self.query_one("#f-activation", Select)
            if kind in RECURRENT_TYPES and act.value in ("linear", "softmax", "prelu"):
                act.value = "tanh"
            if kind == "transformer":  # the feed-forward's, not the old layer's own activation
                act.value = TRANSFORMER_ACTIVATION

    def on_switch_changed(self, event: Switch.Changed) -> None:
        """A switch was turned: send the entry (a turned ``causal`` is written from now on)."""
        event.stop()
        if event.switch.id == "f-causal":
            self._causal_set = True
        self._changed()

    def on_input_changed(self, event: Input.Changed) -> None:
        """A value was typed: send the entry."""
        event.stop()
        self._changed()
