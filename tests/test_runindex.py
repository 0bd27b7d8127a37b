"""Runs of any length (issue 23): ``stats.idx`` beside ``stats.jsonl``, and readers whose memory does
not grow with the run.

Long runs are synthesized through the training's own writer (``RunDir.append_block`` with
:class:`gradtui.probe.Records`) from the values of a real recorded run (the damaged-run corpus's
base run: a SimpleRNN and a Dense trained on digits), steps continued.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from gradtui import runindex
from gradtui.compare import compare_table
from gradtui.history import History
from gradtui.probe import COLUMNS, Records
from gradtui.rows import Tracked
from gradtui.runindex import NAME, open_index, read_indexed
from gradtui.runlog import RunDir, read_run, read_usable
from gradtui.source import RunSource
from gradtui.tensorboard import export_index, export_run

BASE = Path(__file__).parent / "data" / "damaged" / "base"
REAL = Path(__file__).parent / "tui" / "data" / "run-vanishing"


def real_run(tmp_path: Path, src: Path = REAL) -> Path:
    """A copy of a real recorded run, without an index (as older gradtui wrote it)."""
    run = tmp_path / src.name
    shutil.copytree(src, run, ignore=shutil.ignore_patterns(NAME))
    return run


def layers_of(run: Path) -> tuple[list[Tracked], np.ndarray, np.ndarray]:
    """The recorded layers of a real run, and its per-record ``(records, layers, K)`` statistics
    and losses, as the recorder's arrays."""
    records = read_run(run).records
    names = list(dict.fromkeys(n for r in records for n in r["layers"]))
    first = {n: next(r["layers"][n] for r in records if n in r["layers"]) for n in names}
    tracked = []
    for n in names:
        kind = "saturation" if "saturation" in first[n] else ("dead" if "dead" in first[n] else None)
        tracked.append(Tracked(n, "sigmoid", kind, n if kind else None, [], True, n == names[-1]))
    stats = np.full((len(records), len(names), len(COLUMNS)), np.nan)
    for i, r in enumerate(records):
        for j, n in enumerate(names):
            row = r["layers"][n]
            for k, col in enumerate(COLUMNS):
                key = {"act": tracked[j].act_kind or "", "update_norm": "update_ratio"}.get(col, col)
                if key in row:
                    stats[i, j, k] = row[key]
            stats[i, j, COLUMNS.index("update_norm")] = row["update_ratio"] * row["weight_norm"]
    losses = np.array([r["loss"] for r in records], float)
    return tracked, stats, losses


def synth(
    run_dir: Path,
    n: int,
    src: Path = REAL,
    block: int = 5000,
    summary: bool = True,
    writer: list | None = None,
) -> Path:
    """A run of ``n`` records written by the training's writer (``stats.jsonl`` and
    ``stats.idx``), its values drawn around a real run's; ``writer`` receives the writer, left
    open (the training goes on)."""
    tracked, stats, losses = layers_of(src)
    rng = np.random.default_rng(0)
    out = RunDir(run_dir)
    for a in range(0, n, block):
        m = min(block, n - a)
        pick = rng.integers(0, len(stats), m)
        noise = np.exp(rng.normal(0, 0.1, (m, 1, 1)))
        rec = Records(
            steps=np.arange(a, a + m, dtype=np.int64),
            losses=losses[pick] * noise[:, 0, 0],
            stats=stats[pick] * noise,
            epoch=a // 1000,
            layers=tracked,
        )
        out.append_block(rec)
    if summary:
        out.write_summary(json.loads((src / "summary.json").read_text()) | {"steps": n})
    if writer is not None:
        writer.append(out)
    else:
        out.close()
    return run_dir


# ---------------------------------------------------------------------- the file


def test_the_writer_index_matches_its_lines(tmp_path: Path) -> None:
    run = synth(tmp_path / "run", 3000, block=700)
    idx = open_index(run)
    assert idx.built == 0 and idx.count == 3000  # written by the writer, nothing parsed
    records = read_run(run).records
    assert [r["step"] for r in records] == idx.rows(0, 3000)["step"].tolist()
    names = idx.layer_names()
    assert names == read_run(run).layer_names()
    for key in ("grad_norm", "update_ratio", "saturation", "weight_norm"):
        full = np.array(read_run(run).field(key, names), float)
        # float32 of the writer's float64 (the line's 9 digits can round the other way: 1 ulp)
        np.testing.assert_allclose(
            idx.field(key, names), full.astype(np.float32), rtol=1.2e-7, equal_nan=True
        )
    # each row points at its own line
    with open(run / "stats.jsonl", "rb") as f:
        for i in (0, 1234, 2999):
            row = idx.rows(i, i + 1)
            f.seek(int(row["offset"][0]))
            assert json.loads(f.read(int(row["length"][0])))["step"] == i


