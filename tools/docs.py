#!/usr/bin/env python3
"""Build the manual (mkdocs, mkdocs-material, mkdocstrings) into site/, warnings as errors.

    python3 tools/docs.py            check the public docstrings, then mkdocs build --strict
    python3 tools/docs.py serve      the same site, served at http://127.0.0.1:8000 while you edit

The tools are installed once into .docsenv/ (a venv of this Python, ignored by git) from the
pinned docs/requirements.txt, and again only when that file changes. mkdocstrings reads the
package's source statically (griffe), so the site builds on Linux although copydata imports
only on Windows.

Before the build, every public function and method of the API reference must have a
numpy-style docstring whose Parameters section names each of its parameters, and a Returns
section when it returns something: mkdocs itself warns about a parameter documented that does
not exist, not about one left out.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".docsenv"
REQUIREMENTS = ROOT / "docs" / "requirements.txt"
STAMP = VENV / "requirements.sha256"

# What the API reference shows, and so what must be documented in full. The codecs' encode and
# decode are documented once, on the Codec protocol.
PUBLIC_FUNCTIONS = ["send", "asend", "request", "arequest", "broadcast", "find", "find_window", "subscribers",
                    "find_published", "publish_handle"]
PUBLIC_CLASSES = ["Receiver", "Sender", "MessageBatch", "HandlePublication", "Codec", "Utf16Codec", "NrbfCodec"]
# Made by copydata, never by hand: their constructors' parameters are not the user's.
MADE_BY_COPYDATA = ["MessageBatch", "HandlePublication"]
# Classes whose methods are documented elsewhere (the codecs' encode and decode, on Codec).
CONSTRUCTOR_ONLY = ["Utf16Codec", "NrbfCodec"]


def ensure_tools() -> Path:
    """The venv's python, with docs/requirements.txt installed as pinned."""
    python = VENV / "bin" / "python"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and STAMP.exists() and STAMP.read_text().strip() == wanted:
        return python
    if not python.exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "-r", str(REQUIREMENTS)], check=True)
    STAMP.write_text(wanted + "\n")
    return python


def check_docstrings() -> list[str]:
    """What is missing from the public docstrings (run in the venv, where griffe is)."""
    import griffe

    package = griffe.load("copydata", search_paths=[str(ROOT)], docstring_parser="numpy",
                          resolve_aliases=True)
    problems: list[str] = []

    def sections(obj: griffe.Object) -> dict[str, list]:
        if obj.docstring is None:
            return {}
        found: dict[str, list] = {}
        for section in obj.docstring.parse("numpy"):
            found.setdefault(section.kind.value, []).extend(
                section.value if isinstance(section.value, list) else [section.value])
        return found

    def check(obj: griffe.Object, where: str, parameters_of: griffe.Function | None) -> None:
        if obj.docstring is None:
            problems.append(f"{where}: no docstring")
            return
        found = sections(obj)
        function = parameters_of
        if function is None:
            return
        wanted = [p.name for p in function.parameters if p.name not in ("self", "cls")
                  and p.kind not in (griffe.ParameterKind.var_positional, griffe.ParameterKind.var_keyword)]
        documented = {item.name for item in found.get("parameters", [])}
        missing = [name for name in wanted if name not in documented]
        if missing:
            problems.append(f"{where}: Parameters section lacks {', '.join(missing)}")
        returns = function.returns
        if obj is function and returns is not None and str(returns) not in ("None",) \
                and "returns" not in found and "yields" not in found:
            problems.append(f"{where}: no Returns section (it returns {returns})")

    for name in PUBLIC_FUNCTIONS:
        function = package[name].final_target
        check(function, f"copydata.{name}", function)
    for name in PUBLIC_CLASSES:
        cls = package[name].final_target
        init = cls.members.get("__init__")
        # The constructor's parameters are documented on the class (merge_init_into_class).
        made_by_hand = isinstance(init, griffe.Function) and name not in MADE_BY_COPYDATA
        check(cls, f"copydata.{name}", init if made_by_hand else None)
        if name in CONSTRUCTOR_ONLY:
            continue
        for member in cls.members.values():
            if member.name.startswith("_") or not member.is_function or "property" in member.labels:
                continue
            check(member, f"copydata.{name}.{member.name}", member)
    return problems


def main(argv: list[str]) -> int:
    if argv[:1] == ["--check-docstrings"]:  # in the venv, started below
        problems = check_docstrings()
        for problem in problems:
            print(f"docstring: {problem}", file=sys.stderr)
        return 1 if problems else 0
    started = time.monotonic()
    python = ensure_tools()
    if subprocess.run([str(python), __file__, "--check-docstrings"], cwd=ROOT).returncode:
        print("tools/docs.py: public docstrings are incomplete (above)", file=sys.stderr)
        return 1
    command = ["serve"] if argv[:1] == ["serve"] else ["build", "--strict", "--clean"]
    # mkdocs-material 9.7+ prints a notice about its future at every build; it is news, not a warning.
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([str(VENV / "bin" / "mkdocs"), *command], cwd=ROOT, env=env).returncode
    if command[0] == "build":
        print(f"tools/docs.py: {'built' if result == 0 else 'FAILED'} in {time.monotonic() - started:.1f} s "
              f"({ROOT / 'site'})")
    return result


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
