"""Download a checkpoint: stream to a temporary file, check its SHA-256, rename it into place.

The file is written with `segcli.atomic.atomic_write` (a unique temporary name in the destination
folder, the same mode as every file segcli writes); only a complete, verified file is renamed to
the destination. Two processes pulling the same file at once therefore each write their own
temporary file; whichever renames last wins, and a reader never sees a partial file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import urllib.error
import urllib.request
from contextlib import nullcontext
from pathlib import Path
from typing import BinaryIO

from segcli.atomic import atomic_write, claimed_folder, terminate_as_interrupt
from segcli.errors import CheckpointError, ChecksumMismatchError, DownloadError, OutputError

CHUNK_BYTES = 1 << 20
MIN_HASH_PREFIX = 8
USER_AGENT = "segcli (+https://pypi.org/project/segcli)"


def sha256_of(path: str | os.PathLike[str]) -> str:
    """The full hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def digest_matches(actual: str, expected: str) -> bool:
    """True when `expected` (a full digest or a >= 8-hex-digit prefix, as torch.hub uses) fits `actual`."""
    expected = expected.lower()
    if len(expected) < MIN_HASH_PREFIX or any(c not in "0123456789abcdef" for c in expected):
        raise CheckpointError(f"recorded sha256 {expected!r} is not a hex digest of at least {MIN_HASH_PREFIX} digits")
    return actual.lower().startswith(expected)


def _progress_bar(total: int | None, label: str):
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TimeRemainingColumn(), console=Console(stderr=True), transient=False,
    )
    task = progress.add_task(label, total=total)
    return progress, task


def _copy_stream(response: BinaryIO, sink: BinaryIO, expected_bytes: int | None, url: str,
                 progress: bool, label: str) -> tuple[int, str]:
    """Copy the response body into `sink`, hashing as it goes; returns (bytes, sha256)."""
    digest = hashlib.sha256()
    received = 0
    bar, task = _progress_bar(expected_bytes, label) if progress else (None, None)
    with bar if bar is not None else nullcontext():
        while True:
            try:
                block = response.read(CHUNK_BYTES)
            except (http.client.IncompleteRead, ConnectionError, socket.timeout, OSError) as exc:
                raise DownloadError(f"download of {url} was interrupted after {received} bytes "
                                    f"({type(exc).__name__}); run the command again") from None
            if not block:
                break
            sink.write(block)
            digest.update(block)
            received += len(block)
            if bar is not None:
                bar.update(task, advance=len(block))
    return received, digest.hexdigest()


def _open(url: str, destination: Path, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot reach {url}: {reason}; check the network or put the file "
                            f"at {destination} yourself") from None


def download_file(url: str, destination: str | os.PathLike[str], sha256: str | None = None,
                  progress: bool = True, timeout: float = 60.0) -> Path:
    """Download `url` to `destination`, checking `sha256` (full or >= 8-digit prefix) when given.

    On any failure (also Ctrl-C and SIGTERM) the temporary file is removed and a DownloadError / ChecksumMismatchError
    says what happened; `destination` is only ever replaced by a complete, verified file.
    """
    destination = Path(destination)
    if sha256 is not None:
        digest_matches("0" * 64, sha256)  # validates the recorded digest before any traffic
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create folder {destination.parent}: {exc.strerror or exc}") from None

    def fetch_and_check(sink: BinaryIO) -> None:
        # raising here makes atomic_write discard the temporary file: only a verified file is renamed
        with _open(url, destination, timeout) as response:
            length_header = response.headers.get("Content-Length")
            expected_bytes = int(length_header) if length_header and length_header.isdigit() else None
            received, actual = _copy_stream(response, sink, expected_bytes, url, progress, destination.name)
        if expected_bytes is not None and received != expected_bytes:
            raise DownloadError(f"download of {url} was cut short: got {received} of {expected_bytes} bytes; "
                                f"run the command again")
        if sha256 is not None and not digest_matches(actual, sha256):
            shown = sha256 if len(sha256) == 64 else f"{sha256}..."
            raise ChecksumMismatchError(f"{url} has SHA-256 {actual}, expected {shown}; the file was "
                                        f"discarded (a corrupted transfer or a changed file on the server)")

    # SIGTERM removes the temporary as Ctrl-C does; one a killed download left beside the file goes first
    with terminate_as_interrupt(), claimed_folder(destination):
        atomic_write(destination, fetch_and_check)
    return destination