def test_the_layout_is_what_formats_md_says(tmp_path: Path) -> None:
    """Read with struct alone, as another language would (docs/FORMATS.md)."""
    run = synth(tmp_path / "run", 10)
    data = (run / NAME).read_bytes()
    assert data[:8] == b"GTIDX1\n\x00"
    (hlen,) = struct.unpack("<I", data[8:12])
    header = json.loads(data[12 : 12 + hlen])
    assert (12 + hlen) % 8 == 0
    columns = header["columns"]
    width = header["row_bytes"]
    assert width == 32 + 4 * len(columns)
    rows = data[12 + hlen :]
    assert len(rows) == 10 * width
    step, offset, length, epoch, flags, loss = struct.unpack("<qqIiIf", rows[width * 3 : width * 3 + 32])
    line = (run / "stats.jsonl").read_bytes()[offset : offset + length]
    rec = json.loads(line)
    assert step == rec["step"] == 3 and flags & 1 and abs(loss - rec["loss"]) <= 1e-6 * abs(rec["loss"])
    values = struct.unpack(f"<{len(columns)}f", rows[width * 3 + 32 : width * 4])
    for (layer, key), v in zip(columns, values, strict=True):
        assert v == pytest.approx(float(rec["layers"][layer][key]), rel=1e-6, abs=1e-30, nan_ok=True)


def test_a_run_without_index_gets_it_once(tmp_path: Path) -> None:
    run = real_run(tmp_path)
    said = []
    idx = open_index(run, progress=lambda done, total: said.append((done, total)))
    assert idx.built == len(read_run(run).records) > 0 and (run / NAME).is_file()
    assert said and said[-1][0] == said[-1][1] == (run / "stats.jsonl").stat().st_size
    idx.close()
    mtime = (run / NAME).stat().st_mtime_ns
    again = open_index(run)
    assert again.built == 0 and again.count == idx.count
    assert (run / NAME).stat().st_mtime_ns == mtime
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_an_index_of_another_stats_jsonl_is_rebuilt(tmp_path: Path) -> None:
    run = synth(tmp_path / "run", 50)
    lines = (run / "stats.jsonl").read_bytes().splitlines(keepends=True)
    (run / "stats.jsonl").write_bytes(b"".join(lines[10:]))  # rewritten by hand: offsets move
    idx = open_index(run)
    assert idx.built == 40 and idx.rows(0, 1)["step"][0] == 10


def test_a_torn_tail_is_left_out_of_both_files(tmp_path: Path) -> None:
    run = synth(tmp_path / "run", 100, summary=False)
    with open(run / "stats.jsonl", "ab") as f:
        f.write(b'{"step":100,"epoch":0,"loss":1.2,"lay')  # killed mid-line
    with open(run / NAME, "ab") as f:
        f.write(b"\x01" * 17)  # and mid-row
    got = read_indexed(run)
    assert got.count == 100
    assert "torn" in got.note
    src = RunSource(run)
    ended = src.run(lambda e: None)
    assert ended.snapshot.step >= 99 and src.history.loss.count == 100


def test_damaged_lines_are_said_the_same_with_the_index(tmp_path: Path) -> None:
    run = real_run(tmp_path)
    lines = (run / "stats.jsonl").read_text().splitlines(keepends=True)
    rec = json.loads(lines[3])
    rec["layers"][next(iter(rec["layers"]))]["grad_norm"] = [1, 2]
    lines[3] = json.dumps(rec) + "\n"
    lines.insert(5, "not json\n")
    (run / "stats.jsonl").write_text("".join(lines))
    full = read_usable(run)
    first = read_indexed(run)  # builds the index
    second = read_indexed(run)  # reads it
    assert first.note == second.note == full.note
    assert "1 not JSON" in full.note and "grad_norm (not a number)" in full.note
    assert second.count == len(full.records)


