"""scripts/install_data.sh: quiet when the files are there, the one command to run otherwise."""

import subprocess
from pathlib import Path

import pytest

from funcnn.data.fashion_mnist import FILE_NAMES

SCRIPT = Path(__file__).parents[2] / "scripts" / "install_data.sh"


def run(folder, env=None):
    return subprocess.run(
        ["bash", str(SCRIPT), str(folder)], capture_output=True, text=True, env=env, timeout=30
    )


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_nothing_to_do_when_the_files_are_there(tmp_path, suffix):
    for name in FILE_NAMES:
        (tmp_path / (name + suffix)).write_bytes(b"")
    result = run(tmp_path)
    assert result.returncode == 0 and result.stdout == result.stderr == ""


def test_non_root_gets_the_command_to_run(tmp_path):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "id").write_text("#!/bin/sh\necho 1000\n")
    (fake_bin / "id").chmod(0o755)
    result = run(tmp_path / "empty", env={"PATH": f"{fake_bin}:/usr/bin:/bin"})
    assert result.returncode == 1
    assert result.stderr.strip().endswith("install it with: sudo apt-get install -y dataset-fashion-mnist")
