"""The tiny test model (tests/conftest.py's, seed 0) with its class biases evened out, so that on noise
images it predicts all three classes in patches (the plain one predicts one class everywhere, which
cannot show that a per-class output keeps each class apart)."""

from __future__ import annotations

from pathlib import Path

from robustness_support import random_rgb, tiny_model, tiny_record


def balanced_tiny_model():
    import torch

    from segcli.engine import preprocess

    model = tiny_model()
    images = [random_rgb(48, 64, seed) for seed in range(3)]
    with torch.no_grad():
        logits = torch.cat([model(preprocess(image, tiny_record().preprocessing)) for image in images])
        model.classifier.high_classifier.bias -= logits.mean(dim=(0, 2, 3))
    return model


def balanced_engine():
    from engine_support import engine_of

    return engine_of(balanced_tiny_model(), tiny_record())


def save_balanced_checkpoint(path: Path) -> Path:
    from segcli.checkpoints.saving import save_segcli_checkpoint

    return save_segcli_checkpoint(path, balanced_tiny_model(), tiny_record(path.stem))