def test_a_read_only_run_directory_is_indexed_in_a_temporary_file(tmp_path: Path, monkeypatch) -> None:
    run = real_run(tmp_path)

    create = runindex._create_temp

    def refuse(path: Path):  # what a read-only folder answers (tests may run as root)
        if Path(path).parent == run:
            raise PermissionError(13, "Permission denied", str(path))
        return create(path)

    monkeypatch.setattr(runindex, "_create_temp", refuse)
    before = sorted(p.name for p in run.iterdir())
    got = read_indexed(run)
    assert got.count == len(read_run(run).records) and "temporary" in got.index.where
    assert sorted(p.name for p in run.iterdir()) == before  # nothing written where it was read
    src = RunSource(run)
    src.run(lambda e: None)
    assert any("temporary" in n for n in src.notes())


def test_a_new_layer_widens_the_index(tmp_path: Path) -> None:
    """A second optimizer's rows (a GAN) or a new compile: columns added, earlier rows absent."""
    tracked, stats, losses = layers_of(REAL)
    out = RunDir(tmp_path / "run")
    for part, layers in ((slice(0, 2), tracked[:2]), (slice(2, None), tracked)):
        k = len(layers)
        out.append_block(
            Records(np.arange(5) + (0 if part.start == 0 else 5), losses[:5], stats[:5, :k], 0, layers)
        )
    out.close()
    idx = open_index(tmp_path / "run")
    assert idx.count == 10 and idx.built == 0
    names = idx.layer_names()
    g = idx.field("grad_norm", names)
    assert np.isnan(g[:5, 2:]).all() and np.isfinite(g[5:]).all()
    h = History()
    h.add_index(idx)
    ref = History()
    ref.extend(read_run(tmp_path / "run").records)
    assert h.series(names[-1], "grad_norm").count == ref.series(names[-1], "grad_norm").count == 5


# ---------------------------------------------------------------------- readers agree with the full read


def test_open_fills_the_history_the_full_reading_does(tmp_path: Path) -> None:
    run = synth(tmp_path / "run", 3001, block=999)
    ref = History()
    ref.extend(read_run(run).records)
    src = RunSource(run)
    src.run(lambda e: None)
    got = src.history
    assert got.last_step == ref.last_step and got.last_epoch == ref.last_epoch
    assert list(got.layers) == list(ref.layers)
    for name, series in ref.layers.items():
        assert list(got.layers[name]) == list(series)
        for key, s in series.items():
            g = got.layers[name][key]
            assert (g.steps, g.stride, g.count, g._n) == (s.steps, s.stride, s.count, s._n)
            np.testing.assert_allclose(g.points(), s.points(), rtol=2e-7)
    np.testing.assert_allclose(got.loss.points(), ref.loss.points(), rtol=2e-7)


def test_time_curves_come_from_the_newest_measured_line(tmp_path: Path) -> None:
    run = real_run(tmp_path, BASE)
    ref = History()
    ref.extend(read_run(run).records)
    src = RunSource(run)
    src.run(lambda e: None)
    assert ref.time and src.history.time == ref.time


