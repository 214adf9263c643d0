"""setup.py's wheel tags: abi3 for CPython 3.9 on, none on a free-threaded build.

No free-threaded interpreter is needed: sysconfig's Py_GIL_DISABLED is what setup.py and
setuptools both read, so the test sets it.
"""

from __future__ import annotations

import importlib.util
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_setup_py() -> ModuleType:
    """setup.py as a module (under another name than __main__, so setup() does not run)."""
    pytest.importorskip("setuptools.command.bdist_wheel", reason="setuptools>=70.1 is a test requirement")
    spec = importlib.util.spec_from_file_location("copydata_setup", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def finalized_wheel_command(monkeypatch: pytest.MonkeyPatch, gil_disabled: int | None):
    """setup.py's bdist_wheel, finalized as if Py_GIL_DISABLED were gil_disabled."""
    from setuptools import Distribution, Extension

    real_get_config_var = sysconfig.get_config_var

    def get_config_var(name: str):
        return gil_disabled if name == "Py_GIL_DISABLED" else real_get_config_var(name)

    monkeypatch.setattr(sysconfig, "get_config_var", get_config_var)
    setup_py = load_setup_py()
    distribution = Distribution({"name": "copydata-ipc", "version": "0",
                                 "ext_modules": [Extension("copydata._core", ["csrc/send.c"])]})
    command = setup_py.LimitedApiWheel(distribution)
    command.ensure_finalized()
    return command


@pytest.mark.parametrize("gil_disabled", [None, 0])
def test_the_wheel_is_abi3_from_cpython_39_on(monkeypatch, gil_disabled):
    command = finalized_wheel_command(monkeypatch, gil_disabled)
    assert command.py_limited_api == "cp39"
    implementation, abi, platform = command.get_tag()
    assert (implementation, abi) == ("cp39", "abi3")
    assert platform == sysconfig.get_platform().replace("-", "_").replace(".", "_")


def test_a_free_threaded_build_asks_for_no_abi3_tag(monkeypatch):
    # With py_limited_api = "cp39" here, setuptools raises ("Py_LIMITED_API is currently
    # incompatible with Py_GIL_DISABLED"): the wheel could not be built at all.
    command = finalized_wheel_command(monkeypatch, 1)
    assert command.py_limited_api is False
    implementation, abi, _ = command.get_tag()
    assert implementation == f"cp{sys.version_info[0]}{sys.version_info[1]}"
    assert abi != "abi3"


def test_limited_api_tag():
    setup_py = load_setup_py()
    assert [setup_py.limited_api_tag(value) for value in (None, 0, 1)] == ["cp39", "cp39", False]
