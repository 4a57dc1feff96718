"""The output folder: made on first use, and only segcli's own stale temporaries removed from it."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from segcli.outputs.folder import OutputFolder


def test_the_folder_is_made_with_its_parents(tmp_path):
    with OutputFolder(tmp_path / "new" / "out") as folder:
        assert folder.path.is_dir() and not folder.shared
    assert list((tmp_path / "new" / "out").iterdir()) == []  # nothing but the outputs will be written there


def test_only_temporaries_of_planned_names_are_removed(tmp_path):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    stale = [out / ".a.png.0123abcd.tmp", out / ".a.json.ffffffff.tmp", out / "sub" / ".b_overlay.png.00000000.tmp"]
    kept = [out / ".c.png.0123abcd.tmp", out / ".a.png.0123abc.tmp", out / ".a.png.0123ABCD.tmp", out / "a.png.tmp",
            out / "sub" / ".a.png.0123abcd.tmp"]
    for path in stale + kept:
        path.write_bytes(b"")
    os.mkdir(out / ".a_overlay.png.12345678.tmp")  # a folder with a matching name is not a temporary file
    with OutputFolder(out) as folder:
        removed = folder.remove_stale_temporaries({out: {"a.png", "a.json", "a_overlay.png"},
                                                   out / "sub": {"b.png", "b_overlay.png"}})
    assert sorted(removed) == sorted(stale)
    assert all(path.exists() for path in kept) and not any(path.exists() for path in stale)


def test_nothing_is_removed_while_another_run_holds_the_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".a.png.0123abcd.tmp").write_bytes(b"another run is writing this")
    other = os.open(out, os.O_RDONLY)
    fcntl.flock(other, fcntl.LOCK_EX)
    try:
        with OutputFolder(out) as folder:
            assert folder.shared
            assert folder.remove_stale_temporaries({out: {"a.png"}}) == []
    finally:
        os.close(other)
    assert (out / ".a.png.0123abcd.tmp").exists()
    with OutputFolder(out) as folder:
        assert folder.remove_stale_temporaries({out: {"a.png"}}) == [Path(out / ".a.png.0123abcd.tmp")]
