"""segcli.models.base on a two-layer model (quick): FCN's bilinear kernel against the FCN authors' own
`upsample_filt`, the final upsampling's align_corners, multi-scale max-fusion, and scales of a fixed network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from segcli.errors import SegcliError
from segcli.models.base import SegmentationModel, bilinear_kernel, set_input_scales, upsample_logits


def upsample_filt(size: int) -> np.ndarray:
    """From the FCN authors' surgery.py (https://github.com/shelhamer/fcn.berkeleyvision.org, surgery.py)."""
    factor = (size + 1) // 2
    if size % 2 == 1:
        center = factor - 1
    else:
        center = factor - 0.5
    og = np.ogrid[:size, :size]
    return (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)


@pytest.mark.parametrize("factor", [1, 2, 3, 4, 5, 8, 32])
def test_bilinear_kernel_is_fcns_upsample_filt(factor):
    size = 2 * factor - factor % 2  # FCN's kernel sizes: 4 for x2, 16 for x8, 64 for x32
    kernel = bilinear_kernel(3, factor)
    assert kernel.shape == (3, 1, size, size) and kernel.dtype == torch.float32 and kernel.is_contiguous()
    for channel in range(3):
        np.testing.assert_allclose(kernel[channel, 0].numpy(), upsample_filt(size), rtol=0, atol=1e-6)


@pytest.mark.parametrize("channels, factor", [(0, 2), (3, 0), (0, 0)])
def test_bilinear_kernel_refuses_nothing_to_make(channels, factor):
    with pytest.raises(ValueError) as raised:
        bilinear_kernel(channels, factor)
    assert str(raised.value) == f"factor and channels must be >= 1, got factor={factor}, channels={channels}"


class Tiny(SegmentationModel):
    """Two classes from a 1x1 convolution on a 4x average pool: cheap, and different at every scale."""

    def __init__(self, align_corners: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.score = nn.Conv2d(3, 2, 1)
        self.align_corners = align_corners

    def low_res_logits(self, x):
        return self.score(F.avg_pool2d(x, 4))


def test_the_final_upsampling_honours_align_corners():
    logits = torch.arange(12.0).view(1, 2, 2, 3)
    for corners in (False, True):
        expected = F.interpolate(logits, size=(5, 7), mode="bilinear", align_corners=corners)
        torch.testing.assert_close(upsample_logits(logits, (5, 7), corners), expected, rtol=0, atol=0)
        x = torch.rand(1, 3, 16, 24)
        with torch.no_grad():
            model = Tiny(corners)
            expected = F.interpolate(model.low_res_logits(x), size=(16, 24), mode="bilinear", align_corners=corners)
            torch.testing.assert_close(model(x), expected, rtol=0, atol=0)
    assert not torch.equal(upsample_logits(logits, (5, 7)), upsample_logits(logits, (5, 7), True))
    torch.testing.assert_close(upsample_logits(logits, (5, 7)),
                               F.interpolate(logits, size=(5, 7), mode="bilinear", align_corners=False))


def test_input_scales_max_fuse_each_scales_logits_as_deeplab_v2_msc():
    """kazuto1011/deeplab-pytorch MSC.eval(): inputs resized by each scale (bilinear, align_corners=False), their
    logits resized to the 1x logits' size, element-wise max."""
    x = torch.rand(1, 3, 32, 48)
    model = Tiny().eval()
    with torch.no_grad():
        single = model.low_res_logits(x)
        fused = single
        for scale in (0.5, 2.0):
            scaled = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
            fused = torch.maximum(fused, F.interpolate(model.low_res_logits(scaled), size=single.shape[-2:],
                                                       mode="bilinear", align_corners=False))
        set_input_scales(model, (0.5, 1.0, 2.0))
        assert model.input_scales == (0.5, 1.0, 2.0)
        torch.testing.assert_close(model.fused_low_res_logits(x), fused, rtol=0, atol=1e-6)
        set_input_scales(model, (0.5, 1.0))
        assert (fused > model.fused_low_res_logits(x) + 1e-4).any()  # scale 2 changes the result, as 0.5 does
        assert (model.fused_low_res_logits(x) > single + 1e-4).any()
        set_input_scales(model, (1.0,))
        torch.testing.assert_close(model.fused_low_res_logits(x), single, rtol=0, atol=0)


def test_a_fixed_network_keeps_the_scales_it_was_exported_with():
    plain = nn.Identity()
    set_input_scales(plain, (1.0,))  # what it does already
    with pytest.raises(SegcliError) as raised:
        set_input_scales(plain, (0.5, 1.0))
    assert str(raised.value) == ("this network runs at input scales [1.0] fixed inside it; export the checkpoint "
                                 "again with the scales you want")
    exported = nn.Identity()
    exported.input_scales = (0.5, 1.0)
    set_input_scales(exported, (0.5, 1.0))
    assert exported.input_scales == (0.5, 1.0)
    with pytest.raises(SegcliError, match=r"^this network runs at input scales \[0\.5, 1\.0\] fixed inside it"):
        set_input_scales(exported, (1.0,))
