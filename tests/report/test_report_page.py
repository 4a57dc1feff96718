"""The report page as a reader and a strict parser see it: valid HTML, failure cards their own height,
the run time explained beside the per-image time, a note common to all images said once, and the
classes in one order (most pixels first, as the overlay legends list them)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from segcli.outputs.overlay import legend_entries
from segcli.report.entries import ReportEntry
from segcli.report.page import render_report

html5lib = pytest.importorskip("html5lib")
NOTE = "checkpoint trained on synthetic scenes only"
CATEGORIES = ["background", "disc", "box", "triangle"]


def _labels(seed: int) -> np.ndarray:
    labels = np.zeros((40, 60), np.int64)
    labels[:30, :10] = 3  # triangle: more pixels than disc, a higher index
    labels[30:, :5] = 1
    labels[0, 59] = 2  # box: 1 pixel of 2400, under 0.1%
    return np.roll(labels, seed, axis=1)


def _summary(labels: np.ndarray, note: str | None) -> dict:
    fractions = np.bincount(labels.ravel(), minlength=len(CATEGORIES)) / labels.size
    return {"image": "x", "size": [labels.shape[1], labels.shape[0]], "model": "m", "checkpoint": "c",
            "device": "cpu", "precision": "fp32", "crf": None, "note": note,
            "timings_ms": {"forward": 300.0, "overlay": 97.6}, "categories": CATEGORIES,
            "classes_present": [{"index": i, "name": CATEGORIES[i], "pixel_fraction": float(fractions[i])}
                                for i in np.flatnonzero(fractions)]}


def _page(tmp_path: Path) -> tuple[str, list[np.ndarray]]:
    labels = [_labels(0), _labels(3)]
    entries = [ReportEntry("a.jpg", "segmented", summary=_summary(labels[0], NOTE)),
               ReportEntry("b.jpg", "segmented", summary=_summary(labels[1], f"animated GIF: first of 3 frames used; {NOTE}")),
               ReportEntry("broken.jpg", "failed", message="not an image")]
    return render_report(entries, {"seconds": 0.4}, tmp_path), labels


def test_a_strict_html_parser_accepts_the_page(tmp_path):
    text, _ = _page(tmp_path)
    assert "&lt;0.1%" in text
    html5lib.HTMLParser(strict=True).parse(text)


def test_failure_cards_are_not_stretched_to_the_row_height(tmp_path):
    text, _ = _page(tmp_path)
    style = re.search(r"<style>(.*?)</style>", text, re.S).group(1)
    card_rule = re.search(r"\.card\{([^}]*)\}", style).group(1)
    assert "align-self:start" in card_rule.replace(" ", "")


def test_run_time_and_per_image_time_are_explained(tmp_path):
    text, _ = _page(tmp_path)
    run_time = re.search(r"<th>Run time</th><td>([^<]*)</td>", text).group(1)
    assert "0.4 s" in run_time and "side by side" in run_time


def test_a_note_every_image_shares_is_said_once_in_the_summary(tmp_path):
    text, _ = _page(tmp_path)
    assert text.count(NOTE) == 1
    summary = text.split("<h2>Images</h2>")[0]
    assert NOTE in summary
    assert "animated GIF: first of 3 frames used" in text.split("<h2>Images</h2>")[1]  # per image: still said


def test_class_tables_list_classes_in_the_legend_order(tmp_path):
    text, labels = _page(tmp_path)
    legend = [name for _, name, _ in legend_entries(labels[0], CATEGORIES)]
    cards = text.split("<h2>Images</h2>")[1]
    first_card = cards.split("<div class='card")[1]
    assert re.findall(r"<tr><td>([a-z]+)</td>", first_card) == legend
    summary = text.split("<h2>Classes</h2>")[1].split("</table>")[0]
    assert re.findall(r"<tr><td>([a-z]+)</td>", summary) == legend  # the two images share the same shares
