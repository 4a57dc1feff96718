"""Folder runs: every schedule writes the same files; bad files fail alone; Ctrl-C/SIGTERM keep sets whole."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import segcli.imageio
import segcli.pipeline.run
from segcli.checkpoints.record import CheckpointRecord
from segcli.engine import SegmentationEngine
from engine_support import engine_of
from segcli.errors import OutputError
from segcli.inputs import find_images
from segcli.outputs.plan import OutputOptions
from segcli.pipeline.interrupts import exit_code
from segcli.pipeline.run import FolderRun, segment_files
from segcli.pipeline.scheduler import Schedule


def _engine() -> SegmentationEngine:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, stride=2, padding=1))
    record = CheckpointRecord(name="t", model="lraspp", dataset="t", categories=("a", "b", "c", "d"),
                              filename="t.safetensors")
    return engine_of(net, record)


def _folder(root: Path, count: int = 12) -> Path:
    """`count - 1` images of two sizes (interleaved, so batches break on size changes) and one broken file."""
    folder = root / "in"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(count - 1):
        size = (32, 40) if index % 3 else (24, 24)
        target = folder / ("sub" if index % 4 == 0 else "") / f"img{index:02d}.png"
        Image.fromarray(rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)).save(target)
    (folder / "img05_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return folder


def _output_bytes(out_dir: Path) -> dict[str, bytes]:
    return {str(path.relative_to(out_dir)): path.read_bytes()
            for path in sorted(out_dir.rglob("*.png"))}


@pytest.mark.parametrize("schedule", [Schedule(4, 2), Schedule(1, 1), Schedule(3, 0), Schedule(lanes=2, torch_threads=1),
                                      Schedule(batch_size=2, io_workers=1, lanes=3)])
def test_every_schedule_writes_the_same_files_and_reports_the_broken_one(tmp_path, schedule):
    sources = find_images([_folder(tmp_path)])
    engine = _engine()
    sequential = segment_files(engine, sources, OutputOptions(tmp_path / "seq"), batch_size=1, io_workers=0)
    statuses: list[str] = []
    other = FolderRun(OutputOptions(tmp_path / "other"), sources).execute(
        engine, schedule=schedule, on_progress=lambda source, status: statuses.append(status))
    assert len(statuses) == len(sources) == 12
    for summary in (sequential, other):
        assert summary.processed == 11 and not summary.interrupted
        assert [path.name for path, _ in summary.failed] == ["img05_broken.jpg"]
    assert other.written == sequential.written == [s.path for s in sources if s.path.suffix == ".png"]
    assert "truncated or corrupt" in other.failed[0][1] or "cannot" in other.failed[0][1]
    seq_files, other_files = _output_bytes(tmp_path / "seq"), _output_bytes(tmp_path / "other")
    assert len(seq_files) == 22 and seq_files == other_files  # labels and overlays, byte for byte
    assert not list((tmp_path / "other").rglob("*.tmp"))


def test_stage_times_are_summed_over_written_images(tmp_path):
    sources = find_images([_folder(tmp_path)])
    summary = segment_files(_engine(), sources, OutputOptions(tmp_path / "out"), batch_size=1, io_workers=0)
    stages = {"decode", "preprocess", "forward", "upsample", "label", "overlay", "json", "rename"}
    assert stages <= set(summary.stage_ms)
    assert all(value >= 0 for value in summary.stage_ms.values())
    assert sum(summary.stage_ms.values()) <= summary.seconds * 1000


def test_rerun_skips_complete_sets_and_refuses_without_a_flag(tmp_path):
    sources = find_images([_folder(tmp_path)])
    engine = _engine()
    segment_files(engine, sources, OutputOptions(tmp_path / "out"), batch_size=3, io_workers=2)
    again = segment_files(engine, sources, OutputOptions(tmp_path / "out", skip_existing=True),
                          batch_size=3, io_workers=2)
    assert len(again.skipped) == 11 and again.processed == 0
    assert [path.name for path, _ in again.failed] == ["img05_broken.jpg"]
    with pytest.raises(OutputError, match="already holds the outputs of 3 of 3 images"):
        segment_files(engine, sources[:3], OutputOptions(tmp_path / "out"))


def test_a_plan_with_nothing_to_do_needs_no_engine(tmp_path):
    sources = [source for source in find_images([_folder(tmp_path)]) if "broken" not in source.path.name]
    segment_files(_engine(), sources, OutputOptions(tmp_path / "out"))
    run = FolderRun(OutputOptions(tmp_path / "out", skip_existing=True), sources, [(tmp_path, "a problem")])
    summary = run.execute(None)
    assert summary.processed == 0 and len(summary.skipped) == 11 and summary.failed == [(tmp_path, "a problem")]


class _InterruptedEngine(SegmentationEngine):
    """Raises KeyboardInterrupt (as a second Ctrl-C would) on the n-th model call."""

    def __init__(self, calls_before_interrupt: int) -> None:
        base = _engine()
        super().__init__(base.model, base.record)
        self.calls_left = calls_before_interrupt

    def predict_batch(self, images, crf=None, return_probabilities=False):
        if self.calls_left == 0:
            raise KeyboardInterrupt
        self.calls_left -= 1
        return super().predict_batch(images, crf=crf, return_probabilities=return_probabilities)


def _complete_sets_only(out_dir: Path, written: list[Path]) -> None:
    stems = sorted(path.stem for path in written)
    assert sorted(path.stem for path in out_dir.rglob("*.json")) == stems
    assert sorted(p.stem for p in out_dir.rglob("*.png") if not p.stem.endswith("_overlay")) == stems
    assert not list(out_dir.rglob("*.tmp"))


@pytest.mark.parametrize("schedule", [Schedule(1, 0), Schedule(2, 2), Schedule(lanes=2, torch_threads=1)])
def test_keyboard_interrupt_stops_with_complete_outputs_only(tmp_path, schedule):
    sources = find_images([_folder(tmp_path)])
    out_dir = tmp_path / "out"
    summary = FolderRun(OutputOptions(out_dir), sources).execute(_InterruptedEngine(2), schedule=schedule)
    assert summary.interrupted and summary.signal == signal.SIGINT and exit_code(summary.signal) == 130
    assert 0 < summary.processed < 11
    _complete_sets_only(out_dir, summary.written)


@pytest.mark.parametrize("number, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("schedule", [Schedule(1, 0), Schedule(1, 2), Schedule(lanes=2, torch_threads=1)])
def test_a_signal_during_a_write_lets_that_set_land_and_stops_after_it(tmp_path, monkeypatch, number, code,
                                                                        schedule):
    sources = find_images([_folder(tmp_path)])
    real_write, calls = segcli.pipeline.run.write_image_outputs, []

    def write_with_signal(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), number)  # lands while this set is being written
        return real_write(*args, **kwargs)

    monkeypatch.setattr(segcli.pipeline.run, "write_image_outputs", write_with_signal)
    out_dir = tmp_path / "out"
    told: list[int] = []
    summary = FolderRun(OutputOptions(out_dir), sources).execute(_engine(), schedule=schedule, on_stop=told.append)
    assert told == [number]
    assert summary.interrupted and summary.signal == number and exit_code(summary.signal) == code
    in_flight = 2 * schedule.io_workers + schedule.lanes - 1  # writes queued behind the model, other lanes' images
    assert 3 <= summary.processed <= 3 + in_flight
    _complete_sets_only(out_dir, summary.written)
    assert signal.getsignal(number) is not None  # the previous handler is back
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_signal_interrupts_at_once_and_rolls_the_set_back(tmp_path, monkeypatch):
    sources = find_images([_folder(tmp_path)])
    real_write, calls = segcli.pipeline.run.write_image_outputs, []

    def write_interrupted_twice(paths, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # the impatient second Ctrl-C
        return real_write(paths, *args, **kwargs)

    monkeypatch.setattr(segcli.pipeline.run, "write_image_outputs", write_interrupted_twice)
    out_dir = tmp_path / "out"
    summary = segment_files(_engine(), sources, OutputOptions(out_dir), batch_size=1, io_workers=0)
    assert summary.interrupted and summary.processed == 1
    _complete_sets_only(out_dir, summary.written)


def test_overlapped_run_holds_a_bounded_number_of_decoded_images(tmp_path, monkeypatch):
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for index in range(40):
        Image.fromarray(rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)).save(folder / f"{index:02d}.png")
    live, peak, lock = [0], [0], threading.Lock()
    real_load, real_write = segcli.imageio.load_image, segcli.pipeline.run.write_image_outputs

    def counting_load(*args, **kwargs):
        loaded = real_load(*args, **kwargs)
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        return loaded

    def counting_write(*args, **kwargs):
        result = real_write(*args, **kwargs)
        with lock:
            live[0] -= 1
        return result

    monkeypatch.setattr(segcli.imageio, "load_image", counting_load)
    monkeypatch.setattr(segcli.pipeline.run, "write_image_outputs", counting_write)
    batch_size, workers = 2, 1
    summary = segment_files(_engine(), find_images([folder]), OutputOptions(tmp_path / "out", write_overlay=False),
                            batch_size=batch_size, io_workers=workers)
    assert summary.processed == 40 and live[0] == 0
    # queued decodes + one batch + queued writes (see Scheduler.ahead / .behind)
    assert peak[0] <= 2 * batch_size + 4 * workers + 1 < 40


def test_automatic_schedule_follows_the_cores():
    assert Schedule.auto("cpu", cores=1) == Schedule(batch_size=1, io_workers=0, lanes=1, torch_threads=1)
    assert Schedule.auto("cpu", cores=2) == Schedule(batch_size=1, io_workers=0, lanes=2, torch_threads=1)
    assert Schedule.auto("cpu", cores=16) == Schedule(batch_size=1, io_workers=0, lanes=2, torch_threads=8)
    assert Schedule.auto("cuda", cores=2) == Schedule(batch_size=4, io_workers=2)
    # a GPU leaves the cores to decoding and writing: one for the model's thread, the rest split, at most 8 each
    assert Schedule.auto("cuda", cores=16) == Schedule(batch_size=4, io_workers=7)
    assert Schedule.auto("cuda", cores=64) == Schedule(batch_size=4, io_workers=8)
    assert Schedule.auto("cuda", cores=16).with_choices(None, 3) == Schedule(batch_size=4, io_workers=3)
    # a user's --batch-size/--io-workers: one lane, torch's threads as they are
    assert Schedule.auto("cpu", cores=2).with_choices(1, 0) == Schedule(batch_size=1, io_workers=0)
    assert Schedule.auto("cpu", cores=2).with_choices(None, None) == Schedule.auto("cpu", cores=2)
    with pytest.raises(Exception, match="batch size and lanes must be >= 1"):
        Schedule(batch_size=0)


@pytest.mark.parametrize("lanes", [1, 2])
def test_torch_threads_are_set_for_the_run_and_restored(tmp_path, monkeypatch, lanes):
    sources = find_images([_folder(tmp_path)])
    seen: list[int] = []
    real_load = segcli.imageio.load_image

    def load_noting_threads(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real_load(*args, **kwargs)

    monkeypatch.setattr(segcli.imageio, "load_image", load_noting_threads)
    torch.set_num_threads(3)  # not the run's count (the suite runs tests on one thread: tests/conftest.py)
    FolderRun(OutputOptions(tmp_path / "out"), sources).execute(
        _engine(), schedule=Schedule(lanes=lanes, torch_threads=1))
    assert set(seen) == {1} and torch.get_num_threads() == 3
