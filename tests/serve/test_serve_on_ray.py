"""`segcli serve --engine ray --replicas 2` as a real process on a local Ray instance (2 CPUs: one per replica),
started once for the module: the same API and bytes as the local server through Ray Serve's proxy, both
replicas answering, and SIGTERM with requests in flight (answered, then exit 0). The last test stops it."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time

import pytest
from PIL import Image

from robustness_support import CPU_FLAGS, random_rgb, run_predict, save_image, save_tiny_checkpoint, segcli_subprocess
from serve_support import client, load_engine, metric

pytest.importorskip("ray.serve", reason="segcli serve --engine ray needs ray[serve] (segcli[ray])")

pytestmark = pytest.mark.slow  # Ray, its Serve controller and proxy, two replicas importing torch: ~30-60 s
TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BATCH_WAIT_MS = 10_000  # a lone image waits this long for company: in flight long enough to be seen on a busy machine


class Server:
    def __init__(self, child, base: str, weights, folder) -> None:
        self.child, self.base, self.weights, self.folder = child, base, weights, folder

    def get(self, path: str, headers: dict | None = None):
        return request(self.base + path, headers=headers)

    def segment(self, data: bytes, outputs: str = "label", answers: list | None = None):
        answer = request_with_headers(self.base + f"/v1/segment?outputs={outputs}", data,
                                      {"Content-Type": "image/png", **AUTH})
        if answers is not None:
            answers.append(answer)
        return answer


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def request(url: str, headers: dict | None = None, timeout: float = 120):
    """(status, body) of one GET; an error status is an answer too."""
    return request_with_headers(url, headers=headers, timeout=timeout)[::2]


def request_with_headers(url: str, data: bytes | None = None, headers: dict | None = None, timeout: float = 120):
    """(status, headers, body) of one request."""
    import urllib.error
    import urllib.request

    call = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(call, timeout=timeout) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def wait_until_serving(base: str, child, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise AssertionError(f"segcli serve --engine ray exited {child.returncode}: {child.stderr.read()}")
        try:
            if request(base + "/healthz", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError("segcli serve --engine ray did not answer /healthz in time")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ray-serve")
    weights = save_tiny_checkpoint(folder / "tiny.safetensors")
    port = free_port()
    child = segcli_subprocess(["serve", "--engine", "ray", "--replicas", "2", "--model", "lraspp", "--weights",
                               str(weights), *CPU_FLAGS, "--port", str(port), "--token", TOKEN, "--max-batch", "4",
                               "--batch-wait-ms", str(BATCH_WAIT_MS)], cwd=folder, start_new_session=True)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", child)
        yield Server(child, f"http://127.0.0.1:{port}", weights, folder)
    finally:
        if child.poll() is None:  # the last test did not stop it: SIGKILL to its group takes Ray's processes too
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()


def test_health_models_and_the_token_as_the_local_server_answers(server):
    status, body = server.get("/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok", "model": "lraspp", "checkpoint": "tiny"}
    status, _, page = request_with_headers(server.base + "/")
    assert status == 200 and b"<html" in page.lower()
    status, body = server.get("/nowhere", headers=AUTH)
    assert status == 404 and json.loads(body) == {"error": "Not Found: GET /nowhere"}
    status, body = server.get("/v1/models")
    assert status == 401 and "Authorization: Bearer" in json.loads(body)["error"]
    assert server.get("/v1/models", headers={"Authorization": "Bearer wrong"})[0] == 401
    status, body = server.get("/v1/models", headers=AUTH)
    assert status == 200
    with client(load_engine(server.weights), token=TOKEN, max_batch=4) as local:
        assert json.loads(body) == local.get("/v1/models", headers=AUTH).json()


def test_a_label_png_through_ray_serve_is_the_bytes_predict_writes(server, tmp_path):
    photo = save_image(Image.fromarray(random_rgb(40, 56, 3)), tmp_path / "photo.png")
    status, headers, label = server.segment(photo.read_bytes())
    assert status == 200 and headers["content-type"] == "image/png", label[:200]
    status, _, overlay = server.segment(photo.read_bytes(), "overlay")
    assert status == 200
    folder = run_predict([photo], tmp_path / "out", server.weights, "--outputs", "label,overlay")
    assert folder.exit_code == 0, folder.stderr
    assert label == (tmp_path / "out" / "photo.png").read_bytes()
    assert overlay == (tmp_path / "out" / "photo_overlay.png").read_bytes()


def test_both_replicas_answer_each_with_its_own_counters(server):
    seen = {}
    for _ in range(60):  # Ray Serve's router spreads requests over the replicas at random
        status, headers, body = request_with_headers(server.base + "/metrics", headers=AUTH)
        assert status == 200
        replica = headers["x-segcli-replica"]
        seen[replica] = body.decode()
        if len(seen) == 2:
            break
    assert len(seen) == 2, f"one replica answered every request: {sorted(seen)}"
    for replica, text in seen.items():  # /metrics is the answering replica's own
        assert metric(text, f'segcli_replica{{replica="{replica}"}}') == 1


def test_sigterm_answers_the_requests_in_flight_then_exits_0(server, tmp_path):
    """Two images wait in the replicas' batchers (BATCH_WAIT_MS for company) when SIGTERM arrives, 3 s after they
    were sent and still unanswered: both are answered with predict's bytes, Serve and Ray shut down, exit 0.
    (Polling /metrics for the pending gauge instead proved unreliable: on a busy machine the polls read 0.)"""
    photos = [save_image(Image.fromarray(random_rgb(40, 56, seed)), tmp_path / f"photo{seed}.png") for seed in (5, 6)]
    answers: list = []
    senders = [threading.Thread(target=server.segment, args=(photo.read_bytes(), "label", answers))
               for photo in photos]
    for sender in senders:
        sender.start()
    time.sleep(3)  # routed to the replicas long before, where a lone image waits BATCH_WAIT_MS for company
    assert answers == [], "an image was answered before SIGTERM: nothing was in flight"
    server.child.send_signal(signal.SIGTERM)
    for sender in senders:
        sender.join(120)
    stdout, stderr = server.child.communicate(timeout=180)
    assert server.child.returncode == 0, stderr
    assert "stopped" in stderr and "Traceback" not in stderr
    assert stdout == ""  # nothing of Ray's on the command's output (a shutdown race once printed a raylet line)
    assert sorted(answer[0] for answer in answers) == [200, 200]
    folder = run_predict(photos, tmp_path / "out", server.weights, "--outputs", "label")
    assert folder.exit_code == 0, folder.stderr
    expected = sorted((tmp_path / "out" / f"{photo.stem}.png").read_bytes() for photo in photos)
    assert sorted(answer[2] for answer in answers) == expected
    assert request_with_port_closed(server.base)


def request_with_port_closed(base: str) -> bool:
    """Nothing answers on the port any more (Serve's proxy went with Ray)."""
    try:
        request(base + "/healthz", timeout=2)
    except OSError:
        return True
    return False
