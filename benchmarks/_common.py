"""Shared helpers of the benchmarks (see shared/BENCHMARKING.md for the rules they follow).

- :func:`print_header`: machine (cores, memory, CPU, load average), versions of the Python
  packages and command-line tools on both sides, and the input;
- :func:`alternate`: a warm-up run of every case, then rounds A B C, B C A, ... (the order
  rotates so no case always runs first), timing only the work (setup and teardown excluded);
- :func:`summary_table`: median, min–max and the per-round ratio ``case / reference`` (the
  ratio of two runs of the same round, then its median and min–max);
- memory: :func:`run_command` times a command under ``/usr/bin/time -v`` (peak RSS of the
  largest process) while sampling the summed RSS of the whole process tree (workers, pigz);
  :func:`traced_peak` gives the peak of Python/NumPy allocations of a call (tracemalloc).

Run it (``python benchmarks/_common.py``) to print the machine description alone.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: inputs generated once and reused (git-ignored: /benchmarks/out/)
DEFAULT_CACHE = REPO / "benchmarks" / "out" / "cache"

# -- machine and versions -------------------------------------------------------------------


def _meminfo_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def machine_info() -> dict[str, str]:
    """Cores, memory, CPU model, OS, Python and the load average right now."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "cores": f"{os.cpu_count()} ({usable} usable)",
        "memory": f"{_meminfo_gib():.1f} GiB",
        "cpu": _cpu_model(),
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load average": " ".join(f"{v:.2f}" for v in load) + " (1, 5, 15 min)",
    }


def package_versions(names: Sequence[str]) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def tool_version(argv: Sequence[str], pattern: str | None = None) -> str:
    """First line (or the first match of ``pattern``) of what a tool prints; 'not found'."""
    if shutil.which(argv[0]) is None:
        return "not found"
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"? ({exc})"
    text = (proc.stdout + proc.stderr).strip()
    if pattern:
        m = re.search(pattern, text)
        if m:
            return m.group(0)
    return text.splitlines()[0] if text else "?"


def print_header(
    title: str,
    *,
    inputs: Sequence[str],
    packages: Sequence[str],
    tools: dict[str, str] | None = None,
    notes: Sequence[str] = (),
) -> None:
    """Print what a reader needs to judge the figures: machine, versions, input."""
    print(f"# {title}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print("## machine")
    for k, v in machine_info().items():
        print(f"  {k:13s} {v}")
    print("## versions")
    for k, v in package_versions(packages).items():
        print(f"  {k:18s} {v}")
    for k, v in (tools or {}).items():
        print(f"  {k:18s} {v}")
    print("## input")
    for line in inputs:
        print(f"  {line}")
    for line in notes:
        print(f"  note: {line}")
    sys.stdout.flush()


# -- timing ----------------------------------------------------------------------------


@dataclass
class Case:
    """One thing to time. ``run(state)`` is timed; ``setup()`` and ``teardown(state)`` are not."""

    name: str
    run: Callable[[Any], Any]
    setup: Callable[[], Any] | None = None
    teardown: Callable[[Any], None] | None = None
    #: per-run extra values a case wants reported (peak RSS...), filled by ``run`` via ``extra``
    extra: dict[str, list[float]] = field(default_factory=dict)

    def once(self) -> tuple[float, Any]:
        state = self.setup() if self.setup else None
        try:
            t0 = time.perf_counter()
            result = self.run(state)
            return time.perf_counter() - t0, result
        finally:
            if self.teardown:
                self.teardown(state)


def alternate(
    cases: Sequence[Case],
    *,
    rounds: int,
    warmup: int = 1,
    log: bool = True,
    on_result: Callable[[Case, int, float, Any], None] | None = None,
) -> dict[str, list[float]]:
    """Warm-up runs of every case, then ``rounds`` rounds in rotating order.

    Returns the timed seconds of each case, index ``i`` being round ``i`` (so two cases'
    lists pair up round by round). ``on_result(case, round, seconds, result)`` sees every
    run, warm-up ones with a negative round.
    """
    times: dict[str, list[float]] = {c.name: [] for c in cases}
    for w in range(warmup):
        for case in cases:
            sec, res = case.once()
            if on_result:
                on_result(case, -1 - w, sec, res)
            if log:
                print(f"  warm-up  {case.name:34s} {sec:8.3f} s", flush=True)
    n = len(cases)
    for r in range(rounds):
        order = [cases[(r + k) % n] for k in range(n)]
        for case in order:
            sec, res = case.once()
            times[case.name].append(sec)
            if on_result:
                on_result(case, r, sec, res)
            if log:
                print(f"  round {r + 1:2d} {case.name:34s} {sec:8.3f} s", flush=True)
    return times


def fmt_s(sec: float) -> str:
    if sec >= 100:
        return f"{sec:.0f}"
    if sec >= 10:
        return f"{sec:.1f}"
    if sec >= 1:
        return f"{sec:.2f}"
    if sec >= 0.01:
        return f"{sec:.3f}"
    return f"{sec:.4f}"


def med_range(values: Sequence[float], fmt: Callable[[float], str] = fmt_s) -> str:
    if not values:
        return "–"
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}–{fmt(max(values))})"


