"""`segcli.checkpoints.store`: pull, add and verify; every file segcli writes gets one mode.

The checkpoints package is three layers that do not import each other in a circle: files
(`loading`: read, detect, adapt, load, save), lookup (`resolve`), the store (`store`).
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch

import segcli.checkpoints
from robustness_support import FileServer, ServedFile, save_tiny_checkpoint, tiny_model, tiny_record

PACKAGE_DIR = Path(segcli.checkpoints.__file__).parent


def _imports_of(path: Path) -> set[str]:
    """The segcli.checkpoints modules a module imports (at top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found |= {name.split(".")[2] for name in names if name.startswith("segcli.checkpoints.")
                  and (PACKAGE_DIR / f"{name.split('.')[2]}.py").exists()}
    return found - {path.stem}


def test_no_two_checkpoint_modules_import_each_other():
    graph = {path.stem: _imports_of(path) for path in PACKAGE_DIR.glob("*.py") if path.stem != "__init__"}

    def reaches(start: str, target: str, seen: frozenset = frozenset()) -> bool:
        return any(step == target or (step not in seen and reaches(step, target, seen | {step}))
                   for step in graph.get(start, ()))

    cycles = sorted(module for module in graph if reaches(module, module))
    assert cycles == [], f"import cycles through {cycles}: {graph}"
    assert {"loading", "resolve", "store"} <= set(graph)
    assert "store" not in graph["resolve"] and "resolve" not in graph["loading"]


def _expected_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def test_downloads_saved_checkpoints_added_files_and_manifests_share_one_mode(tmp_path, monkeypatch):
    from segcli.checkpoints.download import download_file
    from segcli.checkpoints.saving import save_segcli_checkpoint, save_training_checkpoint
    from segcli.checkpoints.manifest import user_manifest_path
    from segcli.checkpoints.store import add_checkpoint_file
    from segcli.atomic import atomic_write_bytes

    monkeypatch.setenv("SEGCLI_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with FileServer() as server:
        server.files["/f.bin"] = ServedFile(b"payload" * 1000)
        downloaded = download_file(f"{server.url}/f.bin", tmp_path / "downloaded.bin", progress=False)
    saved = save_segcli_checkpoint(tmp_path / "saved.safetensors", tiny_model(), tiny_record("saved"))
    state = save_training_checkpoint(tmp_path / "state.pth", {"model_state": tiny_model().state_dict()})
    added = add_checkpoint_file(saved, "added", "lraspp").path
    output = tmp_path / "output.png"
    atomic_write_bytes(output, b"x")
    modes = {path.name: path.stat().st_mode & 0o777
             for path in (downloaded, saved, state, added, user_manifest_path(), output)}
    assert set(modes.values()) == {_expected_mode()}, modes
