"""The form that edits one ``[[layers]]`` entry: type, units, activation, initializers, BN, repeat.

Every change is sent to the app as the entry's TOML table (:class:`LayerForm.Edited`); the app
validates it through the preset loader, so the form accepts exactly what a preset file does,
and shows the loader's one-line error when it does not.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Select, Static

from gradtui.preset import (
    ACTIVATION_PARAMS,
    ACTIVATIONS,
    BATCH_NORM,
    INITIALIZERS,
    LAYER_TYPES,
    VS_DISTRIBUTIONS,
    VS_MODES,
    LayerSpec,
    Spec,
)

#: numeric initializer parameters, each with an Input of its own
INIT_NUMBERS = ("scale", "stddev", "mean", "minval", "maxval", "value", "gain")
BIAS_INITIALIZERS = ("zeros", "ones", "constant", "random_normal", "random_uniform", "glorot_uniform")


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

    DEFAULT_CSS = """
    LayerForm { height: auto; max-height: 100%; }
    LayerForm .field { height: 1; }
    LayerForm .field > Label { width: 15; padding: 0 1 0 0; text-align: right; color: $text-muted; }
    LayerForm .field > Input { width: 1fr; }
    LayerForm .field > Select { width: 1fr; }
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

    def compose(self) -> ComposeResult:
        """The fields; those that do not apply to the entry's type are hidden."""
        yield Static("Layer", id="form-title")
        yield from self._field("type", Select(_options(LAYER_TYPES), allow_blank=False, id="f-type"))
        yield from self._field("units", Input(id="f-units", type="integer"))
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
        yield from self._field("batch_norm", Select(_options(BATCH_NORM), allow_blank=False, id="f-bn"))
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

    # ------------------------------------------------------------------ show

    def show(self, index: int, spec: LayerSpec) -> None:
        """Fill the form with entry ``index`` without sending any change back."""
        self.index = index
        self.query_one("#form-title", Static).update(f"Layer entry {index}  ({spec.type})")
        with self.prevent(Input.Changed, Select.Changed):
            self._set("#f-type", spec.type)
            self._set("#f-units", str(spec.units or ""))
            act = spec.activation or Spec("linear")
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
            self._set("#f-rate", f"{spec.rate:g}" if spec.rate is not None else "0.2")
            self._set("#f-bn-momentum", f"{spec.momentum:g}" if spec.momentum is not None else "0.99")
            self._set("#f-bn-epsilon", f"{spec.epsilon:g}" if spec.epsilon is not None else "0.001")
            self._set("#f-repeat", str(spec.repeat))
        self.error = ""
        self._arrange()

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
        dense = kind == "dense"
        shown = {
            "#row-units": dense,
            "#row-activation": kind in ("dense", "activation"),
            "#row-act-param": kind in ("dense", "activation") and act in ACTIVATION_PARAMS,
            "#row-init": dense,
            "#row-bias": dense,
            "#row-bias-value": dense and bias == "constant",
            "#row-bn": dense,
            "#row-rate": kind == "dropout",
            "#row-bn-momentum": kind == "batch_norm",
            "#row-bn-epsilon": kind == "batch_norm",
        }
        allowed = INITIALIZERS.get(str(init), {})
        for p in (*INIT_NUMBERS, "mode", "distribution"):
            shown[f"#row-init-{p}"] = dense and p in allowed
        for selector, visible in shown.items():
            self.query_one(selector).display = visible
        if act in ACTIVATION_PARAMS:
            self.query_one("#row-act-param Label", Label).update(next(iter(ACTIVATION_PARAMS[str(act)])))

    @property
    def error(self) -> str:
        """The validation error shown under the form."""
        return str(self.query_one("#form-error", Static).content)

    @error.setter
    def error(self, text: str) -> None:
        self.query_one("#form-error", Static).update(text)

    # ------------------------------------------------------------------ edit

    def table(self) -> dict[str, Any]:
        """The entry as a TOML table, from the fields that apply to its type."""

        def val(selector: str) -> str:
            w = self.query_one(selector)
            return str(w.value) if isinstance(w, (Input, Select)) else ""

        kind = val("#f-type")
        out: dict[str, Any] = {"type": kind}
        if kind in ("dense", "activation"):
            act = val("#f-activation")
            if act in ACTIVATION_PARAMS and val("#f-act-param").strip():
                out["activation"] = {
                    "name": act,
                    next(iter(ACTIVATION_PARAMS[act])): _num(val("#f-act-param")),
                }
            else:
                out["activation"] = act
        if kind == "dense":
            out["units"] = _num(val("#f-units"))
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
            out["batch_norm"] = val("#f-bn")
        if kind == "dropout":
            out["rate"] = _num(val("#f-rate"))
        if kind == "batch_norm":
            out["momentum"] = _num(val("#f-bn-momentum") or "0.99")
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

    def on_input_changed(self, event: Input.Changed) -> None:
        """A value was typed: send the entry."""
        event.stop()
        self._changed()
