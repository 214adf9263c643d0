"""Builds copydata._core with cffi (MSVC on Windows); metadata lives in pyproject.toml.

The wheel is tagged abi3 for CPython 3.9 and later (cffi defines Py_LIMITED_API), except on a
free-threaded CPython, which has no limited API: there it is an ordinary cp3XXt wheel.

COPYDATA_PREBUILT_CORE=PATH puts an extension already compiled from the same cffi description
into the wheel instead of compiling one (tools/winenv.py cross-compiles it with mingw-w64 and
builds the wheel in Windows CPython under Wine, where no MSVC is).
"""

from __future__ import annotations

import os
import shutil
import sysconfig

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_ext import build_ext

# The oldest CPython the one abi3 build serves (pyproject.toml: requires-python).
LIMITED_API_TAG = "cp39"


def limited_api_tag(gil_disabled: object) -> str | bool:
    """bdist_wheel's py_limited_api: the abi3 tag, or False on a free-threaded build (where
    Py_LIMITED_API does not exist and setuptools refuses it)."""
    return False if gil_disabled else LIMITED_API_TAG


class LimitedApiWheel(bdist_wheel):
    """Tags the wheel abi3 where the limited API exists (as argon2-cffi-bindings does)."""

    def finalize_options(self) -> None:
        self.py_limited_api = limited_api_tag(sysconfig.get_config_var("Py_GIL_DISABLED"))
        super().finalize_options()


class BuildOrCopyExtension(build_ext):
    """Compiles the cffi module, or copies the one that COPYDATA_PREBUILT_CORE names."""

    def build_extension(self, ext) -> None:
        prebuilt = os.environ.get("COPYDATA_PREBUILT_CORE")
        if not prebuilt:
            super().build_extension(ext)
            return
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(prebuilt, target)


if __name__ == "__main__":
    setup(
        cffi_modules=["copydata/_ffi_build.py:ffibuilder"],
        cmdclass={"bdist_wheel": LimitedApiWheel, "build_ext": BuildOrCopyExtension},
        zip_safe=False,
    )
