"""`POST /v1/segment` answers the bytes `segcli predict` writes for the same file, kind by kind."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mixed_classes import save_balanced_checkpoint
from robustness_support import random_rgb, run_predict, save_image
from serve_support import client, load_engine, post_image


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return save_balanced_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-serve.safetensors")


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    return save_image(Image.fromarray(random_rgb(40, 56, 3)), tmp_path_factory.mktemp("in") / "a photo.jpg",
                      quality=95)


@pytest.fixture(scope="module")
def predicted(tmp_path_factory, photo, weights) -> Path:
    """`segcli predict` over the photo: every output kind, masks and cut-out for two classes."""
    out = tmp_path_factory.mktemp("predict")
    result = run_predict([photo], out / "all", weights, "--outputs", "label,overlay,json,probs")
    assert result.exit_code == 0, result.stderr
    result = run_predict([photo], out / "classes", weights, "--outputs", "masks,cutout,rle", "--classes", "disc,2")
    assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def served(weights):
    with client(load_engine(weights)) as test_client:
        yield test_client


@pytest.mark.parametrize("kind, file", [("label", "all/a photo.png"), ("overlay", "all/a photo_overlay.png"),
                                        ("cutout", "classes/a photo_cutout.png"), ("rle", "classes/a photo.rle.json")])
def test_each_kind_is_byte_identical_to_predicts_file(served, photo, predicted, kind, file):
    query = f"?outputs={kind}" + ("&classes=disc,2" if file.startswith("classes/") else "") + "&name=a%20photo.jpg"
    answer = post_image(served, photo.read_bytes(), query, content_type="image/jpeg")
    assert answer.status_code == 200, answer.text
    assert answer.content == (predicted / file).read_bytes()
    assert answer.headers["content-type"].startswith("application/json" if kind == "rle" else "image/png")


def test_a_multipart_upload_gives_the_same_label(served, photo, predicted):
    answer = served.post("/v1/segment", files={"image": ("a photo.jpg", photo.read_bytes(), "image/jpeg")})
    assert answer.status_code == 200, answer.text
    assert answer.content == (predicted / "all" / "a photo.png").read_bytes()


def test_masks_come_as_a_zip_of_predicts_mask_files(served, photo, predicted):
    answer = post_image(served, photo.read_bytes(), "?outputs=masks&classes=disc,square&name=a%20photo.jpg")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/zip"
    files = {path.name: path.read_bytes() for path in (predicted / "classes").glob("*_mask_*.png")}
    assert len(files) == 2  # the balanced model paints both classes on this photo
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        assert {name: archive.read(name) for name in archive.namelist()} == files


def test_json_summary_and_probabilities_agree_with_predict(served, photo, predicted):
    summary = post_image(served, photo.read_bytes(), "?outputs=json&name=a%20photo.jpg")
    probs = post_image(served, photo.read_bytes(), "?outputs=probs")
    assert summary.status_code == 200 and probs.status_code == 200
    ours, theirs = summary.json(), json.loads((predicted / "all" / "a photo.json").read_text())
    assert ours["image"] == "a photo.jpg"
    for key in ("size", "model", "checkpoint", "categories", "classes_present", "crf"):
        assert ours[key] == theirs[key], key
    with np.load(io.BytesIO(probs.content)) as served_probs, np.load(predicted / "all" / "a photo_probs.npz") as disk:
        np.testing.assert_array_equal(served_probs["probs"], disk["probs"])
        assert list(served_probs["categories"]) == list(disk["categories"])


def test_models_names_the_checkpoint_classes_and_the_label_pngs_palette(served, predicted):
    models = served.get("/v1/models").json()
    assert models["model"] == "lraspp" and models["checkpoint"] == "tiny-serve"
    assert [entry["name"] for entry in models["classes"]] == ["background", "disc", "square"]
    with Image.open(predicted / "all" / "a photo.png") as label:
        palette = label.getpalette()
    for entry in models["classes"]:
        assert entry["color"] == palette[3 * entry["index"]:3 * entry["index"] + 3]


def test_health_openapi_and_the_page(served):
    assert served.get("/healthz").json()["status"] == "ok"
    schema = served.get("/openapi.json").json()
    assert schema["openapi"].startswith("3.") and {"/v1/segment", "/v1/models", "/healthz", "/metrics"} <= set(
        schema["paths"])
    assert set(schema["paths"]["/v1/segment"]["post"]["parameters"][0]["schema"]["enum"]) >= {
        "label", "overlay", "json", "rle", "cutout", "masks"}
    page = served.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "innerHTML" not in page.text and "http://" not in page.text and "https://" not in page.text
    assert "<script src" not in page.text and "<link" not in page.text  # self-contained: nothing fetched


def test_label_matches_predict_for_an_image_of_another_size(served, tmp_path, weights):
    """Not one lucky size: a portrait PNG with an alpha channel too."""
    rgba = np.dstack([random_rgb(61, 33, 9), np.full((61, 33, 1), 200, np.uint8)])
    image = save_image(Image.fromarray(rgba, "RGBA"), tmp_path / "tall.png")
    result = run_predict([image], tmp_path / "out", weights, "--outputs", "label")
    assert result.exit_code == 0, result.stderr
    answer = post_image(served, image.read_bytes())
    assert answer.content == (tmp_path / "out" / "tall.png").read_bytes()


def test_curls_default_form_type_is_taken_as_the_raw_image(served, photo, predicted):
    """`curl --data-binary @img.jpg URL` sends application/x-www-form-urlencoded: the body is still the image."""
    answer = post_image(served, photo.read_bytes(), content_type="application/x-www-form-urlencoded")
    assert answer.status_code == 200, answer.text
    assert answer.content == (predicted / "all" / "a photo.png").read_bytes()