def test_compare_reads_the_last_records_and_prints_what_the_full_read_does(tmp_path: Path) -> None:
    long = real_run(tmp_path / "a")
    short = real_run(tmp_path / "b", BASE)

    def text(runs) -> str:
        console = Console(width=120, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
        console.print(compare_table(runs))
        return console.export_text()

    old = text([read_usable(long), read_usable(short)])
    new = text([read_indexed(long), read_indexed(short)])
    assert new == old and "records" in new


def events(folder: Path) -> list[tuple[int, list[tuple[str, bytes]]]]:
    """The events of an export (step, and each value's tag and serialized value), without the
    wall times, read with protobuf alone."""
    from tensorboard.compat.proto.event_pb2 import Event

    (path,) = list(folder.glob("events.out.tfevents.*"))
    data = path.read_bytes()
    out = []
    at = 0
    while at < len(data):
        (n,) = struct.unpack("<Q", data[at : at + 8])
        ev = Event.FromString(data[at + 12 : at + 12 + n])
        at += 12 + n + 4
        out.append((ev.step, [(v.tag, v.SerializeToString()) for v in ev.summary.value]))
    return out


def test_export_writes_what_the_full_read_export_wrote(tmp_path: Path) -> None:
    run = real_run(tmp_path, BASE)
    export_run(read_usable(run), tmp_path / "old")
    export_index(read_indexed(run), tmp_path / "new")
    old, new = events(tmp_path / "old"), events(tmp_path / "new")
    assert len(new) == len(old) > 30 and new == old


def test_export_keeps_the_step_where_a_run_turned_nan(tmp_path: Path) -> None:
    run = real_run(tmp_path, BASE)
    lines = (run / "stats.jsonl").read_text().splitlines(keepends=True)
    rec = json.loads(lines[7])
    name = next(iter(rec["layers"]))
    rec["layers"][name]["grad_norm"] = "nan"
    rec["loss"] = "inf"
    del rec["layers"][name]["update_ratio"]
    lines[7] = json.dumps(rec) + "\n"
    (run / "stats.jsonl").write_text("".join(lines))
    export_run(read_usable(run), tmp_path / "old")
    export_index(read_indexed(run), tmp_path / "new")
    assert events(tmp_path / "new") == events(tmp_path / "old")


def test_report_of_a_long_run_draws_envelopes(tmp_path: Path) -> None:
    from gradtui.report import HEAT_BUCKETS, figure_data, write_report

    run = synth(tmp_path / "run", 20_000)
    got = read_indexed(run)
    names = got.layer_names()
    data = figure_data(got, names)
    assert data.records == 20_000
    spans = data.spans("grad_norm")
    assert len(spans.records) <= HEAT_BUCKETS
    # every recorded value lies within its span's band: the extremes are kept
    full = got.index.field("grad_norm", names)
    assert np.nanmax(full) == np.nanmax(spans.hi) and np.nanmin(full) == np.nanmin(spans.lo)
    out = write_report(got, tmp_path / "r.png")
    assert out.stat().st_size > 10_000


# ---------------------------------------------------------------------- follow


def test_follow_sees_what_is_appended_after_the_index(tmp_path: Path) -> None:
    writer: list[RunDir] = []
    run = synth(tmp_path / "run", 500, summary=False, writer=writer)
    src = RunSource(run, follow=True, interval=0.05)
    done = []
    thread = threading.Thread(target=lambda: done.append(src.run(lambda e: None)), daemon=True)
    thread.start()
    while src.history.loss.count < 500:
        thread.join(0.05)
    tracked, stats, losses = layers_of(REAL)
    writer[0].append_block(
        Records(np.arange(500, 520), losses[:20], stats[:20], 1, tracked)
    )  # the next drain
    writer[0].close()
    (run / "summary.json").write_text(json.dumps({"name": "x", "status": "completed", "steps": 520}))
    thread.join(10)
    assert done and done[0].followed
    assert src.history.loss.count == 520 and src.history.last_step == 519 and src.reader.count == 520
    assert open_index(run).count == 520


# ---------------------------------------------------------------------- memory does not grow


def peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_readers_memory_does_not_grow_with_the_run(tmp_path: Path, monkeypatch) -> None:
    """10,000 and 100,000 records: each reader's peak (traced allocations) is the same within a
    margin, bounded by its chunk, not by the run."""
    monkeypatch.setattr(runindex, "CHUNK_BYTES", 1 << 20)
    monkeypatch.setattr("gradtui.tensorboard.EVENT_BYTES", 1 << 20)
    small = synth(tmp_path / "small", 10_000)
    large = synth(tmp_path / "large", 100_000, block=10_000)
    assert (large / "stats.jsonl").stat().st_size > 9 * (small / "stats.jsonl").stat().st_size
    other = real_run(tmp_path, BASE)

    def readers(run: Path) -> dict[str, int]:
        got = {}
        got["open"] = peak(lambda: RunSource(run).run(lambda e: None))
        got["compare"] = peak(lambda: compare_table([read_indexed(run), read_indexed(other)]))
        got["report data"] = peak(lambda: read_indexed(run).field("grad_norm"))
        got["export"] = peak(lambda: export_index(read_indexed(run), tmp_path / f"tb-{run.name}-{len(got)}"))
        return got

    readers(small)  # imports and caches out of the way
    a, b = readers(small), readers(large)
    for name in a:
        assert b[name] < 1.5 * a[name] + (1 << 20), (name, a[name], b[name])
        assert b[name] < 48 << 20, (name, b[name])
