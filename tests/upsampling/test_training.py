"""Decoder training on cached features: aligned crops, segcli.training.fit, curves, checkpoint round trip."""

from __future__ import annotations

import pytest
import torch

from segcli.checkpoints.record import IMAGENET_PREPROCESSING
from segcli.data.synth import SYNTH_CLASSES, write_synth_dataset
from segcli.data.voc import read_split
from segcli.models import build_model
from segcli.upsampling.decoders import find_decoders, load_decoder
from segcli.upsampling.encoder import SharedEncoder
from segcli.upsampling.features import FeatureBatches, FeatureCache, cache_features, score_cached
from segcli.upsampling.network import DEFAULT_WIDTHS
from segcli.upsampling.training import DecoderTraining, finish, prepare, train_decoder


def _coded_cache(images: int = 3, cells: int = 4) -> FeatureCache:
    """Each tensor holds the coordinates of its own context cell, so crops can be checked for alignment."""
    rows = torch.arange(cells).view(-1, 1).expand(cells, cells)
    columns = torch.arange(cells).view(1, -1).expand(cells, cells)
    context = torch.zeros(images, 256, cells, cells, dtype=torch.float16)
    context[:, 0], context[:, 1] = rows, columns
    context[:, 2] = torch.arange(images).view(-1, 1, 1)
    low_level = torch.zeros(images, 48, 4 * cells, 4 * cells, dtype=torch.float16)
    low_level[:, 0] = rows.repeat_interleave(4, 0).repeat_interleave(4, 1)
    positions = tuple((rows * cells + columns).repeat_interleave(2 ** k, 0).repeat_interleave(2 ** k, 1)
                      .to(torch.uint8).expand(images, width, -1, -1).clone() for k, width in enumerate(DEFAULT_WIDTHS))
    masks = (rows * cells + columns).repeat_interleave(16, 0).repeat_interleave(16, 1).to(torch.uint8)
    return FeatureCache(context, low_level, positions, masks.expand(images, -1, -1).clone(), ("a", "b", "c")[:images])


def test_feature_batches_crop_every_tensor_at_the_same_place():
    cache = _coded_cache()
    source = FeatureBatches(cache, batch_size=2, seed=5, crop=32)
    inputs, masks = source.batch(7)
    assert inputs["context"].shape == (2, 256, 2, 2) and masks.shape == (2, 32, 32) and masks.dtype == torch.int64
    cell = inputs["context"][:, 0] * 4 + inputs["context"][:, 1]          # [2, 2, 2] context cell ids
    torch.testing.assert_close(masks[:, ::16, ::16], cell.long())
    torch.testing.assert_close(inputs["low_level"][:, 0, ::4, ::4], inputs["context"][:, 0])
    for k, stage in enumerate(inputs["positions"]):
        torch.testing.assert_close(stage[:, 0, ::2 ** k, ::2 ** k].long(), cell.long())
    again, _ = source.batch(7)
    assert torch.equal(again["context"], inputs["context"])  # a pure function of (seed, iteration)
    with pytest.raises(ValueError, match="multiple of the encoder stride"):
        FeatureBatches(cache, 2, 0, crop=40)


def test_prepare_fit_finish_records_curves_and_writes_a_loadable_decoder(tmp_path):
    data = tmp_path / "synth"
    write_synth_dataset(data, n=4, seed=3, size=(32, 32), val_fraction=0.5)
    torch.manual_seed(0)
    encoder = SharedEncoder(build_model("deeplabv3p-mobilenet", len(SYNTH_CLASSES)).eval(), DEFAULT_WIDTHS)
    train = cache_features(encoder, read_split(data, "train"), len(SYNTH_CLASSES), IMAGENET_PREPROCESSING)
    val = cache_features(encoder, read_split(data, "val"), len(SYNTH_CLASSES), IMAGENET_PREPROCESSING)
    train.save(tmp_path / "train.pt")
    assert torch.equal(FeatureCache.load(tmp_path / "train.pt").positions[3], train.positions[3])
    settings = DecoderTraining(iterations=4, batch_size=2, crop=16, eval_every=2, log_every=2)
    run = prepare("unpool", 1, train, len(SYNTH_CLASSES), settings)
    lines: list[str] = []
    outcome = train_decoder(run, val, len(SYNTH_CLASSES), log=lines.append)
    assert outcome.iteration == 4 and len(outcome.losses) == 4
    assert run.curve["iteration"] == [2, 4] and run.curve["val_iteration"] == [2, 4] and len(lines) == 2
    path = finish(run, outcome, tmp_path / "out", SYNTH_CLASSES)
    assert find_decoders(tmp_path / "out", ("unpool",)) == {"unpool": [path]}
    loaded, record = load_decoder(path)
    assert record.kwargs["seed"] == 1 and dict(record.metrics)["val_miou"] == run.curve["val_miou"][-1]
    assert score_cached(loaded, val, len(SYNTH_CLASSES))["miou"] == pytest.approx(
        score_cached(run.decoder, val, len(SYNTH_CLASSES))["miou"], abs=0.05)  # fp16 weights
