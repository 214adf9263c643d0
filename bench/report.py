"""The benchmark's output: a markdown table, the raw JSON and a PNG chart, in bench/results/."""

from __future__ import annotations

import ctypes
import dataclasses
import datetime
import json
import os
import platform
import sys
from pathlib import Path

from mechanisms import FLOOR


@dataclasses.dataclass
class Run:
    results: list[dict]
    skipped: list[dict]
    plan: str
    repeat: int
    notes: dict[str, str]
    labels: dict[str, str]
    environment: dict = dataclasses.field(default_factory=lambda: environment())


def wine_version() -> str | None:
    """Wine's version when running under Wine (ntdll exports wine_get_version), else None."""
    try:
        get_version = ctypes.WinDLL("ntdll").wine_get_version
    except (AttributeError, OSError):
        return None
    get_version.restype = ctypes.c_char_p
    return get_version().decode()


def environment() -> dict:
    try:
        import copydata
        copydata_version = copydata.__version__
    except ImportError:
        copydata_version = None
    return {"wine": wine_version(), "windows": platform.version(), "python": sys.version.split()[0],
            "copydata": copydata_version, "cpus": os.cpu_count(),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def format_size(size: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"


def throughput(result: dict) -> tuple[float, float] | None:
    """(messages/s, MB/s) of a good measurement, else None."""
    if result.get("status") != "ok" or not result.get("seconds"):
        return None
    messages_per_second = result["count"] / result["seconds"]
    return messages_per_second, messages_per_second * result["size"] / 1e6


def describe(result: dict) -> str:
    """One line for the progress output."""
    rates = throughput(result)
    if rates is None:
        return f"{result['status']}: {result.get('reason', '')}"
    return f"{result['count']} messages, {rates[0]:,.0f} msg/s, {rates[1]:,.1f} MB/s, {result['seconds']:.2f} s"


def _microseconds(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1e6:,.0f}"


def _peak_memory(result: dict) -> str:
    """Peak working set, and in brackets how far above its level when the receiver was ready."""
    memory, at_ready = result.get("receiver_memory"), result.get("receiver_working_set_at_ready")
    if not memory:
        return "—"
    growth = f" (+{(memory['peak_working_set'] - at_ready) / 1e6:,.1f})" if at_ready else ""
    return f"{memory['peak_working_set'] / 1e6:,.1f}{growth}"


def markdown(run: Run) -> str:
    env = run.environment
    where = f"Wine {env['wine']}" if env["wine"] else f"Windows {env['windows']}"
    floors = {result["size"]: throughput(result) for result in run.results if result["mechanism"] == FLOOR}
    lines = [
        f"# copydata IPC benchmark ({run.plan} run"
        f"{f', fastest of {run.repeat} rounds' if run.repeat > 1 else ''})",
        "",
        f"Measured under **{where}**, Python {env['python']}, copydata {env['copydata']}, {env['cpus']} CPUs, "
        f"{env['date']}.",
        "Each row: a sender process and a receiver process (memcpy: one process), every payload checked "
        "on arrival (length, sequence, and every byte compared with the bytes expected).",
        "" if not env["wine"] else
        "Under Wine every cross-process message goes through wineserver: absolute figures say little about "
        "Windows; compare the **× C floor** ratios (MB/s against the plain C WM_COPYDATA sender and receiver "
        "measured in the same run).",
        "",
        "| size | mechanism | messages | msg/s | MB/s | × C floor | round trip median µs | round trip p99 µs "
        "| receiver peak working set MB (+ above idle) | result |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for result in run.results:
        rates = throughput(result)
        floor = floors.get(result["size"])
        ratio = f"{rates[1] / floor[1]:.2f}" if rates and floor else "—"
        lines.append("| " + " | ".join([
            format_size(result["size"]), run.labels.get(result["mechanism"], result["mechanism"]),
            str(result["count"]),
            f"{rates[0]:,.0f}" if rates else "—",
            f"{rates[1]:,.1f}" if rates else "—",
            ratio,
            _microseconds(result.get("round_trip_median")),
            _microseconds(result.get("round_trip_p99")),
            _peak_memory(result),
            "ok" if result["status"] == "ok" else f"**{result['status']}**: {result.get('reason', '')}",
        ]) + " |")
    for skipped in run.skipped:
        lines.append(f"| all | {skipped['label']} | — | — | — | — | — | — | — | skipped: {skipped['reason']} |")
    lines += ["", "MB = 10^6 bytes. msg/s and MB/s run from the sender's first send to the later of its last "
              "answer and the receiver's check of the last message. A round trip is one message (all its "
              "chunks) sent and answered. The receiver's peak working set includes its interpreter; in brackets, "
              "how far it rose above the working set the receiver had when it was ready.", ""]
    lines += [f"- **{run.labels[name]}**: {note}" for name, note in run.notes.items() if note]
    return "\n".join(lines) + "\n"


def chart(run: Run, path: Path) -> str | None:
    """Throughput against size, log-log, one line per mechanism; None, or why there is none."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as pyplot
    except ImportError:
        return "no chart: matplotlib is not installed"
    figure, axes = pyplot.subplots(figsize=(9, 6))
    for name, label in run.labels.items():
        points = [(result["size"], throughput(result)[1]) for result in run.results
                  if result["mechanism"] == name and throughput(result)]
        if points:
            sizes, rates = zip(*points)
            axes.plot(sizes, rates, marker="o", label=label,
                      linewidth=2.5 if name == FLOOR else 1.5, linestyle="--" if name == "memcpy" else "-")
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    sizes = sorted({result["size"] for result in run.results})
    axes.set_xticks(sizes, [format_size(size) for size in sizes])
    axes.set_xlabel("message size")
    axes.set_ylabel("throughput, MB/s (log)")
    env = run.environment
    where = f"measured under Wine {env['wine']}: compare ratios, not absolute figures" if env["wine"] \
        else f"measured on Windows {env['windows']}"
    axes.set_title(f"copydata IPC benchmark ({run.plan}), {where}", fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return None


def write(run: Run, directory: Path) -> str:
    """Write latest.md, latest.json and latest.png into ``directory``; return the markdown."""
    directory.mkdir(parents=True, exist_ok=True)
    table = markdown(run)
    missing_chart = chart(run, directory / "latest.png")
    if missing_chart:
        table += f"\n{missing_chart}\n"
    (directory / "latest.md").write_text(table, encoding="utf-8")
    (directory / "latest.json").write_text(json.dumps(dataclasses.asdict(run), indent=1) + "\n", encoding="utf-8")
    return table
