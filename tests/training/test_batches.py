"""Batch sources: on-device augmentation against PIL and the engine's preprocessing; the CPU loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from segcli.checkpoints.record import CAFFE_PREPROCESSING, IMAGENET_PREPROCESSING
from segcli.data.synth import SYNTH_CLASSES, write_synth_dataset
from segcli.data.voc import SegmentationDataset, read_split
from segcli.engine import preprocess
from segcli.training.batches import DeviceBatches, LoaderBatches
from segcli.training.schedule import batch_indices

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("batches")
    write_synth_dataset(root, 6, seed=11, size=(40, 48), val_fraction=0.0)
    return read_split(root, "train")


def whole_images(scenes, preprocessing=IMAGENET_PREPROCESSING, **kwargs) -> SegmentationDataset:
    return SegmentationDataset(scenes, len(SYNTH_CLASSES), preprocessing, preprocess, **kwargs)


@pytest.mark.parametrize("preprocessing", [IMAGENET_PREPROCESSING, CAFFE_PREPROCESSING])
def test_scale_one_without_crop_or_flip_is_the_engines_preprocessing(scenes, preprocessing):
    dataset = whole_images(scenes, preprocessing, scale_range=(1.0, 1.0), flip=False)
    source = DeviceBatches.from_dataset(dataset, batch_size=4, seed=3, device=CPU)
    images, masks = source.batch(0)
    chosen = [index for index, _ in batch_indices(len(dataset), 4, 3, 0)]
    expected = torch.cat([preprocess(dataset.images[i], preprocessing) for i in chosen])
    torch.testing.assert_close(images, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(masks, torch.stack([torch.from_numpy(np.array(dataset.masks[i])).long() for i in chosen]))


def test_upscaled_crops_match_pil_resize_then_crop_then_flip(scenes):
    dataset = whole_images(scenes, crop=(32, 40), scale_range=(1.3, 1.3))
    source = DeviceBatches.from_dataset(dataset, batch_size=4, seed=5, device=CPU)
    images, masks = source.batch(7)
    drawn = source._draw(7, 4)
    for slot, (index, _) in enumerate(batch_indices(len(dataset), 4, 5, 7)):
        size = (int(drawn["new_w"][slot]), int(drawn["new_h"][slot]))
        top, left = int(drawn["top"][slot]), int(drawn["left"][slot])
        mask = np.asarray(Image.fromarray(dataset.masks[index]).resize(size, Image.NEAREST))[top:top + 32, left:left + 40]
        image = np.asarray(Image.fromarray(dataset.images[index]).resize(size, Image.BILINEAR))[top:top + 32, left:left + 40]
        if drawn["flip"][slot]:
            mask, image = mask[:, ::-1], image[:, ::-1]
        # PIL breaks exact ties (a target centre on a source pixel edge) either way: compare elsewhere
        rows = np.arange(top, top + 32)
        columns = np.arange(left, left + 40)[::-1] if drawn["flip"][slot] else np.arange(left, left + 40)
        tie = (((2 * rows + 1) * 40) % (2 * size[1]) == 0)[:, None] | (((2 * columns + 1) * 48) % (2 * size[0]) == 0)
        np.testing.assert_array_equal(masks[slot].numpy()[~tie], mask[~tie])
        assert tie.mean() < 0.2
        # PIL resamples in fixed point: a level or two apart at most
        expected = preprocess(np.ascontiguousarray(image), IMAGENET_PREPROCESSING)[0]
        assert (images[slot] - expected).abs().max() < 3 / 255 / 0.224


def test_shrunk_scenes_are_padded_with_black_and_ignored_labels(scenes):
    dataset = whole_images(scenes, crop=(40, 48), scale_range=(0.5, 0.5), flip=False)
    source = DeviceBatches.from_dataset(dataset, batch_size=2, seed=1, device=CPU)
    images, masks = source.batch(0)
    black = preprocess(np.zeros((1, 1, 3), np.uint8), IMAGENET_PREPROCESSING)[0, :, 0, 0]
    assert (masks[:, 20:, :] == 255).all() and (masks[:, :, 24:] == 255).all()
    torch.testing.assert_close(images[:, :, 20:, :], black.view(1, 3, 1, 1).expand(2, 3, 20, 48), rtol=0, atol=1e-5)
    assert set(masks[:, :20, :24].unique().tolist()) <= set(range(len(SYNTH_CLASSES))) | {255}


def test_batches_depend_on_seed_and_iteration_only(scenes):
    dataset = whole_images(scenes, crop=(24, 24), scale_range=(0.75, 1.5))
    first = DeviceBatches.from_dataset(dataset, batch_size=3, seed=2, device=CPU)
    again = DeviceBatches.from_dataset(dataset, batch_size=3, seed=2, device=CPU)
    resumed = next(again.batches(5))
    for expected, got in zip(first.batch(5), resumed):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert not torch.equal(first.batch(5)[0], first.batch(6)[0])
    assert resumed[0].shape == (3, 3, 24, 24) and resumed[1].dtype == torch.int64


def test_images_of_several_sizes_stay_on_the_cpu_loader(scenes, tmp_path):
    other = tmp_path / "other"
    write_synth_dataset(other, 1, seed=12, size=(32, 32), val_fraction=0.0)
    dataset = whole_images(scenes + read_split(other, "train"), crop=(24, 24))
    assert DeviceBatches.from_dataset(dataset, batch_size=2, seed=0, device=CPU) is None


def test_loader_batches_are_the_datasets_items_in_plan_order(scenes):
    dataset = whole_images(scenes, crop=(24, 24))
    images, masks = next(LoaderBatches(dataset, batch_size=3, seed=4).batches(2))
    items = [dataset[item] for item in batch_indices(len(dataset), 3, 4, 2)]
    torch.testing.assert_close(images, torch.stack([image for image, _ in items]))
    torch.testing.assert_close(masks, torch.stack([mask for _, mask in items]))
