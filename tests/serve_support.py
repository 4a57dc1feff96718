"""Shared pieces of the `segcli serve` tests: an engine over a checkpoint file, a client around the app."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from robustness_support import encoded


def load_engine(weights: Path):
    """The engine `segcli serve --weights FILE --device cpu --precision fp32` loads."""
    from segcli.engine import SegmentationEngine
    from segcli.inference_options import InferenceOptions

    return SegmentationEngine.load("lraspp", weights=str(weights), device="cpu",
                                   options=InferenceOptions(precision="fp32"))


@contextmanager
def client(engine, **settings) -> Iterator:
    """A TestClient over the app (its lifespan running: the batcher started, drained at the end)."""
    import warnings

    from segcli.serve.app import ServeSettings, build_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's notice about httpx versions, not segcli's concern
        from starlette.testclient import TestClient

    with TestClient(build_app(engine, ServeSettings(**settings))) as test_client:
        yield test_client


def post_image(test_client, data: bytes, query: str = "", content_type: str = "image/png", **kwargs):
    return test_client.post(f"/v1/segment{query}", content=data, headers={"content-type": content_type, **kwargs})


def png_bytes(rgb) -> bytes:
    from PIL import Image

    return encoded(Image.fromarray(rgb), "PNG")


class Gate:
    """Holds the engine's batches until opened (to fill the queue or run out the clock); counts batches."""

    def __init__(self, engine) -> None:
        self.opened, self.entered = threading.Event(), threading.Event()
        self.sizes: list[int] = []
        self._predict_batch = engine.predict_batch
        engine.predict_batch = self

    def __call__(self, images, **kwargs):
        self.sizes.append(len(images))
        self.entered.set()
        assert self.opened.wait(60), "the test never opened the gate"
        return self._predict_batch(images, **kwargs)


def metric(text: str, name: str) -> float:
    """One sample's value from Prometheus text (`name` with its labels, as written)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in\n{text}")
