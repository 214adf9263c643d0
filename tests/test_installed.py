"""The package under test is the one pip installed from the wheel, console script included.

tools/winenv.py test (and build.bat) install the wheel and set COPYDATA_EXPECT_INSTALLED=1;
run from the source tree (tools/winenv.py python -m pytest) these tests have nothing to check.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

import copydata
from conftest import imported_from_source_tree

pytestmark = [
    pytest.mark.smoke,
    pytest.mark.skipif(os.environ.get("COPYDATA_EXPECT_INSTALLED") != "1",
                       reason="copydata is not installed from the wheel here (COPYDATA_EXPECT_INSTALLED is not 1)"),
]


def test_copydata_is_the_installed_distribution_with_its_extension():
    distribution = metadata.distribution("copydata-ipc")
    assert distribution.version == copydata.__version__
    files = {str(path).replace("\\", "/") for path in distribution.files or []}
    assert {"copydata/__init__.py", "copydata/_core.pyd"} <= files
    installed = Path(str(distribution.locate_file("copydata/__init__.py"))).resolve()
    assert Path(copydata.__file__).resolve() == installed
    assert Path(copydata._core.__file__).resolve().parent == installed.parent
    assert not imported_from_source_tree(copydata.__file__)


def test_processes_the_tests_start_import_the_installed_copydata():
    # Started as the tests start their peers: this interpreter, the current folder inherited.
    result = subprocess.run([sys.executable, "-c", "import copydata; print(copydata.__file__)"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).resolve() == Path(copydata.__file__).resolve()


def test_the_console_script_finds_and_sends(unique_name):
    script = Path(sysconfig.get_path("scripts")) / "copydata.exe"
    assert script.is_file(), f"pip installed no console script at {script}"
    with copydata.Receiver(unique_name) as receiver:
        found = subprocess.run([str(script), "find", unique_name], capture_output=True, text=True, timeout=60)
        assert (found.returncode, found.stdout.strip()) == (0, hex(receiver.hwnd)), found.stderr
        sent = subprocess.run([str(script), "send", unique_name, "from the script", "--tag", "9"],
                              capture_output=True, text=True, timeout=60)
        assert (sent.returncode, sent.stdout.strip()) == (0, "1"), sent.stderr
        message = receiver.recv(timeout=30)
    assert (message.tag, message.data) == (9, b"from the script")
