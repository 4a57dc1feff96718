"""`segcli serve` under bad uploads, a full queue, slow answers, the token, and concurrent requests (batching)."""

from __future__ import annotations

import io
import threading

import numpy as np
from PIL import Image

from mixed_classes import balanced_engine
from robustness_support import encoded, png_with_header_size, random_rgb
from serve_support import Gate, client, metric, png_bytes, post_image

IMAGE = png_bytes(random_rgb(40, 56, 1))


def assert_refused(answer, status: int, *words: str) -> None:
    assert answer.status_code == status, (answer.status_code, answer.text)
    document = answer.json()
    assert list(document) == ["error"] and "\n" not in document["error"]
    for word in words:
        assert word in document["error"], document["error"]


def test_bad_uploads_get_one_line_4xx_and_the_server_goes_on(tiny_engine, tmp_path):
    truncated = encoded(Image.fromarray(random_rgb(64, 64, 2)), "PNG")[:300]
    bomb = png_with_header_size(tmp_path / "bomb.png", 12000, 10000).read_bytes()
    with client(tiny_engine) as served:
        assert_refused(post_image(served, b"just some text"), 400, "not an image")
        assert_refused(post_image(served, truncated), 400, "truncated or corrupt")
        assert_refused(post_image(served, bomb), 400, "12000x10000", "above the", "--max-pixels")
        assert_refused(post_image(served, b""), 400, "empty")
        assert_refused(post_image(served, IMAGE, content_type="text/plain"), 415, "text/plain")
        assert_refused(post_image(served, IMAGE, "?outputs=label,overlay"), 400, "one kind")
        assert_refused(post_image(served, IMAGE, "?outputs=tiff"), 400, "unknown output")
        assert_refused(post_image(served, IMAGE, "?classes=disc"), 400, "classes= limits")
        assert_refused(post_image(served, IMAGE, "?outputs=cutout&classes=sky"), 400, "'sky'", "0 background")
        assert_refused(served.post("/v1/segment", files={"photo": ("a.png", IMAGE, "image/png")}), 400, "'image'")
        assert_refused(served.post("/v1/segment", content=b"--x\r\nnot multipart",
                                   headers={"content-type": "multipart/form-data; boundary=zz"}), 400)
        assert_refused(served.get("/v1/segment"), 405, "GET /v1/segment")
        assert_refused(served.get("/v2/segment"), 404, "/v2/segment")
        assert post_image(served, IMAGE).status_code == 200  # still serving
        text = served.get("/metrics").text
    assert metric(text, 'segcli_requests_total{route="/v1/segment",status="400"}') == 10
    assert metric(text, 'segcli_requests_total{route="/v1/segment",status="415"}') == 1
    assert metric(text, 'segcli_requests_total{route="/v1/segment",status="200"}') == 1
    assert metric(text, "segcli_request_duration_seconds_count") == 12


