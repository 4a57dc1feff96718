"""The report page: a summary on top, then per image its overlay, classes with their shares, timings, failures.

One HTML file with its style inline and no script: images by relative links, nothing from the
network; every name from the disk is HTML-escaped (text and attributes) and URL-quoted (links).
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote

from segcli.atomic import atomic_write_bytes
from segcli.errors import OutputError
from segcli.outputs.images import percent_text
from segcli.report.entries import ReportEntry
from segcli.text import printable

REPORT_NAME = "index.html"
GENERATOR = '<meta name="generator" content="segcli report">'
EAGER_IMAGES = 60  # the first overlays load at once; later ones when scrolled to (big runs stay light)
_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.2em 0 .4em}
table{border-collapse:collapse}td,th{padding:2px 10px 2px 0;text-align:left;vertical-align:top}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:14px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px;overflow-wrap:anywhere;align-self:start}
.card img{width:100%;height:auto;display:block;margin-bottom:6px;background:#eee}
.failed{border-color:#c33;background:#fff4f4}.failed .status{color:#c33;font-weight:bold}
.bar{display:inline-block;height:.8em;background:#4a78c2;vertical-align:middle;margin-right:6px}
.muted{color:#777}.name{font-weight:600}
"""


def check_report_target(out_dir: Path) -> None:
    """OutputError when OUT/index.html exists and is not a report segcli wrote (it is never replaced)."""
    path = Path(out_dir) / REPORT_NAME
    if not os.path.lexists(path):
        return
    if path.is_symlink() or not path.is_file():
        raise OutputError(f"{printable(path)} exists and is not a regular file: not replaced",
                          hint="choose another --out")
    try:
        with open(path, "rb") as handle:
            head = handle.read(2048)
    except OSError as exc:
        raise OutputError(f"cannot use {printable(path)}: {exc.strerror or exc}") from None
    if GENERATOR.encode() not in head:
        raise OutputError(f"{printable(path)} exists and was not written by segcli: not replaced",
                          hint="move it or choose another --out")


def write_report(out_dir: Path, entries: list[ReportEntry], run: dict[str, Any]) -> Path:
    """Write OUT/index.html atomically (see `render_report`); its path."""
    check_report_target(out_dir)
    path = Path(out_dir) / REPORT_NAME
    atomic_write_bytes(path, render_report(entries, run, Path(out_dir)).encode("utf-8"))
    return path


def render_report(entries: list[ReportEntry], run: dict[str, Any], out_dir: Path) -> str:
    """The page at `out_dir`. `run`: seconds (wall time) and, optionally, interrupted."""
    documents = [entry.summary for entry in entries if entry.summary]
    first = documents[0] if documents else {}
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', GENERATOR,
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>segcli report: {_text(first.get('checkpoint', 'no image segmented'))}</title>",
             f"<style>{_STYLE}</style></head><body>", *_summary_section(entries, documents, run)]
    failures = [entry for entry in entries if entry.status == "failed"]
    if failures:
        parts.append(f"<h2>Failures ({len(failures)})</h2><ul>")
        parts += [f"<li><span class='name'>{_text(entry.name)}</span>: {_text(entry.message or '')}</li>"
                  for entry in failures]
        parts.append("</ul>")
    parts.append("<h2>Images</h2><div class='grid'>")
    images = 0
    shared = shared_notes(documents)
    for entry in entries:
        parts.append(_card(entry, images >= EAGER_IMAGES, out_dir, shared))
        images += "overlay" in entry.files
    parts.append("</div></body></html>")
    return "\n".join(parts) + "\n"


def shared_notes(documents: list[dict]) -> list[str]:
    """The note parts ("; "-separated) that every image's summary carries (said once, in the summary)."""
    parts = [_note_parts(document) for document in documents]
    if not parts:
        return []
    return [note for note in parts[0] if all(note in others for others in parts[1:])]


def _note_parts(document: dict) -> list[str]:
    return [part.strip() for part in str(document.get("note") or "").split("; ") if part.strip()]


def _summary_section(entries: list[ReportEntry], documents: list[dict], run: dict[str, Any]) -> list[str]:
    counts = {status: sum(entry.status == status for entry in entries)
              for status in ("segmented", "skipped", "failed", "not reached")}
    said = ", ".join(f"{count} {status}" for status, count in counts.items() if count) or "no input"
    first = documents[0] if documents else {}
    seconds = run.get("seconds", 0.0)
    rows = [("Images", f"{len(entries)}: {said}" + (" (run interrupted)" if run.get("interrupted") else "")),
            ("Run time", f"{seconds:.1f} s from start to end (images run side by side, overlapped: "
                         "less than the images' times added up)")]
    if first:
        rows += [("Model", f"{first.get('model')} ({first.get('checkpoint')})"),
                 ("Device", f"{first.get('device')}, {first.get('precision')}"
                            + (", dense CRF" if first.get("crf") else ""))]
        per_image = [sum(document.get("timings_ms", {}).values()) for document in documents]
        rows.append(("Mean time per image", f"{sum(per_image) / len(per_image):.1f} ms (its timed stages added up, "
                                            "while other images ran beside it)"))
    rows += [("Note", note) for note in shared_notes(documents)]
    out = ["<h1>segcli report</h1><table>"]
    out += [f"<tr><th>{_text(label)}</th><td>{_text(value)}</td></tr>" for label, value in rows]
    out.append("</table>")
    out += _class_table(documents)
    return out


