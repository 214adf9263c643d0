"""Every Python example of README.md and of the manual (docs/) runs, as it stands, so that none
can rot: each ```python block is written to a file and run in a fresh Python process, from a
folder of its own, against the installed copydata. A failing example fails its test, with the
file and line of its block in the test's id.

An example that needs a receiver in another process is preceded by a marker, on the last
non-blank line before its block:

    <!-- example: listener NAME [OPTIONS] -->   python -m copydata listen NAME OPTIONS runs first
                                                (until the example ends)
    <!-- example: not run: REASON -->           compiled only, and reported as skipped with REASON

Blocks of other languages (sh, bat, c, csharp, autohotkey, text) are not run. A Python block
written another way (py, pycon, python3, ...) and a marker that precedes no Python block fail
test_every_python_block_is_run_or_marked, so that nothing escapes silently.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import copydata

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")
MARKER = re.compile(r"^<!--\s*example:\s*(?P<what>.*?)\s*-->$")
# Info strings that mean Python but would not be run: refused rather than skipped.
OTHER_PYTHON = {"py", "py3", "python3", "pycon", "pyi", "ipython", "python-repl"}
EXAMPLE_TIMEOUT = 120
LISTENER_READY_TIMEOUT = 30


@dataclass
class Example:
    where: str     # the document, from the repository's root
    line: int      # of the opening fence, 1-based
    source: str
    marker: str | None

    @property
    def id(self) -> str:
        return f"{self.where}:{self.line}"


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def parse(text: str, where: str) -> tuple[list[Example], list[str]]:
    """The ```python blocks of a document, and what is wrong with its other blocks and markers."""
    examples: list[Example] = []
    problems: list[str] = []
    lines = text.splitlines()
    marker: tuple[int, str] | None = None
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        opening = FENCE.match(line)
        if opening is None:
            found = MARKER.match(line)
            if found:
                if marker is not None:
                    problems.append(f"{where}:{marker[0]}: a marker followed by another marker")
                marker = (index + 1, found.group("what"))
            elif line and marker is not None:
                problems.append(f"{where}:{marker[0]}: a marker not followed by a ```python block")
                marker = None
            index += 1
            continue
        fence, info = opening.group("fence"), opening.group("info").lower()
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines) and not (lines[index].strip().startswith(fence)
                                          and lines[index].strip().strip(fence[0]) == ""):
            body.append(lines[index])
            index += 1
        index += 1  # the closing fence
        if info == "python":
            examples.append(Example(where, start + 1, "\n".join(body) + "\n", marker and marker[1]))
        else:
            if info in OTHER_PYTHON:
                problems.append(f"{where}:{start + 1}: a ```{info} block: write ```python, so that it runs")
            if marker is not None:
                problems.append(f"{where}:{marker[0]}: a marker before a ```{info or '(plain)'} block")
        marker = None
    if marker is not None:
        problems.append(f"{where}:{marker[0]}: a marker at the end of the file")
    for example in examples:
        if example.marker is not None and not (example.marker.startswith("listener ")
                                               or example.marker.startswith("not run: ")):
            problems.append(f"{example.id}: unknown marker {example.marker!r}")
    return examples, problems


def collect() -> tuple[list[Example], list[str]]:
    examples: list[Example] = []
    problems: list[str] = []
    for path in documents():
        if path.exists():
            found, wrong = parse(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix())
            examples.extend(found)
            problems.extend(wrong)
        else:
            problems.append(f"{path} is missing")
    return examples, problems


EXAMPLES, PROBLEMS = collect()


def test_every_python_block_is_run_or_marked() -> None:
    assert not PROBLEMS, "\n".join(PROBLEMS)
    # The README's quick start and the guide are where the examples are: finding none (a parser
    # that went blind) must fail, not pass with nothing run.
    readme = [example for example in EXAMPLES if example.where == "README.md"]
    guide = [example for example in EXAMPLES if example.where.startswith("docs/guide/")]
    assert len(readme) >= 6 and len(guide) >= 20, (len(readme), len(guide))


def test_the_parser_sees_markers_and_refuses_what_would_escape() -> None:
    """The rules above, on a document made for them."""
    text = ("<!-- example: listener jobs --codec text -->\n```python\nprint(1)\n```\n\n"
            "```py\nprint(2)\n```\n\n<!-- example: listener lost -->\n\nText.\n\n"
            "````markdown\n```python\nnot run: inside another block\n```\n````\n")
    examples, problems = parse(text, "docs/_parser_check.md")
    assert [(example.line, example.source, example.marker) for example in examples] == \
        [(2, "print(1)\n", "listener jobs --codec text")]
    assert problems == ["docs/_parser_check.md:6: a ```py block: write ```python, so that it runs",
                        "docs/_parser_check.md:10: a marker not followed by a ```python block"]


def _start_listener(arguments: list[str], folder: Path) -> subprocess.Popen:
    """python -m copydata listen ARGS, once its name is found (the example sends to it)."""
    name = arguments[0]
    assert copydata.find(name) is None, f"a receiver named {name!r} is already running"
    listener = subprocess.Popen([sys.executable, "-m", "copydata", "listen", *arguments], cwd=folder,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    deadline = time.monotonic() + LISTENER_READY_TIMEOUT
    while copydata.find(name) is None:
        if listener.poll() is not None or time.monotonic() > deadline:
            listener.kill()
            output = listener.communicate(timeout=30)[0]
            pytest.fail(f"copydata listen {shlex.join(arguments)} did not start: {output}")
        time.sleep(0.1)
    return listener


@pytest.mark.parametrize("example", EXAMPLES, ids=[example.id for example in EXAMPLES])
def test_example(example: Example, tmp_path: Path) -> None:
    if example.marker is not None and example.marker.startswith("not run: "):
        compile(example.source, example.id, "exec")
        pytest.skip(example.marker)
    script = tmp_path / "example.py"
    script.write_text(example.source, encoding="utf-8")
    listener = None
    if example.marker is not None:
        listener = _start_listener(shlex.split(example.marker)[1:], tmp_path)
    try:
        # From a folder of its own: the example imports the installed copydata, not the checkout's.
        run = subprocess.run([sys.executable, script.name], cwd=tmp_path, stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=EXAMPLE_TIMEOUT)
    finally:
        if listener is not None:
            listener.kill()
            listener.communicate(timeout=30)
    assert run.returncode == 0, (f"the example at {example.id} failed (exit code {run.returncode}):\n"
                                 f"{run.stderr}\n{run.stdout}")
