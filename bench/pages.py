"""Benchmark of what each dashboard page computes before it draws, over a buffer of generated
events; every figure is measured in this run.

    python -m bench.pages [--events 1000000] [--days 120]

For each range (the last day, week, and all of it) and each page: the metric frames it reads,
the coarse bins it draws and the chart it builds (Altair to a Vega-Lite dict, which is what
Streamlit sends), without and with a region scope. The target is under 2 s per page for any
range over 1M events. Scores are not learned here (a forest over months of windows is the
collector's background work, not a page's).
"""

from __future__ import annotations

import argparse
import os
import time

import altair as alt
import numpy as np
import orjson

from metrics.engine import Engine
from metrics.events import COLUMNS, Batch
from metrics.explore import EventFilter, busiest_per_window, episodes, rebin
from ui import charts, data
from ui.page import bin_for
from ui.view import View

T_END = 1_733_011_200  # 2024-12-01T00:00:00Z
SERVICES = [f"svc{i}.amazonaws.com" for i in range(24)] + ["ec2.amazonaws.com"]
REGIONS = ["us-east-1", "eu-west-1", "us-west-2", "ap-southeast-2"]


def generate(events: int, days: int, seed: int = 3) -> list[Batch]:
    """``events`` events spread over ``days`` with a daily rhythm, in batches of 100,000."""
    rng = np.random.default_rng(seed)
    start = T_END - days * 86_400
    seconds = np.sort(rng.integers(start, T_END, events))
    keep = rng.random(events) < 0.6 + 0.4 * np.sin((seconds % 86_400) / 86_400 * np.pi)
    seconds = seconds[keep]
    n = len(seconds)
    picks = {
        "eventSource": np.array(SERVICES)[rng.integers(0, len(SERVICES), n)],
        "eventName": np.array([f"Api{i}" for i in range(120)])[rng.zipf(1.6, n) % 120],
        "awsRegion": np.array(REGIONS)[rng.integers(0, len(REGIONS), n)],
        "sourceIPAddress": np.array([f"198.51.{i // 256}.{i % 256}" for i in range(400)])[rng.zipf(1.4, n) % 400],
        "user": np.array([f"user{i}" for i in range(60)])[rng.zipf(1.5, n) % 60],
        "errorCode": np.where(rng.random(n) < 0.05, "AccessDenied", None),
    }
    batches = []
    for low in range(0, n, 100_000):
        high = min(n, low + 100_000)
        columns = {name: [None] * (high - low) for name in COLUMNS}
        columns["eventID"] = [f"e{i}" for i in range(low, high)]
        columns["eventTime"] = (seconds[low:high] * 1_000_000_000).tolist()
        for name, values in picks.items():
            columns[name] = values[low:high].tolist()
        columns["readOnly"] = [True] * (high - low)
        columns["account"] = ["111122223333"] * (high - low)
        raws = [
            orjson.dumps({"eventID": e, "eventSource": s}) for e, s in zip(columns["eventID"], columns["eventSource"])
        ]
        batches.append(Batch([columns[name] for name in COLUMNS], raws))
    return batches


def overview(engine: Engine, view: View, at: int) -> None:
    seconds = bin_for(view, 10, at)
    totals = data.binned(engine, "TotalCalls", view, at, seconds)
    successes = data.binned(engine, "NumberOfSuccessfulCalls", view, at, seconds)
    scores = engine.scored_windows(*view.bounds(at))
    charts.activity(totals, rebin(scores, seconds, "max"), threshold=1.8, step=seconds).to_dict()
    charts.lines_by(successes.assign(category="Succeeded"), "category", "Outcome", step=seconds).to_dict()
    episodes(scores, engine.binned_totals("TotalCalls", *view.bounds(at), 10, dense_until=at), 1.8, lookback=190)


def lines_page(metric: str):
    def run(engine: Engine, view: View, at: int) -> None:
        frame = data.metric(engine, metric, view, at)
        seconds = bin_for(view, 10, at)
        charts.lines_by(rebin(frame, seconds), "category", "Series", step=seconds).to_dict()

    return run


def bars_page(metric: str):
    def run(engine: Engine, view: View, at: int) -> None:
        charts.top_bars(data.metric(engine, metric, view, at), "category", "Who").to_dict()

    return run


def ips(engine: Engine, view: View, at: int) -> None:
    frame = data.metric(engine, "CallsPerUniqueIp", view, at)
    charts.top_bars(frame, "category", "Source IP").to_dict()
    seconds = bin_for(view, 60, at)
    charts.busiest_line(busiest_per_window(rebin(frame, seconds)), step=seconds).to_dict()


def explorer(engine: Engine, view: View, at: int) -> None:
    start, end = view.bounds(at)
    data.events(engine, EventFilter(start=start, end=end, regions=view.regions, text="AccessDenied"))


PAGES = {
    "Overview": overview,
    "Services": lines_page("CallsPerServiceType"),
    "APIs": bars_page("CallsPerAPI"),
    "Users": bars_page("CallsPerUser"),
    "Source IPs": ips,
    "EC2": lines_page("EC2Calls"),
    "Events explorer (search)": explorer,
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pages", description="Page data functions over 1M events.")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=120)
    args = parser.parse_args()
    alt.data_transformers.disable_max_rows()  # Streamlit sends charts its own way, without Altair's cap
    engine = Engine(retention_seconds=None)
    began = time.perf_counter()
    for batch in generate(int(args.events / 0.85), args.days):
        engine.ingest(batch)
    print(f"{len(engine.buffer):,} events over {args.days} days, loaded in {time.perf_counter() - began:.1f} s")
    print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} cores")
    ranges = {"last day": 86_400, "last week": 7 * 86_400, f"all {args.days} days": args.days * 86_400}
    print(f"{'page':<26}{'range':<16}{'no scope':>10}{'one region':>12}")
    worst = 0.0
    for name, page in PAGES.items():
        for label, seconds in ranges.items():
            timings = []
            for regions in ((), ("eu-west-1",)):
                view = View("Custom range", (T_END - seconds, T_END), regions, (), "UTC")
                start = time.perf_counter()
                page(engine, view, T_END)
                timings.append(time.perf_counter() - start)
            worst = max(worst, *timings)
            print(f"{name:<26}{label:<16}{timings[0]:>9.2f}s{timings[1]:>11.2f}s")
    print(f"slowest page: {worst:.2f} s (target: under 2 s)")


if __name__ == "__main__":
    main()