def ratios(case: Sequence[float], reference: Sequence[float]) -> list[float]:
    """Round-by-round ratio ``case / reference`` (how many times slower the case is)."""
    return [a / b for a, b in zip(case, reference, strict=True) if b > 0]


def ratio_text(values: Sequence[float]) -> str:
    if not values:
        return "–"
    return (
        f"{statistics.median(values):.2f}× ({min(values):.2f}–{max(values):.2f})"
    )


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for k, r in enumerate(cells):
        lines.append("| " + " | ".join(c.ljust(widths[i]) for i, c in enumerate(r)) + " |")
        if k == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def summary_table(
    times: dict[str, list[float]],
    *,
    reference: str,
    extra: dict[str, dict[str, str]] | None = None,
    ratio_label: str | None = None,
) -> str:
    """Markdown table: case, median s (min–max), ``case / reference`` per round, extras."""
    extra = extra or {}
    extra_cols: list[str] = []
    for cols in extra.values():
        for k in cols:
            if k not in extra_cols:
                extra_cols.append(k)
    label = ratio_label or f"÷ {reference} (per round)"
    rows = []
    for name, ts in times.items():
        r = "1 (reference)" if name == reference else ratio_text(ratios(ts, times[reference]))
        rows.append(
            [name, str(len(ts)), med_range(ts), r]
            + [extra.get(name, {}).get(c, "") for c in extra_cols]
        )
    return markdown_table(["case", "runs", "median s (min–max)", label, *extra_cols], rows)


# -- memory ----------------------------------------------------------------------------


@dataclass
class CommandRun:
    seconds: float
    returncode: int
    stdout: str
    stderr: str
    #: ``/usr/bin/time -v`` "Maximum resident set size": the largest single process (MiB)
    max_rss_mib: float
    #: sampled every ~20 ms: the largest sum of RSS over the process and its descendants (MiB)
    tree_rss_mib: float


def _tree_rss_sampler(pid: int, stop: threading.Event, out: list[float]) -> None:
    try:
        import psutil
    except ImportError:  # psutil comes with dask.distributed; without it, no sampling
        return
    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return
    peak = 0
    while not stop.is_set():
        total = 0
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            break
        for p in procs:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        peak = max(peak, total)
        stop.wait(0.02)
    out.append(peak / 2**20)


def run_command(
    argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: str | None = None
) -> CommandRun:
    """Run a command, timing it whole (process start included), with its peak memory.

    The time is wall-clock around ``/usr/bin/time -v argv`` (the wrapper adds ~1 ms).
    """
    wrapper = ["/usr/bin/time", "-v"] if Path("/usr/bin/time").exists() else []
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*wrapper, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )
    stop = threading.Event()
    tree: list[float] = []
    sampler = threading.Thread(target=_tree_rss_sampler, args=(proc.pid, stop, tree), daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    sec = time.perf_counter() - t0
    stop.set()
    sampler.join()
    max_rss = float("nan")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    if m:
        max_rss = int(m.group(1)) / 1024
        stderr = stderr[: stderr.rfind("\tCommand being timed")]
    return CommandRun(sec, proc.returncode, stdout, stderr, max_rss, tree[0] if tree else max_rss)


def traced_peak(fn: Callable[[], Any]) -> tuple[Any, float]:
    """Call ``fn`` under tracemalloc: (result, peak traced MiB). Not for timing."""
    tracemalloc.start()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak / 2**20


def peak_rss_mib() -> float:
    """Peak RSS of this process so far (MiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- files -----------------------------------------------------------------------------


def tree_bytes(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(total bytes, number of files) under ``path``."""
    total = count = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
            count += 1
    return total, count


@contextlib.contextmanager
def timer(label: str) -> Iterator[None]:
    t0 = time.perf_counter()
    yield
    print(f"  {label}: {time.perf_counter() - t0:.1f} s", flush=True)


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


if __name__ == "__main__":
    # `make bench` runs every benchmarks/*.py: this one only describes the machine.
    print_header(
        "machine description (benchmarks/_common.py)",
        inputs=["none: run a benchmark, e.g. python benchmarks/ingest_vs_dcm2niix.py"],
        packages=["imagelake", "numpy", "zarr", "numcodecs", "pydicom", "xarray", "dask"],
        tools={
            "dcm2niix": tool_version(["dcm2niix", "-v"], r"v\d+\.\d+\.\d+\S*"),
            "pigz": tool_version(["pigz", "--version"]),
            "hyperfine": tool_version(["hyperfine", "--version"]),
        },
    )
