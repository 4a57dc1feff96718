"""Start-up stays light: the CLI entry module must not import torch."""

from __future__ import annotations

import subprocess
import sys


def test_cli_entry_module_does_not_import_torch():
    code = "import sys, segcli.cli.main; print('torch' in sys.modules, 'torchvision' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_help_and_version_answer_without_torch():
    code = (
        "import sys\n"
        "from segcli.cli.main import main\n"
        "for argv in (['--help'], ['--version']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code == 0, exit.code\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip().splitlines()[-1] == "NO-TORCH"
    assert "predict" in result.stdout
