"""The ``text`` data set (issue 22): next-character prediction on the standard library's own
``.py`` files (on every machine, nothing downloaded) or a ``.txt`` file, a class per position."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gradtui.cli import app as cli
from gradtui.data import char_ids, load, text_windows
from gradtui.errors import DataError, PresetError
from gradtui.preset import TEXT_VOCAB, loads
from gradtui.preset import load as load_preset
from gradtui.session import Session
from gradtui.stack import plan

LM = """
name = "char-lm"
[data]
dataset = "text"
samples = {samples}
length = 16
{source}
[[layers]]
type = "embedding"
input_dim = 98
output_dim = 16
[[layers]]
type = "lstm"
units = 32
return_sequences = {seq}
[[layers]]
type = "dense"
units = 98
activation = "softmax"
[train]
optimizer = "adam"
learning_rate = 0.01
epochs = 3
"""


def lm(samples: int = 400, source: str = "", seq: str = "true"):  # type: ignore[no-untyped-def]
    return loads(LM.format(samples=samples, source=source, seq=seq))


def test_characters_map_to_98_ids() -> None:
    ids = char_ids("a\tb\n~ é")
    assert ids.tolist() == [ord("a") - 29, 1, ord("b") - 29, 2, 97, 3, 0]
    assert ids.max() < TEXT_VOCAB


def test_windows_predict_the_next_character_at_every_position() -> None:
    spec = lm().data
    x, y = text_windows(spec, seed=0)
    assert x.shape == y.shape == (400, 16) and x.dtype == np.int32
    assert np.array_equal(x[:, 1:], y[:, :-1])  # the target is the input shifted by one
    again, _ = text_windows(spec, seed=0)
    other, _ = text_windows(spec, seed=1)
    assert np.array_equal(x, again) and not np.array_equal(x, other)
    ds = load(spec, seed=0)
    assert ds.num_classes == TEXT_VOCAB and ds.x_val is not None and ds.y_train.shape[1:] == (16,)


def test_a_txt_source_is_read_next_to_its_preset(tmp_path: Path) -> None:
    (tmp_path / "corpus.txt").write_text("hello world, " * 50, encoding="utf-8")
    preset_file = tmp_path / "lm.toml"
    preset_file.write_text(LM.format(samples=64, source='source = "corpus.txt"', seq="true"))
    p = load_preset(str(preset_file))
    assert p.data.source == str(tmp_path / "corpus.txt")
    x, _ = text_windows(p.data, seed=0)
    assert set(np.unique(x)) <= set(char_ids("hello world, ").tolist())


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ('source = "notes.md"', "not a .txt file"),
        ("source = 3", "must be a string"),
    ],
)
def test_a_bad_source_key_is_a_preset_error(source: str, says: str) -> None:
    with pytest.raises(PresetError) as info:
        lm(source=source)
    assert "data.source" in info.value.one_line() and says in info.value.one_line()


def test_source_belongs_to_text_only() -> None:
    with pytest.raises(PresetError, match="data.source"):
        loads(
            '[data]\ndataset = "digits"\nsource = "a.txt"\n[[layers]]\ntype = "dense"\nunits = 10\nactivation = "softmax"\n'
        )


def test_a_missing_fifo_or_binary_source_is_one_line(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"abc\x00def" * 10)
    short = tmp_path / "short.txt"
    short.write_text("tiny")
    for path, says in (
        (tmp_path / "none.txt", "does not exist"),
        (fifo, "not a regular file"),
        (binary, "binary"),
        (short, "at least 18"),
    ):
        spec = lm(source=f'source = "{path}"').data
        with pytest.raises(DataError) as info:
            text_windows(spec, seed=0)  # a FIFO is never opened: this returns
        assert says in info.value.one_line(), info.value.one_line()


def test_the_cli_says_so_in_one_line(tmp_path: Path) -> None:
    preset_file = tmp_path / "lm.toml"
    preset_file.write_text(LM.format(samples=64, source='source = "gone.txt"', seq="true"))
    result = CliRunner().invoke(cli, ["run", str(preset_file), "--out", str(tmp_path / "run"), "-q"])
    assert result.exit_code == 2
    assert "gone.txt" in result.output and "does not exist" in result.output


def test_the_output_must_keep_the_sequence_for_text_and_drop_it_for_classes() -> None:
    with pytest.raises(PresetError, match="target at every position"):
        plan(lm(seq="false"), (16,), TEXT_VOCAB)
    seq_digits = loads(
        '[data]\ndataset = "digits"\n[[layers]]\ntype = "lstm"\nunits = 8\nreturn_sequences = true\n'
        '[[layers]]\ntype = "dense"\nunits = 10\nactivation = "softmax"\n'
    )
    with pytest.raises(PresetError, match="needs flat input"):  # a dense on every step: text only
        plan(seq_digits, (64, 1), 10)


def test_a_short_character_model_learns_below_chance(tmp_path: Path) -> None:
    summary = Session(lm(samples=640).with_overrides(max_steps=40), tmp_path / "run").run()
    assert summary["status"] == "completed" and summary["steps"] == 40
    chance = math.log(TEXT_VOCAB)  # 4.585: a uniform guess over the characters
    assert summary["final"]["loss"] < 0.8 * chance, summary["final"]
