"""Downloads against a local HTTP server on 127.0.0.1: checksum, interruptions, HTTP errors, races."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import threading

import pytest

from segcli.checkpoints.download import digest_matches, download_file, sha256_of
from segcli.errors import CheckpointError, ChecksumMismatchError, DownloadError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, several read chunks' worth of distinct bytes
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/good.bin":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        elif self.path == "/cut.bin":
            # promise the whole file, send a third of it, then close the connection
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 3])
            self.wfile.flush()
            self.close_connection = True
        else:
            self.send_error(404, "Not Found")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server_url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _leftovers(folder):
    return sorted(path.name for path in folder.iterdir())


def test_good_download_is_verified_and_leaves_no_temporary_file(server_url, tmp_path):
    destination = tmp_path / "sub" / "model.pth"
    result = download_file(f"{server_url}/good.bin", destination, sha256=PAYLOAD_SHA256, progress=False)
    assert result == destination
    assert destination.read_bytes() == PAYLOAD
    assert _leftovers(destination.parent) == ["model.pth"]


def test_hash_prefix_as_in_torch_hub_file_names(server_url, tmp_path):
    destination = tmp_path / "model.pth"
    download_file(f"{server_url}/good.bin", destination, sha256=PAYLOAD_SHA256[:8], progress=True)
    assert sha256_of(destination) == PAYLOAD_SHA256


def test_wrong_checksum_raises_and_leaves_nothing(server_url, tmp_path):
    wrong = ("0" if PAYLOAD_SHA256[0] != "0" else "1") + PAYLOAD_SHA256[1:]
    with pytest.raises(ChecksumMismatchError, match=PAYLOAD_SHA256):
        download_file(f"{server_url}/good.bin", tmp_path / "model.pth", sha256=wrong, progress=False)
    assert _leftovers(tmp_path) == []


def test_connection_closed_mid_file_raises_and_leaves_no_partial_file(server_url, tmp_path):
    with pytest.raises(DownloadError, match=r"cut short|interrupted"):
        download_file(f"{server_url}/cut.bin", tmp_path / "model.pth", progress=False)
    assert _leftovers(tmp_path) == []


def test_http_404_raises_download_error(server_url, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(f"{server_url}/missing.bin", tmp_path / "model.pth", progress=False)
    assert _leftovers(tmp_path) == []


def test_existing_file_survives_a_failed_download(server_url, tmp_path):
    destination = tmp_path / "model.pth"
    destination.write_bytes(b"previous good copy")
    with pytest.raises(DownloadError):
        download_file(f"{server_url}/cut.bin", destination, progress=False)
    assert destination.read_bytes() == b"previous good copy"


def test_two_simultaneous_downloads_of_one_file_do_not_corrupt_it(server_url, tmp_path):
    destination = tmp_path / "model.pth"
    errors: list[BaseException] = []

    def pull() -> None:
        try:
            download_file(f"{server_url}/good.bin", destination, sha256=PAYLOAD_SHA256, progress=False)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=pull) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sha256_of(destination) == PAYLOAD_SHA256
    assert _leftovers(tmp_path) == ["model.pth"]


def test_digest_prefix_rules():
    assert digest_matches(PAYLOAD_SHA256, PAYLOAD_SHA256)
    assert digest_matches(PAYLOAD_SHA256, PAYLOAD_SHA256[:8].upper())
    assert not digest_matches(PAYLOAD_SHA256, "deadbeef" if not PAYLOAD_SHA256.startswith("deadbeef") else "feedface")
    with pytest.raises(CheckpointError, match="at least 8"):
        digest_matches(PAYLOAD_SHA256, PAYLOAD_SHA256[:7])


def test_resolve_downloads_a_missing_record_only_when_allowed(server_url, tmp_path, monkeypatch):
    from segcli.checkpoints.record import SOURCE_DOWNLOAD, SOURCE_SEGCLI_CACHE
    from segcli.checkpoints.resolve import resolve_checkpoint

    monkeypatch.setenv("SEGCLI_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    record = {
        "name": "local-lraspp", "model": "lraspp", "dataset": "test", "categories": ["a", "b"],
        "filename": "local-lraspp.pth", "layout": "segcli", "url": f"{server_url}/good.bin",
        "sha256": PAYLOAD_SHA256,
    }
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "manifest.json").write_text(
        json.dumps({"format": "segcli-manifest", "version": 1, "checkpoints": [record]}))
    with pytest.raises(CheckpointError, match="segcli weights pull local-lraspp"):
        resolve_checkpoint("lraspp", "local-lraspp")
    resolved = resolve_checkpoint("lraspp", "local-lraspp", allow_download=True, progress=False)
    assert resolved.source == SOURCE_DOWNLOAD
    assert resolved.path == tmp_path / "home" / "checkpoints" / "local-lraspp.pth"
    assert sha256_of(resolved.path) == PAYLOAD_SHA256
    assert resolve_checkpoint("lraspp", "local-lraspp").source == SOURCE_SEGCLI_CACHE


KILLED_PULL = """
import io, os, signal, sys, time
import segcli.checkpoints.download as download

class Response(io.BytesIO):
    headers = {}

def killed(response, sink, expected_bytes, url, progress, label):
    sink.write(b"half a checkpoint" * 1000)
    sink.flush()
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)

download._open = lambda url, destination, timeout: Response(b"")
download._copy_stream = killed
from segcli.cli.main import main
main(["weights", "pull", "lraspp-coco"])
"""


def test_sigterm_during_weights_pull_removes_the_partial_download(tmp_path):
    import signal
    import subprocess
    import sys

    env = dict(os.environ, SEGCLI_HOME=str(tmp_path / "segcli"), TORCH_HOME=str(tmp_path / "torch"))
    done = subprocess.run([sys.executable, "-c", KILLED_PULL], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert "Terminated: lraspp-coco was not saved" in done.stderr and "Traceback" not in done.stderr
    assert [path.name for path in tmp_path.rglob("*") if path.is_file()] == []


def test_a_download_removes_the_temporaries_a_killed_one_left(server_url, tmp_path):
    stale = tmp_path / ".model.pth.0123abcd.tmp"
    stale.write_bytes(b"half of an earlier download")
    other = tmp_path / ".other.pth.0123abcd.tmp"
    other.write_bytes(b"not this file's")
    download_file(f"{server_url}/good.bin", tmp_path / "model.pth", sha256=PAYLOAD_SHA256, progress=False)
    assert not stale.exists() and other.exists()
    assert (tmp_path / "model.pth").read_bytes() == PAYLOAD