def test_a_body_above_the_limit_from_max_pixels_is_413(tiny_engine):
    from segcli.serve.uploads import body_limit

    limit = body_limit(64 * 64)
    with client(tiny_engine, max_pixels=64 * 64) as served:
        assert_refused(post_image(served, b"\x89PNG" + bytes(limit)), 413, f"{limit:,}")
        # without a Content-Length (chunked): refused while it is read
        chunks = iter([bytes(limit // 2), bytes(limit // 2), bytes(16)])
        assert_refused(served.post("/v1/segment", content=chunks, headers={"content-type": "image/png"}), 413)
        assert post_image(served, IMAGE).status_code == 200  # 56x40 = 2,240 pixels: below the limit
        assert_refused(post_image(served, png_bytes(random_rgb(80, 80))), 400, "6,400 pixels", "4,096 pixels")


def test_a_full_queue_answers_503_with_retry_after(tiny_engine):
    gate = Gate(tiny_engine)
    with client(tiny_engine, max_batch=1, max_pending=2, batch_wait_ms=0) as served:
        answers = []
        threads = [threading.Thread(target=lambda: answers.append(post_image(served, IMAGE))) for _ in range(2)]
        threads[0].start()
        assert gate.entered.wait(30)  # the first one holds the model; the second waits behind it
        threads[1].start()
        batcher = served.app.state.service.batcher
        for _ in range(600):
            if batcher.pending == 2:
                break
            threading.Event().wait(0.05)
        busy = post_image(served, IMAGE)
        gate.opened.set()
        for thread in threads:
            thread.join(60)
    assert_refused(busy, 503, "busy")
    assert busy.headers["retry-after"] == "1"
    assert [answer.status_code for answer in answers] == [200, 200]


def test_a_request_past_the_timeout_is_504_and_its_image_never_runs(tiny_engine):
    gate = Gate(tiny_engine)
    with client(tiny_engine, max_batch=1, timeout_s=0.5, batch_wait_ms=0) as served:
        holder = threading.Thread(target=lambda: post_image(served, IMAGE))  # 504 too: held past 0.5 s
        holder.start()
        assert gate.entered.wait(30)
        late = post_image(served, png_bytes(random_rgb(20, 30, 5)))  # waits behind the held batch, gives up
        gate.opened.set()
        holder.join(60)
    assert_refused(late, 504, "0.5 s", "--timeout")
    assert gate.sizes == [1]  # only the held image ran: the abandoned one was dropped from the queue


def test_the_token_guards_every_route_but_health_and_the_page(tiny_engine, monkeypatch):
    with client(tiny_engine, token="s3cret") as served:
        for method, path in (("get", "/v1/models"), ("get", "/metrics"), ("get", "/openapi.json"),
                             ("post", "/v1/segment")):
            answer = getattr(served, method)(path, headers={"authorization": "Bearer wrong"})
            assert_refused(answer, 401, "Bearer")
            assert answer.headers["www-authenticate"] == "Bearer"
            assert getattr(served, method)(path).status_code == 401
        assert served.get("/healthz").status_code == 200 and served.get("/").status_code == 200
        good = post_image(served, IMAGE, authorization="Bearer s3cret")
        assert good.status_code == 200 and good.content.startswith(b"\x89PNG")
        text = served.get("/metrics", headers={"authorization": "Bearer s3cret"}).text
    assert metric(text, 'segcli_requests_total{route="/v1/segment",status="401"}') == 2


def labels_of(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as label:
        return np.asarray(label)


def test_requests_that_arrive_together_run_as_one_batch():
    engine = balanced_engine()  # paints every class in patches: a swapped answer would show
    rgbs = [random_rgb(40, 56, seed) for seed in (11, 12)]
    expected = [engine.predict(rgb).labels for rgb in rgbs]  # one at a time, before any batching
    assert not np.array_equal(*expected)
    gate = Gate(engine)
    images = [png_bytes(rgb) for rgb in rgbs]
    with client(engine, max_batch=2, batch_wait_ms=5000) as served:
        answers = [None, None]

        def send(index):
            answers[index] = post_image(served, images[index])

        threads = [threading.Thread(target=send, args=(index,)) for index in range(2)]
        gate.opened.set()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        text = served.get("/metrics").text
    assert gate.sizes == [2]  # one forward pass, long before the 5 s wait ran out
    assert [answer.headers["x-segcli-batch-size"] for answer in answers] == ["2", "2"]
    assert metric(text, 'segcli_batch_size_bucket{le="1"}') == 0
    assert metric(text, "segcli_batch_size_count") == 1 and metric(text, "segcli_batch_size_sum") == 2
    for labels, answer in zip(expected, answers):  # each got its own image's labels, not its neighbour's
        np.testing.assert_array_equal(labels_of(answer.content), labels)



def test_a_failing_model_is_a_one_line_500_and_the_next_request_is_served(tiny_engine):
    real = tiny_engine.predict_batch
    calls = []

    def fails_once(images, **kwargs):
        calls.append(len(images))
        if len(calls) == 1:
            raise RuntimeError("simulated\nkernel failure")
        return real(images, **kwargs)

    tiny_engine.predict_batch = fails_once
    with client(tiny_engine, batch_wait_ms=0) as served:
        assert_refused(post_image(served, IMAGE), 500, "RuntimeError", "simulated\\nkernel failure")
        assert post_image(served, IMAGE).status_code == 200
        text = served.get("/metrics").text
    buckets = [float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("segcli_request_duration_seconds_bucket")]
    assert buckets == sorted(buckets) and buckets[-1] == metric(text, "segcli_request_duration_seconds_count") == 2


def test_rle_without_pycocotools_is_501(tiny_engine, monkeypatch):
    import segcli.serve.app as app_module
    from segcli.errors import MissingDependencyError

    def missing():
        raise MissingDependencyError("COCO RLE needs pycocotools: pip install 'segcli[coco]'")

    monkeypatch.setattr(app_module, "require_pycocotools", missing)
    with client(tiny_engine) as served:
        assert_refused(post_image(served, IMAGE, "?outputs=rle"), 501, "pycocotools")
        assert post_image(served, IMAGE, "?outputs=json").status_code == 200


def test_uploads_being_decoded_count_against_max_pending(tiny_engine, monkeypatch):
    """Memory stays bounded while images are still being read and decoded, not only once they are queued."""
    import segcli.serve.app as app_module

    decoding, release = threading.Event(), threading.Event()
    real = app_module.load_image_bytes

    def slow_decode(*args):
        decoding.set()
        assert release.wait(60)
        return real(*args)

    monkeypatch.setattr(app_module, "load_image_bytes", slow_decode)
    with client(tiny_engine, max_pending=1) as served:
        first = []
        thread = threading.Thread(target=lambda: first.append(post_image(served, IMAGE)))
        thread.start()
        assert decoding.wait(30)
        busy = post_image(served, IMAGE)
        release.set()
        thread.join(60)
    assert_refused(busy, 503, "busy")
    assert first[0].status_code == 200
