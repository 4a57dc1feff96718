"""training/upsampling/readme_results.py: the README block is generated from the JSON, verdicts included."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from segcli.upsampling.intervals import MethodScores, summarize

SCRIPT = Path(__file__).resolve().parents[2] / "training" / "upsampling" / "readme_results.py"


def _load():
    spec = importlib.util.spec_from_file_location("readme_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _scores(error: float, boundary: float, rng) -> MethodScores:
    confusions = np.zeros((3, 20, 2, 2), dtype=np.int64)
    pixels = rng.integers(800, 1200, size=(3, 20, 2))
    wrong = rng.binomial(pixels, error)
    confusions[..., 0, 0], confusions[..., 0, 1] = pixels[..., 0] - wrong[..., 0], wrong[..., 0]
    confusions[..., 1, 1], confusions[..., 1, 0] = pixels[..., 1] - wrong[..., 1], wrong[..., 1]
    matched = rng.binomial(100, boundary, size=(3, 20))
    boundaries = np.stack([matched, np.full_like(matched, 100), matched, np.full_like(matched, 100)], -1)
    return MethodScores(confusions, boundaries)


def test_block_has_the_table_the_verdicts_and_the_paper_comparison(tmp_path):
    module = _load()
    rng = np.random.default_rng(0)
    result = summarize({"bilinear": _scores(0.1, 0.6, rng), "transposed-learned": _scores(0.1, 0.6, rng),
                        "unpool": _scores(0.1, 0.9, rng)}, draws=300)
    summary = {**result, "images": 20, "mode": "trained-decoders", "boundary_px": 2}
    for name, row in summary["methods"].items():
        row["upsample_params"] = 7 if name == "transposed-learned" else 0
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{module.BEGIN}\nold\n{module.END}\noutro\n")
    source = tmp_path / "run.json"
    source.write_text(__import__("json").dumps(summary))
    assert module.main([str(source), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "\nold\n" not in text
    row = summary["methods"]["unpool"]
    low, high = row["miou_ci95"]
    assert f"| unpool | 3 | {100 * row['miou']:.1f} [{100 * low:.1f}, {100 * high:.1f}] |" in text
    assert "unpool beats bilinear on boundary F" in text
    assert "no real mIoU difference" in text
    assert "found no significant accuracy difference" in text and "consistent with what the paper reports" in text
    module.main([str(source), "--readme", str(readme)])  # idempotent: one block, regenerated
    assert readme.read_text() == text


def test_the_upsampling_doc_block_is_what_the_recorded_json_gives(tmp_path):
    """docs/UPSAMPLING.md's figures come from the JSON it names: regenerating the block changes nothing."""
    root = SCRIPT.parents[2]
    results = root / "training" / "upsampling" / "results"
    page = tmp_path / "UPSAMPLING.md"
    page.write_text((root / "docs" / "UPSAMPLING.md").read_text())
    before = page.read_text()
    module = _load()
    import os

    cwd = os.getcwd()
    os.chdir(root)  # the block names its JSON by the path given, relative to the repository
    try:
        module.main([str(Path("training/upsampling/results/heldout-seed2024.json")), "--doc", str(page),
                     "--zoo", str(Path("training/upsampling/results/heldout-seed2024-zoo-deeplabv3p.json"))])
    finally:
        os.chdir(cwd)
    assert results.is_dir() and page.read_text() == before
