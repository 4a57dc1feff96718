"""The overlapped, batched folder schedule writes what the one-at-a-time schedule writes."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import segcli.imageio
import segcli.pipeline
from segcli.checkpoints.record import CheckpointRecord
from segcli.engine import SegmentationEngine
from segcli.imageio import find_images
from segcli.pipeline import OutputOptions, segment_files


def _engine() -> SegmentationEngine:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, stride=2, padding=1))
    record = CheckpointRecord(name="t", model="lraspp", dataset="t", categories=("a", "b", "c", "d"),
                              filename="t.safetensors")
    return SegmentationEngine(net, record)


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


def _label_bytes(out_dir: Path) -> dict[str, bytes]:
    return {str(path.relative_to(out_dir)): path.read_bytes()
            for path in sorted(out_dir.rglob("*.png")) if not path.name.endswith("_overlay.png")}


def test_overlapped_batched_run_writes_the_same_label_pngs_and_reports_the_broken_file(tmp_path):
    sources = find_images([_folder(tmp_path)])
    engine = _engine()
    sequential = segment_files(engine, sources, OutputOptions(tmp_path / "seq"))
    statuses: list[str] = []
    overlapped = segment_files(engine, sources, OutputOptions(tmp_path / "fast"), batch_size=4, io_workers=2,
                               on_progress=lambda source, status: statuses.append(status))
    assert len(statuses) == len(sources) == 12
    for summary in (sequential, overlapped):
        assert summary.processed == 11 and not summary.interrupted
        assert [path.name for path, _ in summary.failed] == ["img05_broken.jpg"]
    assert overlapped.written == sequential.written  # same order as the inputs
    assert "cannot" in overlapped.failed[0][1] or "corrupt" in overlapped.failed[0][1]
    seq_labels, fast_labels = _label_bytes(tmp_path / "seq"), _label_bytes(tmp_path / "fast")
    assert len(seq_labels) == 11 and seq_labels == fast_labels
    assert not list((tmp_path / "fast").rglob("*.tmp"))


def test_overlapped_run_skips_existing_outputs(tmp_path):
    sources = find_images([_folder(tmp_path)])
    engine = _engine()
    segment_files(engine, sources, OutputOptions(tmp_path / "out"), batch_size=3, io_workers=2)
    again = segment_files(engine, sources, OutputOptions(tmp_path / "out", skip_existing=True),
                          batch_size=3, io_workers=2)
    assert len(again.skipped) == 11 and again.processed == 0
    assert [path.name for path, _ in again.failed] == ["img05_broken.jpg"]
    refused = segment_files(engine, sources[:3], OutputOptions(tmp_path / "out"), batch_size=3, io_workers=2)
    assert len(refused.failed) == 3 and all("already exists" in message for _, message in refused.failed)


class _InterruptedEngine(SegmentationEngine):
    """Raises KeyboardInterrupt (as Ctrl-C would) on the n-th model call."""

    def __init__(self, calls_before_interrupt: int) -> None:
        base = _engine()
        super().__init__(base.model, base.record)
        self.calls_left = calls_before_interrupt

    def predict_batch(self, images, crf=None, return_probabilities=False):
        if self.calls_left == 0:
            raise KeyboardInterrupt
        self.calls_left -= 1
        return super().predict_batch(images, crf=crf, return_probabilities=return_probabilities)


@pytest.mark.parametrize("batch_size, io_workers", [(1, 0), (2, 2)])
def test_ctrl_c_stops_between_images_with_complete_outputs_only(tmp_path, batch_size, io_workers):
    sources = find_images([_folder(tmp_path)])
    out_dir = tmp_path / "out"
    summary = segment_files(_InterruptedEngine(2), sources, OutputOptions(out_dir), batch_size=batch_size,
                            io_workers=io_workers)
    assert summary.interrupted
    assert 0 < summary.processed < 11
    assert not list(out_dir.rglob("*.tmp"))
    written_stems = sorted(path.stem for path in summary.written)
    # every image reported written has all its files (JSON last); no other image has any
    assert sorted(path.stem for path in out_dir.rglob("*.json")) == written_stems
    assert sorted(p.stem for p in out_dir.rglob("*.png") if not p.stem.endswith("_overlay")) == written_stems


@pytest.mark.parametrize("overwrite", [False, True])
def test_ctrl_c_just_after_a_set_lands_still_counts_it(tmp_path, monkeypatch, overwrite):
    """The signal can arrive between the last file's rename and the bookkeeping: the set is complete,
    so it is reported written (and an older set it replaced is not mistaken for it)."""
    sources = find_images([_folder(tmp_path)])
    out_dir = tmp_path / "out"
    if overwrite:  # a previous run's complete outputs are already there
        assert segment_files(_engine(), sources, OutputOptions(out_dir)).processed == 11
    real_write, calls = segcli.pipeline.write_outputs, []

    def write_then_interrupt(*args, **kwargs):
        real_write(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(segcli.pipeline, "write_outputs", write_then_interrupt)
    summary = segment_files(_engine(), sources, OutputOptions(out_dir, overwrite=overwrite))
    assert summary.interrupted and summary.processed == 3
    first_three = [source.path for source in sources if source.path.suffix == ".png"][:3]
    assert summary.written == first_three


def test_ctrl_c_before_a_set_lands_does_not_count_an_older_set(tmp_path, monkeypatch):
    sources = find_images([_folder(tmp_path)])
    out_dir = tmp_path / "out"
    assert segment_files(_engine(), sources, OutputOptions(out_dir)).processed == 11
    calls = []

    def interrupt_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # before anything of the third set is replaced
        return None

    monkeypatch.setattr(segcli.pipeline, "write_outputs", interrupt_on_third)
    summary = segment_files(_engine(), sources, OutputOptions(out_dir, overwrite=True))
    assert summary.interrupted and summary.processed == 2


def test_overlapped_run_holds_a_bounded_number_of_decoded_images(tmp_path, monkeypatch):
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for index in range(40):
        Image.fromarray(rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)).save(folder / f"{index:02d}.png")
    live, peak, lock = [0], [0], threading.Lock()
    real_load, real_write = segcli.imageio.load_image, segcli.pipeline.write_outputs

    def counting_load(*args, **kwargs):
        loaded = real_load(*args, **kwargs)
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        return loaded

    def counting_write(*args, **kwargs):
        real_write(*args, **kwargs)
        with lock:
            live[0] -= 1

    monkeypatch.setattr(segcli.imageio, "load_image", counting_load)
    monkeypatch.setattr(segcli.pipeline, "write_outputs", counting_write)
    batch_size, workers = 2, 1
    summary = segment_files(_engine(), find_images([folder]), OutputOptions(tmp_path / "out", write_overlay=False),
                            batch_size=batch_size, io_workers=workers)
    assert summary.processed == 40 and live[0] == 0
    # queued decodes + one batch + queued writes (see _segment_files_overlapped)
    assert peak[0] <= 2 * batch_size + 4 * workers + 1 < 40
