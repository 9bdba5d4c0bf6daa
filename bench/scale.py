"""Which engine from which volume: wall time and peak memory of ``python -m metrics`` with each
engine over the same trail in the S3 layout, side by side.

    python -m bench.scale [--events 1000000] [--engines memory,duckdb,spark] [--folder DIR]

The trail is the demo's records (two accounts, four regions) written as an organisation trail's
gzipped five-minute files. Each engine runs in a fresh process; peak memory is that process
tree's largest resident set (a JVM's included). Spark runs ``local[2]``; its start-up (a JVM and
a session over one small file) is measured apart and subtracted. With ``--folder`` the trail is
kept there and reused by the next run of the same ``--events`` (writing 5M events takes minutes).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.trail_layout import ORG, demo_trail

DAY_START = 1_767_571_200  # 2026-01-05T00:00:00Z


def run_cli(paths: list[str], engine: str) -> tuple[float, float, str]:
    """(seconds, peak MiB, stdout) of one ``python -m metrics`` run."""
    command = [sys.executable, "-m", "metrics", *paths, "--engine", engine]
    if engine == "spark":
        command += ["--spark-master", "local[2]"]
    start = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors)
        out = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            errors.seek(0)
            said = errors.read().decode(errors="replace").strip().splitlines()[-5:]
            raise SystemExit(f"{engine} failed after {seconds:.0f} s:\n" + "\n".join(said))
    return seconds, usage.ru_maxrss / 1024, out.decode()


def _trail(root: Path, events: int) -> list[Path]:
    """The demo's day as trail files under ``root``: written unless a finished one is there."""
    done = root / "written"
    if done.exists():
        files = sorted(root.rglob("*.json.gz"))
        print(f"trail: {len(files):,} files reused from {root}")
        return files
    # The demo peaks at `rate` events/s at 14:00 and averages about half that over a day.
    seconds = 86_400
    rate = max(0.01, events / seconds * 2)
    t0 = time.perf_counter()
    files = demo_trail(root, DAY_START, seconds, rate=rate)
    size = sum(f.stat().st_size for f in files)
    done.touch()
    print(f"trail: {len(files):,} files, {size / 2**20:,.1f} MiB gzipped, written in {time.perf_counter() - t0:.0f} s")
    return files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="about this many events (default 1M)")
    parser.add_argument("--engines", default="memory,duckdb,spark")
    parser.add_argument("--folder", help="keep the trail here and reuse it when it was written before")
    args = parser.parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]

    with contextlib.ExitStack() as stack:
        if args.folder:
            root = Path(args.folder) / f"trail-{args.events}"
        else:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        files = _trail(root, args.events)
        trail = str(root / "AWSLogs" / ORG)

        results, outputs = {}, {}
        for engine in engines:
            results[engine] = run_cli([trail], engine)
            outputs[engine] = results[engine][2]
            print(f"  {engine}: {results[engine][0]:.1f} s, {results[engine][1]:,.0f} MiB peak", flush=True)
        events = sum(
            int(line.rsplit(",", 1)[1]) for line in outputs[engines[0]].splitlines() if line.startswith("TotalCalls,")
        )
        startup = None
        if "spark" in engines:
            startup = run_cli([str(files[0])], "spark")[0]

    print(f"events: {events:,}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    base = results[engines[0]][0]
    for engine in engines:
        wall, peak, _ = results[engine]
        note = f"{wall / base:.2f}x {engines[0]}"
        if engine == "spark" and startup is not None:
            note += f"; start-up {startup:.1f} s, work {max(0.0, wall - startup):.1f} s"
        print(f"{engine:<8}{wall:>10.1f} s{peak:>10,.0f} MiB peak   {note}")
    same = len({outputs[e] for e in engines}) == 1
    print(f"identical CSV from every engine: {'yes' if same else 'NO'}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