def _class_table(documents: list[dict]) -> list[str]:
    """Per class: in how many images it appears, and its share of all their pixels."""
    images: dict[str, int] = {}
    pixels: dict[str, float] = {}
    total = 0
    for document in documents:
        width, height = document.get("size", (0, 0))
        total += width * height
        for entry in document.get("classes_present", []):
            images[entry["name"]] = images.get(entry["name"], 0) + 1
            pixels[entry["name"]] = pixels.get(entry["name"], 0.0) + entry["pixel_fraction"] * width * height
    if not images:
        return []
    out = ["<h2>Classes</h2><table><tr><th>class</th><th>images</th><th>share of all pixels</th></tr>"]
    order = {}  # most pixels first, ties by class index: the order of the overlays' legends
    for document in documents:
        for entry in document.get("classes_present", []):
            order.setdefault(entry["name"], int(entry.get("index", 0)))
    for name in sorted(images, key=lambda key: (-round(pixels[key], 9), order[key])):
        share = pixels[name] / total if total else 0.0
        out.append(f"<tr><td>{_text(name)}</td><td>{images[name]}</td><td>{_bar(share)}{_text(percent_text(share))}</td></tr>")
    out.append("</table>")
    return out


def _card(entry: ReportEntry, lazy: bool, out_dir: Path, shared: list[str]) -> str:
    out = [f"<div class='card{' failed' if entry.status == 'failed' else ''}'>"]
    if "overlay" in entry.files:
        href = _href(entry.files["overlay"])
        size = _png_size(out_dir / entry.files["overlay"])  # the page keeps its layout while images load
        dims = f" width='{size[0]}' height='{size[1]}'" if size else ""
        out.append(f"<a href='{href}'><img class='overlay' src='{href}' alt='overlay of {_text(entry.name)}'"
                   f"{dims}{' loading=lazy' if lazy else ''}></a>")
    out.append(f"<div class='name'>{_text(entry.name)}</div><div class='status'>{_text(entry.status)}</div>")
    if entry.message:
        out.append(f"<div>{_text(entry.message)}</div>")
    if entry.summary:
        out += _summary_lines(entry.summary, shared)
    links = [f"<a href='{_href(path)}'>{_text(kind)}</a>" for kind, path in entry.files.items() if kind != "overlay"]
    if links:
        out.append(f"<div class='muted'>files: {' · '.join(links)}</div>")
    out.append("</div>")
    return "".join(out)


def _summary_lines(document: dict[str, Any], shared: list[str]) -> Iterable[str]:
    width, height = document.get("size", ("?", "?"))
    yield f"<div class='muted'>{_text(f'{width} x {height}')}</div><table>"
    present = document.get("classes_present", [])
    for entry in sorted(present, key=lambda entry: (-float(entry["pixel_fraction"]), int(entry.get("index", 0)))):
        share = float(entry["pixel_fraction"])
        yield f"<tr><td>{_text(entry['name'])}</td><td>{_bar(share)}{_text(percent_text(share))}</td></tr>"
    yield "</table>"
    timings = document.get("timings_ms") or {}
    if timings:
        said = " · ".join(f"{stage} {milliseconds:.1f}" for stage, milliseconds in timings.items())
        yield f"<div class='muted'>ms: {_text(said)}</div>"
    own = [note for note in _note_parts(document) if note not in shared]  # the run's notes: once, on top
    if own:
        yield f"<div class='muted'>note: {_text('; '.join(own))}</div>"


def _png_size(path: Path) -> tuple[int, int] | None:
    """Width and height from a PNG's header; None when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(24)
    except OSError:
        return None
    if len(header) < 24 or not header.startswith(b"\x89PNG"):
        return None
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def _bar(share: float) -> str:
    return f"<span class='bar' style='width:{max(1.0, share * 120):.0f}px'></span>"


def _text(value: Any) -> str:
    return html.escape(printable(str(value)), quote=True)


def _href(relative: Path) -> str:
    """A relative link to a file under the output folder: URL-quoted, then escaped for the attribute."""
    return html.escape(quote(os.fsencode(Path(relative).as_posix()), safe="/"), quote=True)  # bytes: odd names too
