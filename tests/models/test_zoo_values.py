"""The zoo's values, not just its shapes: each family torchvision also has gives torchvision's logits.

Oracle: torchvision's own model (https://github.com/pytorch/vision, torchvision/models/segmentation/) with
the same state dict. Both models are built on the meta device (no initialisation cost) and take one
random state dict, drawn here at a scale that keeps activations finite through 50 layers (He-scaled
convolutions, BatchNorm statistics and affine terms away from the identity so that a mis-wired norm shows).
Quick (not marked slow): full-width networks, but a small, odd, non-square input. FCN-ResNet101 and
DeepLabV3-ResNet101 differ from the ResNet-50 ones only in block counts, checked by keys and shapes in
test_layouts_torchvision.py; DeepLabV3-ResNet101 runs here too, marked slow.
"""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.models.segmentation import (
    deeplabv3_mobilenet_v3_large,
    deeplabv3_resnet50,
    deeplabv3_resnet101,
    fcn_resnet50,
    lraspp_mobilenet_v3_large,
)

from segcli.models import build_model

CLASSES = 21
PAIRS = [  # segcli name, torchvision builder, with the aux head
    ("fcn-resnet50", fcn_resnet50, True),
    ("deeplabv3-resnet50", deeplabv3_resnet50, False),
    pytest.param("deeplabv3-resnet101", deeplabv3_resnet101, False, marks=pytest.mark.slow),
    ("deeplabv3-mobilenet", deeplabv3_mobilenet_v3_large, True),
    ("lraspp", lraspp_mobilenet_v3_large, False),
]


def random_state(shapes: dict[str, torch.Size], seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros(shape, dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(shape, generator=generator)
        elif key.endswith("running_mean") or (key.endswith("bias") and len(shape) == 1):
            state[key] = 0.1 * torch.randn(shape, generator=generator)
        elif len(shape) == 1:  # a norm's scale
            state[key] = 0.5 + 0.5 * torch.rand(shape, generator=generator)
        else:  # a convolution: He scale over its fan-in
            fan_in = math.prod(shape[1:])
            state[key] = torch.randn(shape, generator=generator) * math.sqrt(2.0 / fan_in)
    return state


@pytest.mark.parametrize(("name", "builder", "aux"), PAIRS)
def test_logits_equal_torchvisions_with_the_same_weights(name, builder, aux) -> None:
    with torch.device("meta"):
        reference = builder(weights=None, weights_backbone=None, num_classes=CLASSES,
                            **({"aux_loss": True} if aux else {}))
        model = build_model(name, CLASSES, **({"aux": True} if aux else {}))
    state = random_state({key: value.shape for key, value in reference.state_dict().items()})
    reference.load_state_dict(state, strict=True, assign=True)
    model.load_state_dict(state, strict=True, assign=True)
    reference.eval(), model.eval()
    # odd, non-square, and big enough that the dilated 3x3 taps (rates 12, 24, 36 at stride 8) reach inside the map
    image = torch.randn(1, 3, 113, 209, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(image)
        ours = model(image)
        assert torch.isfinite(expected["out"]).all() and expected["out"].std() > 1e-3  # a real test of the values
        torch.testing.assert_close(ours, expected["out"], rtol=1e-4, atol=1e-4)
        if aux:
            torch.testing.assert_close(model.logits_and_aux(image)[1], expected["aux"], rtol=1e-4, atol=1e-4)
