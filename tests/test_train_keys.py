"""``[train]`` keys of issue 22: adamw, weight_decay, epsilon, warmup_steps, schedule.

Each reaches the Keras optimizer it names (read back from the optimizer itself), bad values are
one-line preset errors, and a short real training runs with them."""

from __future__ import annotations

import math

import pytest

from gradtui.build import make_optimizer
from gradtui.errors import PresetError
from gradtui.preset import loads
from gradtui.session import Session

BASE = """
name = "keys"
[data]
dataset = "digits"
[[layers]]
type = "dense"
units = 16
activation = "relu"
initializer = "he_normal"
[[layers]]
type = "dense"
units = 10
activation = "softmax"
[train]
epochs = 1
"""


def preset(train: str):  # type: ignore[no-untyped-def]
    return loads(BASE + train)


def rate_at(optimizer, step: int) -> float:  # type: ignore[no-untyped-def]
    lr = optimizer._learning_rate  # the schedule itself (optimizer.learning_rate reads it at iterations)
    return float(lr(step)) if callable(lr) else float(lr)


def test_adamw_weight_decay_and_epsilon_reach_the_keras_optimizer() -> None:
    opt = make_optimizer(preset('optimizer = "adamw"\nweight_decay = 1e-4\nepsilon = 1e-10\n'))
    assert type(opt).__name__ == "AdamW"
    assert math.isclose(opt.weight_decay, 1e-4) and math.isclose(opt.epsilon, 1e-10)
    assert math.isclose(rate_at(opt, 0), 0.01, rel_tol=1e-6)
    default = make_optimizer(preset('optimizer = "adamw"\n'))
    assert math.isclose(default.weight_decay, 0.004)  # Keras's own default when the key is absent


def test_warmup_then_cosine_to_zero_over_the_run() -> None:
    opt = make_optimizer(preset('optimizer = "adam"\nwarmup_steps = 10\nschedule = "cosine"\n'), 110)
    assert rate_at(opt, 0) == 0.0
    assert math.isclose(rate_at(opt, 5), 0.005, rel_tol=1e-5)
    assert math.isclose(rate_at(opt, 10), 0.01, rel_tol=1e-5)
    assert math.isclose(rate_at(opt, 60), 0.005, rel_tol=1e-4)  # half-way down the cosine
    assert rate_at(opt, 110) < 1e-9


def test_warmup_with_a_constant_rate_stays_at_the_rate() -> None:
    opt = make_optimizer(preset("warmup_steps = 4\n"), 100)
    assert math.isclose(rate_at(opt, 2), 0.005, rel_tol=1e-5)
    assert all(math.isclose(rate_at(opt, s), 0.01, rel_tol=1e-5) for s in (4, 50, 100))


def test_a_plain_preset_keeps_a_float_learning_rate() -> None:
    from keras.optimizers.schedules import LearningRateSchedule

    opt = make_optimizer(preset(""))
    assert not isinstance(opt._learning_rate, LearningRateSchedule)
    assert math.isclose(float(opt.learning_rate), 0.01, rel_tol=1e-6)
    scheduled = make_optimizer(preset("warmup_steps = 2\n"), 10)
    assert isinstance(scheduled._learning_rate, LearningRateSchedule)


@pytest.mark.parametrize(
    ("train", "key", "says"),
    [
        ("epsilon = 1e-8\n", "train.epsilon", "not sgd"),
        ('optimizer = "adamw"\nschedule = "linear"\n', "train.schedule", "cosine"),
        ("warmup_steps = -1\n", "train.warmup_steps", "between 0 and"),
        ('optimizer = "adamw"\nweight_decay = "lots"\n', "train.weight_decay", "number"),
        ('optimizer = "adamax"\n', "train.optimizer", "adamw"),
    ],
)
def test_bad_train_keys_are_one_line_errors(train: str, key: str, says: str) -> None:
    with pytest.raises(PresetError) as info:
        preset(train)
    line = info.value.one_line()
    assert key in line and says in line and "\n" not in line


def test_the_keys_round_trip_through_the_toml_a_run_keeps() -> None:
    p = preset(
        'optimizer = "adamw"\nweight_decay = 1e-4\nepsilon = 1e-8\nwarmup_steps = 3\nschedule = "cosine"\n'
    )
    assert loads(p.to_toml()) == p


def test_a_short_training_with_adamw_warmup_and_cosine(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = preset('optimizer = "adamw"\nlearning_rate = 0.003\nwarmup_steps = 5\nschedule = "cosine"\n')
    summary = Session(p.with_overrides(max_steps=20), tmp_path / "run").run()
    assert summary["status"] == "completed" and summary["steps"] == 20
    assert math.isfinite(summary["final"]["loss"])
