#!/usr/bin/env python3
"""Model-check copydata's shared-memory handshakes with spin (model/README.md).

    python3 tools/modelcheck.py                  every property, exhaustively
    python3 tools/modelcheck.py --broken         ... then each guard removed, which must fail
    python3 tools/modelcheck.py --defects        ... then the code's own steps where the model
                                                 differs (model/README.md), which must fail
    python3 tools/modelcheck.py --frames 5       a larger bound (default 4; see --memory)

Installs Debian's spin and gcc if missing (root only), as tools/winenv.py installs Wine. Each
check generates its verifier (spin -a), compiles it and searches every state (depth first; a
check that must fail, breadth first, for the shortest counterexample), in .winenv/modelcheck/
NAME/; a counterexample is replayed there as NAME/trail.txt, the model's own account of each
step. Prints a summary; exits 1 when a property fails, or when a check that must fail does not
(the model would not notice that guard missing).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "model" / "copydata.pml"
WORK = ROOT / ".winenv" / "modelcheck"
# pan: states compressed, a depth well past the model's (~500); assertions and invalid end states
# (-DSAFETY), or for the progress check cycles that pass no progress label, under weak fairness
# (-DNP, -l -f). -O0: gcc takes 4 s over the generated pan.c, against 25 s with -O1, for a search
# at most twice as fast.
PAN_FLAGS = ["-O0", "-DCOLLAPSE", "-w"]
PAN_OPTIONS = ["-m100000", "-n"]


@dataclass(frozen=True)
class Check:
    name: str
    defines: tuple[str, ...]
    must_fail: bool
    what: str
    fewer_frames: int = 0   # searched with this many frames fewer than the others


PROPERTIES = (
    Check("faults", (), False, "no write where the receiver reads; delivered once, in order; nothing taken lost; "
                               "every wait ends (time-outs, death)"),
    Check("no-faults", ("NO_FAULTS",), False, "the same, and every wait ends by an answer; every frame arrives"),
    # With fairness the search costs three times as much: one frame fewer (4 frames: 3.4 M states, 74 s).
    Check("progress", ("NO_FAULTS", "CHECK_PROGRESS"), False,
          "scheduled fairly, no wait or offer goes on for ever: every cycle sends or delivers a frame", 1),
)
BROKEN = (
    Check("break-release-wait", ("BREAK_RELEASE_WAIT",), True, "the Sender reuses a half without its release word"),
    Check("break-ring-wait", ("BREAK_RING_WAIT",), True, "the Sender announces before the last answer"),
    Check("break-ring-wait-deliver", ("BREAK_RING_WAIT_DELIVER",), True,
          "the Sender sends before the last announced frame's answer"),
    Check("break-answer-before-check", ("BREAK_ANSWER_BEFORE_CHECK",), True,
          "the receiver answers before make_room and the allocation"),
    Check("break-same-half", ("BREAK_SAME_HALF",), True, "one half: reused before a later answer"),
)
DEFECTS = (
    Check("code-announce-after-disarm", ("CODE_ANNOUNCE_AFTER_DISARM",), True,
          "_announce posts though the answer it awaited ended the ring"),
    Check("code-announce-after-disarm-no-faults", ("CODE_ANNOUNCE_AFTER_DISARM", "NO_FAULTS"), True,
          "... and with nothing failing, the Sender waits for an answer that never comes"),
    Check("code-header-rewrite", ("CODE_HEADER_REWRITE",), True,
          "batch_start rewrites the header of a frame announced and not yet read"),
    Check("code-after-send-timeout", ("CODE_AFTER_SEND_TIMEOUT",), True,
          "after a SendMessageTimeoutW time-out the frame is offered again"),
    Check("code-after-send-timeout-lease", ("CODE_AFTER_SEND_TIMEOUT", "TOLERATE_DUPLICATES"), True,
          "... and offered again under the same lease id"),
    Check("code-after-ring-timeout", ("CODE_AFTER_RING_TIMEOUT",), True,
          "after a time-out waiting for a ring answer the Sender goes on"),
    Check("code-ring-clock", ("CODE_RING_CLOCK", "NO_FAULTS"), True,
          "_note_answer restarts the ring's idle clock when it notes a late answer"),
)


@dataclass
class Result:
    check: Check
    errors: int
    complete: bool
    states: int
    depth: int
    seconds: float
    finding: str

    @property
    def ok(self) -> bool:
        if self.check.must_fail:
            return self.errors > 0
        return self.errors == 0 and self.complete


def log(message: str) -> None:
    print(f"[modelcheck] {message}", file=sys.stderr, flush=True)


def ensure_tools() -> None:
    missing = [package for package, command in (("spin", "spin"), ("gcc", "gcc")) if not shutil.which(command)]
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"[modelcheck] {' and '.join(missing)} missing: sudo apt-get install {' '.join(missing)}")
    log(f"installing {' '.join(missing)} with apt-get (once)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], env=env, check=True)


def run(check: Check, frames: int, memory_mb: int) -> Result:
    """Generates, compiles and runs one verifier; replays its counterexample, if any."""
    work = WORK / check.name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    defines = [f"-D{define}" for define in (*check.defines, f"N_FRAMES={frames - check.fewer_frames}")]
    subprocess.run(["spin", *defines, "-a", str(MODEL)], cwd=work, check=True, stdout=subprocess.DEVNULL)
    progress = "CHECK_PROGRESS" in check.defines
    search = ["-DNP"] if progress else ["-DSAFETY", "-DBFS"] if check.must_fail else ["-DSAFETY"]
    subprocess.run(["gcc", *PAN_FLAGS, f"-DMEMLIM={memory_mb}", *search, "-o", "pan", "pan.c"], cwd=work, check=True)
    start = time.monotonic()
    options = [*PAN_OPTIONS, *(["-l", "-f"] if progress else [])]
    output = subprocess.run(["./pan", *options], cwd=work, capture_output=True, text=True).stdout
    seconds = time.monotonic() - start
    (work / "pan.txt").write_text(output)
    errors = int(re.search(r"errors: (\d+)", output).group(1))  # type: ignore[union-attr]
    finding = ""
    if errors:
        found = re.search(r"pan:1: (.*?) \(at depth", output)
        finding = found.group(1) if found else "an error"
        replay = subprocess.run(["spin", *defines, "-t", "-k", f"{MODEL.name}.trail", str(MODEL)], cwd=work,
                                capture_output=True, text=True).stdout
        steps = [line.strip().removeprefix("MSC: ") for line in replay.splitlines()
                 if "MSC:" in line or "Error" in line or "failed assertion" in line]
        (work / "trail.txt").write_text("\n".join(steps) + "\n")
    return Result(check, errors,
                  complete=errors == 0 and "Search not completed" not in output and "MEMLIM" not in output,
                  states=int(re.search(r"(\d+) states, stored", output).group(1)),  # type: ignore[union-attr]
                  depth=int(re.search(r"depth reached (\d+)", output).group(1)),  # type: ignore[union-attr]
                  seconds=seconds, finding=finding)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broken", action="store_true", help="also check that each guard removed fails")
    parser.add_argument("--defects", action="store_true", help="also check the code's own steps, which fail")
    parser.add_argument("--frames", type=int, default=4, help="frames the Sender sends (default 4)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="checks at once (default 2)")
    parser.add_argument("--memory", type=int, default=3072, help="MB a check may use (default 3072)")
    options = parser.parse_args()
    ensure_tools()
    checks = [*PROPERTIES, *(BROKEN if options.broken else ()), *(DEFECTS if options.defects else ())]
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(options.jobs) as pool:
        results = list(pool.map(lambda check: run(check, options.frames, options.memory), checks))
    print(f"{'check':<38} {'frames':>6} {'expect':<6} {'result':<6} {'states':>11} {'depth':>6} {'time':>7}  finding")
    for result in results:
        outcome = "fail" if result.errors else ("pass" if result.complete else "INCOMPLETE")
        print(f"{result.check.name:<38} {options.frames - result.check.fewer_frames:>6} "
              f"{'fail' if result.check.must_fail else 'pass':<6} {outcome:<6} "
              f"{result.states:>11,} {result.depth:>6} {result.seconds:>6.1f}s  "
              f"{'' if result.ok else 'UNEXPECTED: '}{result.finding}", flush=True)
    failed = [result for result in results if not result.ok]
    log(f"{len(results)} checks, N_FRAMES={options.frames}, {time.monotonic() - started:.0f} s; "
        + (f"{len(failed)} unexpected: see {WORK}/NAME/" if failed else "all as expected"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
