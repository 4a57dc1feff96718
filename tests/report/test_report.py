"""`segcli predict --report`: OUT/index.html, self-contained, names escaped, rendered by a real browser."""

from __future__ import annotations

import html.parser
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest
from PIL import Image

from mixed_classes import save_balanced_checkpoint
from robustness_support import random_rgb, run_predict, save_image

ODD_NAMES = ("beach day.jpg", "a <b> & 'c' \"d\" #1?.jpg", "été 100%.png")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return save_balanced_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-lraspp.safetensors")


@pytest.fixture(scope="module")
def report_run(tmp_path_factory, weights) -> Path:
    """A folder run with --report over odd names, a sub-folder and one broken image; its output folder."""
    root = tmp_path_factory.mktemp("run")
    folder = root / "photos"
    for seed, name in enumerate(ODD_NAMES):
        save_image(Image.fromarray(random_rgb(36 + 4 * seed, 48, seed)), folder / name)
    save_image(Image.fromarray(random_rgb(30, 30, 9)), folder / "trip" / "day 1.jpg")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    result = run_predict([folder], root / "out", weights, "--report")
    assert result.exit_code == 1, result.stderr  # the broken image failed, the others were written
    assert "report: " in result.stderr
    return root / "out"


class Page(html.parser.HTMLParser):
    """Every tag's attributes and the page's text, as a browser's parser sees them."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_the_page_names_every_image_escaped_with_its_overlay_classes_and_failure(report_run):
    text = (report_run / "index.html").read_text(encoding="utf-8")
    page = Page(text)
    words = " ".join(page.text)
    overlays = [attrs["src"] for tag, attrs in page.tags if tag == "img"]
    assert len(overlays) == 4
    for src in overlays:
        assert not src.startswith(("/", "http", "file:")) and (report_run / unquote(src)).is_file()
    for name in ODD_NAMES:
        assert name in words  # shown as it is, once the browser has unescaped it
    assert "<b>" not in text and "day 1.jpg" in words
    assert "broken.jpg is not an image segcli can read" in words and "trip/day 1.jpg" in words
    assert "Images 5: 4 segmented, 1 failed" in re.sub(r"\s+", " ", words)
    summary = json.loads((report_run / "trip" / "day 1.json").read_text())
    for entry in summary["classes_present"]:
        assert f"{entry['name']}" in words and f"{entry['pixel_fraction'] * 100:.1f}%" in words
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:)?//", text)  # nothing from the network


def test_a_resumed_run_reports_the_skipped_images_too(report_run, weights):
    inputs = report_run.parent / "photos"
    result = run_predict([inputs], report_run, weights, "--report", "--skip-existing")
    assert result.exit_code == 1, result.stderr
    words = " ".join(Page((report_run / "index.html").read_text(encoding="utf-8")).text)
    assert "4 skipped, 1 failed" in re.sub(r"\s+", " ", words)
    assert sum(1 for tag, _ in Page((report_run / "index.html").read_text()).tags if tag == "img") == 4


def test_a_users_index_html_is_never_replaced(tmp_path, weights):
    save_image(Image.fromarray(random_rgb(20, 20)), tmp_path / "in" / "x.jpg")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "index.html").write_text("<p>my site</p>")
    result = run_predict([tmp_path / "in"], tmp_path / "out", weights, "--report")
    assert result.exit_code == 1
    assert "index.html exists and was not written by segcli: not replaced" in result.stderr.splitlines()[-1]
    assert os.listdir(tmp_path / "out") == ["index.html"]
    assert (tmp_path / "out" / "index.html").read_text() == "<p>my site</p>"


# --- a real browser -------------------------------------------------------------------------------

PROBE = """<script>
window.addEventListener("load", () => {
  for (const image of document.images)
    image.setAttribute("data-probe", image.complete && image.naturalWidth > 0 ? image.naturalWidth + "x" +
                       image.naturalHeight : "broken");
  document.body.setAttribute("data-probed", "yes");
});
</script></body>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no Chromium: `make test` installs Debian's chromium package with apt-get, which failed here "
                "(not root, or no network); install it to run the browser test")


def headless(*args: str) -> subprocess.CompletedProcess:
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
               "--disable-background-networking", "--allow-file-access-from-files", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_every_overlay_loads_in_headless_chromium(report_run, tmp_path):
    page = (report_run / "index.html").read_text(encoding="utf-8")
    probe = report_run / ".probe.html"  # beside index.html, so its relative links resolve the same way
    probe.write_text(page.replace("</body>", PROBE, 1), encoding="utf-8")
    try:
        dom = headless("--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    finally:
        probe.unlink()
    assert 'data-probed="yes"' in dom.stdout, dom.stderr[-2000:]
    states = {unquote(attrs["src"]): attrs.get("data-probe")
              for tag, attrs in Page(dom.stdout).tags if tag == "img"}
    assert len(states) == 4
    for src, state in states.items():
        with Image.open(report_run / src) as overlay:
            assert state == f"{overlay.width}x{overlay.height}", (src, state)  # loaded, at the file's own size
    shot = tmp_path / "report.png"
    headless(f"--screenshot={shot}", "--window-size=1100,1400", (report_run / "index.html").as_uri())
    with Image.open(shot) as screenshot:
        colours = screenshot.convert("RGB").getcolors(maxcolors=1 << 20)
    assert screenshot.size == (1100, 1400) and len(colours) > 200  # photos drawn, not a blank page


def test_links_and_names_survive_undecodable_bytes_and_markup(tmp_path):
    from segcli.report.entries import ReportEntry
    from segcli.report.page import render_report

    odd = os.fsdecode(b"caf\xe9 <x>&'\".png")  # a Latin-1 byte that is not UTF-8
    entry = ReportEntry(odd, "segmented", files={"overlay": Path("sub") / odd})
    text = render_report([entry], {"seconds": 1.0}, tmp_path)
    [(tag, attrs)] = [(tag, attrs) for tag, attrs in Page(text).tags if tag == "img"]
    assert attrs["src"] == "sub/caf%E9%20%3Cx%3E%26%27%22.png"
    assert "caf\\xe9 <x>&'\".png" in " ".join(Page(text).text)
    text.encode("utf-8")  # no lone surrogate left in the page
