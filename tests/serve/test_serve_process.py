"""A real `segcli serve` process on a free 127.0.0.1 port: start, request, SIGTERM while a request is in
flight -> that request is answered, the process exits 0."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from PIL import Image

from mixed_classes import save_balanced_checkpoint
from robustness_support import CPU_FLAGS, random_rgb, run_predict, save_image, segcli_subprocess
from serve_support import metric


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def request(url: str, data: bytes | None = None, headers: dict | None = None, timeout: float = 60):
    """(status, body) of one HTTP request; an error status is an answer too."""
    call = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(call, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_until_up(base: str, child, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise AssertionError(f"segcli serve exited {child.returncode}: {child.stderr.read()}")
        try:
            if request(base + "/healthz", timeout=2)[0] == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("segcli serve did not answer /healthz in time")


@pytest.mark.slow  # python and torch start in a child process (~10-20 s on 2 shared cores)
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(tmp_path, stop):
    """SIGTERM (a service manager) or SIGINT (Ctrl-C): the same drain, exit 0."""
    weights = save_balanced_checkpoint(tmp_path / "tiny.safetensors")
    photo = save_image(Image.fromarray(random_rgb(40, 56, 3)), tmp_path / "photo.png")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # a lone image waits up to 4 s for a second one to share its batch: SIGTERM lands while it waits
    child = segcli_subprocess(["serve", "--model", "lraspp", "--weights", str(weights), *CPU_FLAGS, "--port", str(port),
                               "--max-batch", "2", "--batch-wait-ms", "4000", "--token", "t0ken"])
    try:
        wait_until_up(base, child)
        auth = {"Authorization": "Bearer t0ken"}
        assert request(base + "/v1/models")[0] == 401
        assert json.loads(request(base + "/v1/models", headers=auth)[1])["checkpoint"] == "tiny"
        answers = []
        sender = threading.Thread(target=lambda: answers.append(request(
            base + "/v1/segment?outputs=label", photo.read_bytes(), {"Content-Type": "image/png", **auth})))
        sender.start()
        for _ in range(300):  # until the image is in the server's queue
            if metric(request(base + "/metrics", headers=auth)[1].decode(), "segcli_pending_images") == 1:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the request never reached the queue")
        child.send_signal(stop)
        sender.join(60)
        stdout, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, stderr
    assert "stopped" in stderr and "Traceback" not in stderr
    assert answers and answers[0][0] == 200
    folder = run_predict([photo], tmp_path / "out", weights, "--outputs", "label")
    assert folder.exit_code == 0, folder.stderr
    assert answers[0][1] == (tmp_path / "out" / "photo.png").read_bytes()


def test_serve_refuses_bad_flags_before_loading_a_model(tmp_path):
    from click.testing import CliRunner

    from segcli.cli.main import cli

    missing = tmp_path / "nothing.safetensors"
    for args, words in ((["--port", "70000"], "70000"), (["--crf-iters", "3"], "need --crf"),
                        (["--max-batch", "0"], "--max-batch"), (["--token", " "], "empty")):
        result = CliRunner().invoke(cli, ["serve", "--weights", str(missing), *args])
        assert result.exit_code == 2, (args, result.output)
        assert words in result.output, result.output
    result = CliRunner().invoke(cli, ["serve", "--model", "lraspp", "--weights", str(missing), *CPU_FLAGS])
    assert result.exit_code == 1 and result.output.startswith("Error: ") and "Traceback" not in result.output


def test_the_token_may_come_from_the_environment(tmp_path, monkeypatch):
    """SEGCLI_SERVE_TOKEN reaches the app's settings (uvicorn itself is not started)."""
    import segcli.cli.serve as command
    from click.testing import CliRunner

    from segcli.cli.main import cli

    seen = {}
    monkeypatch.setattr(command, "_run", lambda app, *args: seen.update(settings=app.state.service.settings))
    weights = save_balanced_checkpoint(tmp_path / "tiny.safetensors")
    result = CliRunner().invoke(cli, ["serve", "--model", "lraspp", "--weights", str(weights), *CPU_FLAGS, "-q"],
                                env={"SEGCLI_SERVE_TOKEN": "from-env"})
    assert result.exit_code == 0, result.output
    assert seen["settings"].token == "from-env" and seen["settings"].max_batch == 4
    assert seen["settings"].body_limit == 4 * 100_000_000 + (1 << 20)
