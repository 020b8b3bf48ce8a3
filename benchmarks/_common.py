"""Shared helpers of the benchmarks (see shared/BENCHMARKING.md for the rules they follow).

- :func:`print_header`: machine (cores, memory, CPU, load average), versions of the Python
  packages and command-line tools on both sides, the git commit; :func:`print_inputs` the input;
- :func:`ct_files`: the synthetic CT as DICOM files (uncompressed, JPEG-LS, JPEG 2000), cached;
- :func:`alternate`: a warm-up run of every case, then rounds A B C, B C A, ... (the order
  rotates so no case always runs first), timing only the work (setup and teardown excluded);
- :func:`summary_table`: median, min–max and the per-round ratio ``case / reference`` (the
  ratio of two runs of the same round, then its median and min–max), and CPU seconds;
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


def git_state() -> str:
    """The repository's commit, and whether src/ differs from it (others edit concurrently)."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "?"
    if not sha:
        return "? (not a git checkout)"
    return sha + (
        f" + uncommitted changes in {len(dirty)} src/ file(s)" if dirty else " (src/ clean)"
    )


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
    packages: Sequence[str],
    tools: dict[str, str] | None = None,
    notes: Sequence[str] = (),
    inputs: Sequence[str] = (),
) -> None:
    """Print what a reader needs to judge the figures: machine, versions (input: later)."""
    print(f"# {title}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print("## machine")
    for k, v in machine_info().items():
        print(f"  {k:13s} {v}")
    print("## versions")
    for k, v in package_versions(packages).items():
        print(f"  {k:18s} {v}")
    print(f"  {'imagelake git':18s} {git_state()}")
    for k, v in (tools or {}).items():
        print(f"  {k:18s} {v}")
    for line in notes:
        print(f"  note: {line}")
    if inputs:
        print_inputs(inputs)
    sys.stdout.flush()


def print_inputs(lines: Sequence[str]) -> None:
    print("## input")
    for line in lines:
        print(f"  {line}")
    sys.stdout.flush()


# -- timing ----------------------------------------------------------------------------


@dataclass
class Case:
    """One thing to time. ``run(state)`` is timed; ``setup()`` and ``teardown(state)`` are not."""

    name: str
    run: Callable[[Any], Any]
    setup: Callable[[], Any] | None = None
    teardown: Callable[[Any], None] | None = None
    #: anything the caller wants to keep with the case (e.g. peak memory per run); timed
    #: rounds add ``notes["cpu"]`` (CPU seconds of this process; a command's own CPU time
    #: must be recorded by the caller)
    notes: dict[str, list[float]] = field(default_factory=dict)
    last_cpu: float = 0.0

    def once(self) -> tuple[float, Any, Any]:
        """(seconds, result, state); the caller calls :meth:`close` with the state.

        The CPU seconds of this process (all its threads) during ``run`` are kept in
        ``self.last_cpu``: on a shared, loaded machine they vary much less than wall time.
        """
        state = self.setup() if self.setup else None
        try:
            c0 = time.process_time()
            t0 = time.perf_counter()
            result = self.run(state)
            sec = time.perf_counter() - t0
            self.last_cpu = time.process_time() - c0
            return sec, result, state
        except BaseException:
            self.close(state)
            raise

    def close(self, state: Any) -> None:
        if self.teardown:
            self.teardown(state)


def alternate(
    cases: Sequence[Case],
    *,
    rounds: int,
    warmup: int = 1,
    trace_warmup: bool = False,
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
            if trace_warmup:
                tracemalloc.start()
            try:
                sec, res, state = case.once()
            finally:
                if trace_warmup:
                    case.notes.setdefault("traced_mib", []).append(
                        tracemalloc.get_traced_memory()[1] / 2**20
                    )
                    tracemalloc.stop()
            try:
                if on_result:
                    on_result(case, -1 - w, sec, res)
            finally:
                case.close(state)
            if log:
                print(f"  warm-up  {case.name:34s} {sec:8.3f} s", flush=True)
    n = len(cases)
    for r in range(rounds):
        order = [cases[(r + k) % n] for k in range(n)]
        for case in order:
            sec, res, state = case.once()
            times[case.name].append(sec)
            case.notes.setdefault("cpu", []).append(case.last_cpu)
            try:
                if on_result:
                    on_result(case, r, sec, res)
            finally:
                case.close(state)
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
    return f"{statistics.median(values):.2f}× ({min(values):.2f}–{max(values):.2f})"


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
    cpu: dict[str, list[float]] | None = None,
) -> str:
    """Markdown table: case, median s (min–max), ``case / reference`` per round, extras.

    With ``cpu`` (CPU seconds per run, paired like ``times``), two more columns: CPU
    seconds and the per-round CPU ratio.
    """
    extra = extra or {}
    extra_cols: list[str] = []
    for cols in extra.values():
        for k in cols:
            if k not in extra_cols:
                extra_cols.append(k)
    label = ratio_label or f"÷ {reference} (per round)"
    rows = []
    cpu_cols = ["CPU s median (min–max)", "CPU ÷ reference"] if cpu else []
    for name, ts in times.items():
        r = "1 (reference)" if name == reference else ratio_text(ratios(ts, times[reference]))
        cpu_cells = []
        if cpu:
            c = cpu.get(name, [])
            cr = "1" if name == reference else ratio_text(ratios(c, cpu.get(reference, [])))
            cpu_cells = [med_range(c), cr]
        rows.append(
            [name, str(len(ts)), med_range(ts), r, *cpu_cells]
            + [extra.get(name, {}).get(c, "") for c in extra_cols]
        )
    header = ["case", "runs", "median s (min–max)", label, *cpu_cols, *extra_cols]
    return markdown_table(header, rows)


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
    #: user + system CPU seconds of the command and the descendants it waited for
    cpu_seconds: float = float("nan")


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
    max_rss = cpu = float("nan")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    if m:
        max_rss = int(m.group(1)) / 1024
        user = re.search(r"User time \(seconds\): ([\d.]+)", stderr)
        system = re.search(r"System time \(seconds\): ([\d.]+)", stderr)
        if user and system:
            cpu = float(user.group(1)) + float(system.group(1))
        stderr = stderr[: stderr.rfind("\tCommand being timed")]
    return CommandRun(
        sec, proc.returncode, stdout, stderr, max_rss, tree[0] if tree else max_rss, cpu
    )


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


# -- inputs ----------------------------------------------------------------------------

CT_KERNEL = "Br40"


def ct_folder(cache: Path, n_slices: int, rows: int, cols: int, syntax: str = "explicit") -> Path:
    return Path(cache) / f"ct-{n_slices}x{rows}x{cols}-int16-seed0" / syntax


def describe_ct(files: Sequence[Path], n_slices: int, rows: int, cols: int) -> str:
    size = sum(f.stat().st_size for f in files)
    return (
        f"SYNTHETIC CT (imagelake.synthetic.ct_series: chest/abdomen phantom + spatially "
        f"correlated noise, kernel {CT_KERNEL}, 1 mm slices, seed 0): {n_slices} × {rows} × "
        f"{cols} int16 (BitsStored 16, outside the FOV circle padded with -2000), "
        f"{len(files)} files, {size / 1e6:.1f} MB; pixels {n_slices * rows * cols * 2 / 1e6:.1f} MB"
    )


def _compress_one(args: tuple[str, str, str]) -> None:
    import pydicom

    from imagelake import synthetic

    src, dst, syntax = args
    ds = pydicom.dcmread(src)
    out = synthetic.compress(ds, syntax)
    tmp = dst + ".part"
    pydicom.dcmwrite(tmp, out, enforce_file_format=True)
    os.replace(tmp, dst)


def ct_files(
    cache: Path, n_slices: int, rows: int, cols: int, syntax: str = "explicit", workers: int = 2
) -> list[Path]:
    """The cached synthetic CT as DICOM files in ``syntax``; made on first use.

    ``explicit`` is written by :func:`imagelake.synthetic.write_series`; the compressed
    syntaxes are :func:`imagelake.synthetic.compress` of those same files (same
    SOPInstanceUIDs, same pixels). Files are named ``<series>_<instance>.dcm``.
    """
    folder = ct_folder(cache, n_slices, rows, cols, syntax)
    marker = folder / ".complete"
    if marker.exists():
        return sorted(folder.glob("*.dcm"))
    from imagelake import synthetic

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    if syntax == "explicit":
        synthetic.write_series(
            synthetic.ct_series(n_slices, rows, cols, dtype="int16", kernel=CT_KERNEL, seed=0),
            folder,
            naming="number",
        )
    else:
        import concurrent.futures

        src = ct_files(cache, n_slices, rows, cols, "explicit")
        jobs = [(str(f), str(folder / f.name), syntax) for f in src]
        with concurrent.futures.ProcessPoolExecutor(workers) as pool:
            list(pool.map(_compress_one, jobs, chunksize=8))
    marker.write_text(
        f"{n_slices} {rows} {cols} {syntax} imagelake {package_versions(['imagelake'])}\n"
    )
    print(
        f"  (made {folder} in {time.perf_counter() - t0:.1f} s; cached for the next run)",
        flush=True,
    )
    return sorted(folder.glob("*.dcm"))


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
