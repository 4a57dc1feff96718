"""Input discovery: folders, globs and files; a bad entry fails alone; segcli's own outputs are never inputs."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segcli.errors import InputImageError
from segcli.inputs import IMAGE_EXTENSIONS, ImageSource, find_images, scan_inputs
from segcli.outputs.png import encode_png


def save(image: Image.Image, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def make_tree(root: Path) -> None:
    for relative in ["b.png", "a.JPG", "sub/c.webp", "sub/deeper/d.tif", "sub/.hidden.png", ".cache/e.png"]:
        save(Image.new("RGB", (2, 2)), root / relative)
    (root / "readme.txt").write_text("not an image")
    (root / "sub" / "data.csv").write_text("1,2")


TREE = [Path("a.JPG"), Path("b.png"), Path("sub/c.webp"), Path("sub/deeper/d.tif")]


def test_folder_is_recursive_sorted_and_filtered(tmp_path):
    make_tree(tmp_path / "in")
    sources = find_images([tmp_path / "in"])
    assert [s.relative for s in sources] == TREE
    assert all(s.path == tmp_path / "in" / s.relative for s in sources)
    assert ".tiff" in IMAGE_EXTENSIONS and ".pgm" in IMAGE_EXTENSIONS


def test_explicit_file_taken_whatever_its_extension(tmp_path):
    odd = save(Image.new("RGB", (2, 2)), tmp_path / "scan.dat", format="PNG")
    assert find_images([str(odd)]) == [ImageSource(odd, Path("scan.dat"))]


def test_symlink_loop_terminates_without_duplicates_and_is_named(tmp_path):
    root = tmp_path / "in"
    make_tree(root)
    os.symlink(root, root / "sub" / "loop")          # back up the tree
    os.symlink(root / "sub", root / "alias-of-sub")  # a second way into one folder
    scan = scan_inputs([root])
    real = [os.path.realpath(s.path) for s in scan.sources]
    assert len(real) == len(set(real)) == 4
    assert scan.skipped == [f"{root / 'sub' / 'loop'}: a link back to {os.path.realpath(root)} (a loop)"]
    assert scan.problems == []


def test_broken_links_and_link_loops_named_like_images_are_problems(tmp_path):
    root = tmp_path / "in"
    make_tree(root)
    os.symlink(root / "gone.jpg", root / "broken.jpg")
    os.symlink(root / "self.png", root / "self.png")
    os.symlink(root / "gone.txt", root / "notes.txt")  # not an image: named, but not a failure
    scan = scan_inputs([root])
    assert [s.relative for s in scan.sources] == TREE
    assert scan.problems == [
        (root / "broken.jpg", f"{root / 'broken.jpg'} is a broken symbolic link (to {root / 'gone.jpg'})"),
        (root / "self.png", f"{root / 'self.png'} is a symbolic link loop"),
    ]
    assert scan.skipped == [f"{root / 'notes.txt'}: a broken symbolic link (to {root / 'gone.txt'})"]
    with pytest.raises(InputImageError, match="broken symbolic link"):
        find_images([root])  # the strict form raises the first problem


def test_a_fifo_named_like_an_image_is_a_problem_not_a_hang(tmp_path):
    root = tmp_path / "in"
    make_tree(root)
    os.mkfifo(root / "pipe.png")
    scan = scan_inputs([root])
    assert scan.problems == [(root / "pipe.png", f"{root / 'pipe.png'} is not a regular file")]


def test_unreadable_folder_is_a_problem_and_the_rest_is_found(tmp_path, monkeypatch):
    root = tmp_path / "in"
    make_tree(root)
    real_scandir = os.scandir

    def refusing(path="."):
        if Path(path) == root / "sub":
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    scan = scan_inputs([root])
    assert [s.relative for s in scan.sources] == [Path("a.JPG"), Path("b.png")]
    assert scan.problems == [(root / "sub", f"cannot read folder {root / 'sub'}: Permission denied")]


def test_the_out_folder_and_segcli_pngs_are_not_inputs(tmp_path):
    root = tmp_path / "in"
    make_tree(root)
    earlier = root / "segcli-out"  # an earlier run's output folder inside the input folder
    (earlier / "b.png").parent.mkdir()
    (earlier / "b.png").write_bytes(encode_png(np.zeros((2, 2), np.uint8), palette=[0] * 768, provenance="label"))
    (earlier / "b_overlay.png").write_bytes(encode_png(np.zeros((2, 2, 3), np.uint8), provenance="overlay"))
    save(Image.new("RGB", (2, 2)), root / "current-out" / "y.png")
    scan = scan_inputs([root], exclude=[root / "current-out"])
    assert [s.relative for s in scan.sources] == TREE
    assert scan.skipped == [f"2 outputs of an earlier segcli run in {earlier}"]
    # a segcli PNG named explicitly is taken (the user asked for it)
    assert find_images([earlier / "b.png"]) == [ImageSource(earlier / "b.png", Path("b.png"))]
    with pytest.raises(InputImageError, match=r"no images in folder .*segcli-out .*; skipped 2 outputs of an earlier segcli run"):
        find_images([earlier])


def test_globs_expanded_by_python(tmp_path, monkeypatch):
    make_tree(tmp_path / "in")
    monkeypatch.chdir(tmp_path)
    assert [s.relative for s in find_images(["in/*.png"])] == [Path("b.png")]
    assert [s.relative for s in find_images(["in/**/*.*"])] == TREE
    with pytest.raises(InputImageError, match=r"no image matches in/\*\.bmp"):
        find_images(["in/*.bmp"])


def test_missing_empty_and_unusable_inputs(tmp_path):
    with pytest.raises(InputImageError, match="input not found: .*ghost.jpg"):
        find_images([tmp_path / "ghost.jpg"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputImageError, match="no images in folder"):
        find_images([tmp_path / "empty"])
    with pytest.raises(InputImageError, match="cannot read input .*: File name too long"):
        find_images([tmp_path / ("x" * 300 + ".jpg")])
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "dangling.jpg")
    with pytest.raises(InputImageError, match=r"input .*dangling\.jpg is a broken symbolic link \(to .*nowhere\.jpg\)"):
        find_images([tmp_path / "dangling.jpg"])


def test_same_file_or_folder_twice_is_found_once(tmp_path):
    path = save(Image.new("RGB", (2, 2)), tmp_path / "x.jpg")
    assert len(find_images([path, path, tmp_path])) == 1
    assert len(find_images([tmp_path, tmp_path])) == 1


def test_names_in_messages_are_escaped(tmp_path):
    with pytest.raises(InputImageError) as error:
        find_images([tmp_path / "bad\nname\x1b[31m.jpg"])
    assert "\n" not in str(error.value) and "\x1b" not in str(error.value)
    assert "bad\\nname\\x1b[31m.jpg" in str(error.value)


@pytest.fixture
def bind_mount():
    """`mount --bind SOURCE TARGET` for the test (root in a mount namespace that allows it), undone after."""
    import shutil
    import subprocess

    mounted: list[Path] = []
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("bind mounts need root and mount(8)")

    def bind(source: Path, target: Path) -> None:
        done = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"bind mounts are not allowed here: {done.stderr.strip()}")
        mounted.append(target)

    yield bind
    for target in reversed(mounted):
        subprocess.run(["umount", str(target)], check=True)


def test_a_bind_mounted_loop_is_walked_once_and_named(tmp_path, bind_mount):
    root = tmp_path / "in"
    make_tree(root)
    (root / "sub" / "mnt").mkdir()
    bind_mount(root, root / "sub" / "mnt")  # the tree inside itself: no symbolic link for realpath to see
    scan = scan_inputs([root])
    assert [s.relative for s in scan.sources] == TREE  # each image once, under its own place
    assert scan.skipped == [f"{root / 'sub' / 'mnt'}: the folder {root} again (a loop)"]
    assert scan.problems == []


def test_a_folder_bind_mounted_twice_is_walked_once(tmp_path, bind_mount):
    root = tmp_path / "in"
    make_tree(root)
    (root / "zz-copy").mkdir()
    bind_mount(root / "sub", root / "zz-copy")  # a second way into sub/, not a loop
    scan = scan_inputs([root])
    assert [s.relative for s in scan.sources] == TREE
