"""Shared pieces of the end-to-end robustness tests: a tiny segcli checkpoint, odd images, CLI runs."""

from __future__ import annotations

import http.server
import os
import struct
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
from click.testing import CliRunner, Result
from PIL import Image

TINY_CATEGORIES = ("background", "disc", "square")
TINY_OPTIONS = (("width_mult", 0.25),)
CPU_FLAGS = ("--device", "cpu", "--precision", "fp32")


def tiny_record(name: str = "tiny-lraspp"):
    from segcli.checkpoints.record import CheckpointRecord

    return CheckpointRecord(name=name, model="lraspp", dataset="segcli-test", categories=TINY_CATEGORIES,
                            filename=f"{name}.safetensors", model_kwargs=TINY_OPTIONS)


def tiny_model(num_classes: int = len(TINY_CATEGORIES), seed: int = 0):
    """A random-weight LR-ASPP at a quarter width (fast on 2 CPU cores)."""
    import torch

    from segcli.models import build_model

    torch.manual_seed(seed)
    return build_model("lraspp", num_classes, **dict(TINY_OPTIONS)).eval()


def save_tiny_checkpoint(path: Path) -> Path:
    """The tiny model saved as a segcli safetensors checkpoint (its record in the metadata)."""
    from segcli.checkpoints.saving import save_segcli_checkpoint

    return save_segcli_checkpoint(path, tiny_model(), tiny_record(path.stem))


def random_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def save_image(image: Image.Image, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def png_with_header_size(path: Path, width: int, height: int) -> Path:
    """A small PNG whose IHDR claims width x height (CRC fixed): a decompression-bomb header."""
    data = bytearray(encoded(Image.new("L", (8, 8)), "PNG"))
    ihdr = 16  # signature (8), chunk length (4), chunk type (4)
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[12:ihdr + 13])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def encoded(image: Image.Image, image_format: str, **kwargs) -> bytes:
    stream = BytesIO()
    image.save(stream, format=image_format, **kwargs)
    return stream.getvalue()


WIDE_TERMINAL = {"COLUMNS": "1000"}  # rich wraps at 80 columns otherwise (see test_long_failure_line_is_not_wrapped)


def run_predict(inputs: list[Path | str], out_dir: Path, weights: Path | str, *extra: str,
                env: dict[str, str] | None = WIDE_TERMINAL) -> Result:
    """`segcli predict` in-process (CliRunner, stderr kept apart from stdout)."""
    from segcli.cli.main import cli

    args = ["predict", *map(str, inputs), "--model", "lraspp", "--weights", str(weights), "--out", str(out_dir),
            *CPU_FLAGS, *extra]
    return CliRunner().invoke(cli, args, catch_exceptions=True, env=env)


def files_under(folder: Path) -> set[str]:
    """Every file (hidden ones included) under `folder`, as POSIX paths relative to it."""
    if not folder.exists():
        return set()
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file() or path.is_symlink()}


def output_set(stem: str, overlay: bool = True) -> set[str]:
    return {f"{stem}.png", f"{stem}.json"} | ({f"{stem}_overlay.png"} if overlay else set())


def lines_naming(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if name in line]


def assert_no_traceback(result: Result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output and "Traceback" not in result.stderr


def segcli_subprocess(args: list[str], env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    """`python -m segcli ARGS` as a child process (for real signals and real concurrency)."""
    child_env = dict(os.environ, **(env or {}))
    child_env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.Popen([sys.executable, "-m", "segcli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env, **kwargs)


def run_in_terminal(args: list[str], columns: int = 80, env: dict[str, str] | None = None) -> str:
    """`python -m segcli ARGS` with stdout on a pseudo-terminal `columns` wide; the text it showed."""
    import fcntl
    import pty
    import re
    import termios

    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    child_env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    child_env.update(env or {}, TERM="xterm")
    child = subprocess.Popen([sys.executable, "-m", "segcli", *args], stdout=terminal, stderr=subprocess.PIPE,
                             env=child_env)
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    child.wait(timeout=120)
    os.close(controller)
    text = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)  # colours and cursor codes


# --- a local HTTP server for downloads --------------------------------------------------------

@dataclass
class ServedFile:
    payload: bytes
    cut_after: int | None = None   # send this many bytes, then close the connection
    chunk_delay_s: float = 0.0     # sleep between 64 KiB chunks (makes two downloads overlap)


class FileServer:
    """Serves `files[path]` on 127.0.0.1; `cut_after` makes a response drop mid-file."""

    def __init__(self) -> None:
        self.files: dict[str, ServedFile] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.requests.append(self.path)
                served = server.files.get(self.path)
                if served is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(served.payload)))
                self.end_headers()
                body = served.payload if served.cut_after is None else served.payload[:served.cut_after]
                for start in range(0, len(body), 1 << 16):
                    self.wfile.write(body[start:start + (1 << 16)])
                    if served.chunk_delay_s:
                        self.wfile.flush()
                        time.sleep(served.chunk_delay_s)
                self.wfile.flush()
                if served.cut_after is not None:
                    self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    def __enter__(self) -> "FileServer":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._http.shutdown()
        self._http.server_close()
