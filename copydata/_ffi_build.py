"""The cffi description of copydata._core: used by setup.py and by tools/winenv.py.

    python copydata/_ffi_build.py --emit-c OUT.c   writes the module's C source only
"""

import sys
import sysconfig
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
# setup.py passes paths relative to the project; the cross build runs from anywhere.
SOURCES = [f"csrc/{path.name}" for path in sorted(CSRC.glob("*.c"))]

ffibuilder = FFI()
ffibuilder.set_source(
    "copydata._core",
    '#include "copydata.h"',
    sources=SOURCES,
    include_dirs=["csrc"],
    libraries=["user32", "kernel32", "advapi32", "bcrypt"],
    # One build serves every CPython from 3.9 on; free-threaded builds have no limited API.
    py_limited_api=not sysconfig.get_config_var("Py_GIL_DISABLED"),
)

# The cdef is copydata.h as cffi sees it, in a file of its own (as argon2-cffi-bindings and
# pyzmq keep theirs): it declares no values, so every number comes from the header.
ffibuilder.cdef((CSRC / "copydata.cdef").read_text(encoding="utf-8"))

if __name__ == "__main__":
    if sys.argv[1:2] == ["--emit-c"] and len(sys.argv) == 3:
        ffibuilder.emit_c_code(sys.argv[2])
    else:
        sys.exit(__doc__)
