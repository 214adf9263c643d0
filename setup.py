"""Builds copydata._core with cffi (MSVC on Windows); metadata lives in pyproject.toml."""

from setuptools import setup

try:
    from wheel.bdist_wheel import bdist_wheel
except ImportError:  # building without wheel: no abi3 tag to set
    cmdclass = {}
else:

    class LimitedApiWheel(bdist_wheel):
        """Tag the wheel abi3: the extension uses only the limited API (cffi sets Py_LIMITED_API)."""

        def finalize_options(self):
            self.py_limited_api = "cp39"
            super().finalize_options()

    cmdclass = {"bdist_wheel": LimitedApiWheel}

setup(
    cffi_modules=["copydata/_ffi_build.py:ffibuilder"],
    cmdclass=cmdclass,
    zip_safe=False,
)
