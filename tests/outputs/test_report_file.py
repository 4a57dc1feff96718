"""The guard for files a command's options name, as a library caller (segcli.training) meets it: the reason in
library terms, the option the caller named the file by only in the hint."""

from __future__ import annotations

import os

import pytest

from segcli.errors import OutputError, with_hint
from segcli.outputs.report_file import ReportFile, check_report_files


def _refusal(path, inputs=()) -> OutputError:
    with pytest.raises(OutputError) as caught:
        check_report_files([ReportFile("--out", path, lambda found: True)], inputs, overwrite=True)
    return caught.value


def test_each_refusal_names_the_option_only_in_its_hint(tmp_path):
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"weights")
    (tmp_path / "folder").mkdir()
    os.symlink(tmp_path / "folder", tmp_path / "link")
    (tmp_path / "blocker").write_text("a file")
    cases = {
        "input": (_refusal(checkpoint, [checkpoint]), f"{checkpoint} is an input of this run: not replaced",
                  "choose another --out"),
        "folder": (_refusal(tmp_path / "folder"), f"{tmp_path / 'folder'} is a folder, not a file",
                   "give --out a file name"),
        "link": (_refusal(tmp_path / "link"), f"{tmp_path / 'link'} exists and is not a regular file: not replaced",
                 "choose another --out"),
        "under a file": (_refusal(tmp_path / "blocker" / "m.pt"),
                         f"cannot write {tmp_path / 'blocker' / 'm.pt'}: {tmp_path / 'blocker'} is a file, not a folder",
                         "choose another --out"),
    }
    for case, (error, reason, hint) in cases.items():
        assert (str(error), error.hint) == (reason, hint), case
        assert with_hint(error) == f"{reason}; {hint}", case
