"""The shipped decoders (weights/upsampling/): 3 seeds per method, and each method >= 0.5 mIoU held out."""

from __future__ import annotations

import pytest
from PIL import Image

from segcli.data.synth import encode_mask_png, make_scene
from segcli.upsampling.decoders import find_decoders, load_decoder, shipped_decoders_dir
from segcli.upsampling.methods import METHOD_NAMES


def test_every_method_ships_three_seeds_with_their_training_record():
    found = find_decoders(shipped_decoders_dir(), METHOD_NAMES)
    total = 0
    for method, paths in found.items():
        assert len(paths) >= 3, method
        for path in paths:
            _, record = load_decoder(path)
            assert record.kwargs["method"] == method
            total += path.stat().st_size
    assert total < 5_000_000  # fp16


@pytest.mark.slow
def test_each_method_scores_at_least_half_miou_on_held_out_scenes(tmp_path):
    from segcli.cli.compare_upsampling import _decoder_runner
    from segcli.upsampling.compare import compare_upsampling
    from segcli.upsampling.samples import find_samples

    (tmp_path / "masks").mkdir()
    for index in range(12):  # seed 2024: used in no training
        scene = make_scene(2024, index, (128, 128))
        Image.fromarray(scene.image).save(tmp_path / f"scene{index}.png")
        (tmp_path / "masks" / f"scene{index}.png").write_bytes(encode_mask_png(scene.mask))
    summary = compare_upsampling(_decoder_runner(None, "cpu", METHOD_NAMES), find_samples(tmp_path), draws=200)
    for method, row in summary["methods"].items():
        assert row["seeds"] >= 3 and row["miou"] >= 0.5, (method, row["miou"])
