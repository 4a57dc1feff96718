"""The page at `/` in headless Chromium: it segments an image through the API and shows the overlay,
the classes with their shares and the timings; names from the server are text, never markup."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from contextlib import contextmanager
from html.parser import HTMLParser

import pytest

from mixed_classes import balanced_engine


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no Chromium: `make install-browser` installs Debian's chromium package (needs root and the "
                "network); install it to run the page's browser test")


@contextmanager
def serving(engine):
    """uvicorn on a free 127.0.0.1 port in a thread, around the app; stopped (drained) at the end."""
    import uvicorn

    from segcli.serve.app import build_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(build_app(engine), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(400):
        if server.started:
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


class Rows(HTMLParser):
    """The text of each table row, by table id; the overlay's src."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.table, self.src, self.state = None, None, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.state = attrs.get("data-state")
        if tag == "table":
            self.table = self.tables.setdefault(attrs.get("id"), [])
        if tag == "tr" and self.table is not None:
            self.table.append([])
        if tag == "img" and attrs.get("id") == "overlay":
            self.src = attrs.get("src")

    def handle_endtag(self, tag):
        if tag == "table":
            self.table = None

    def handle_data(self, data):
        if self.table is not None and self.table and data.strip():
            self.table[-1].append(data.strip())


@pytest.mark.slow  # Chromium starts, the page draws a sample and posts it twice
def test_the_page_segments_a_sample_and_shows_overlay_classes_and_timings():
    engine = balanced_engine()
    engine.record = type(engine.record).from_dict({**engine.record.to_dict(), "categories": [
        "background", "<b>disc</b>", "square & co"]})  # markup in names must show as text
    browser = chromium()
    with serving(engine) as base:
        dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                              "--disable-background-networking", "--virtual-time-budget=30000", "--dump-dom",
                              f"{base}/#sample"], capture_output=True, text=True, timeout=180)
        metrics = urllib.request.urlopen(base + "/metrics").read().decode()
    page = Rows(dom.stdout)
    assert page.state == "done", (dom.stdout[-3000:], dom.stderr[-2000:])
    assert page.src and page.src.startswith("blob:")
    classes = page.tables["classes"]
    assert classes and all(re.fullmatch(r"(\d+\.\d|<0\.1) %", row[-1]) for row in classes)
    names = {row[0] for row in classes}
    assert names <= {"background", "<b>disc</b>", "square & co"} and len(names) >= 2
    assert "<b>disc</b>" in names or "square & co" in names  # the names, as text
    shares = sum(float(row[-1].rstrip(" %").lstrip("<")) for row in classes)
    assert abs(shares - 100.0) < 0.2 * len(classes)
    timings = {row[0] for row in page.tables["timings"]}
    assert {"forward", "server model", "round trip"} <= timings
    assert 'segcli_requests_total{route="/v1/segment",status="200"} 2' in metrics  # overlay + summary
