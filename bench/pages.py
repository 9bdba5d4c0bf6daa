"""Benchmark of what each dashboard page and each drill-down computes before it draws, over
about 1M demo CloudTrail records; every figure is measured in this run.

    python -m bench.pages [--events 1000000] [--scenario day|months|both] [--days 120]
                          [--only TEXT] [--repeat N]

Two buffers, one after the other: ``day``, the events spread over the last 24 h (a busy
account's day, issue 15), timed over the last hour, 6 h and 24 h; ``months``, the same number
spread over ``--days`` days (issue 14), timed over the last day, week and all of it. For each
range: every page's data and chart (Altair to the Vega-Lite dict Streamlit sends), the
explorer (its first view, the first search of a common and of a rare word, the same again and a
field search) and the drill-down of each chart (a click's events and the first page of the
table), without and with a region scope. The records are the demo source's, normalised as the
collector does, so the search reads records of a real size. The target is under 2 s each.

The search index (``metrics.search.keep_indexed``, a background thread in the app) is built
once after loading, timed and sized on its own line. The word search is also timed as it runs
before the index is built (every block decompressed), in one call and with the page's 1 s
budget per run (how many runs, and when the first answered), and the Overview with Altair's
debug mode on (validating the chart at every building step, as before ``ui.charts`` turned it
off) and with each selection parameter validated as Altair lifts it to the top of a layer
(also turned off there): those rows are for comparison and not counted in the slowest page. Scores are not
learned (a forest over the windows is the collector's background work, not a page's); the
detections and status pages read no events.
"""

from __future__ import annotations

import argparse
import gc
import os
import time

import altair as alt
import altair.utils.schemapi
import numpy as np
from streamlit.elements.vega_charts import _convert_altair_to_vega_lite_spec

from collectors.demo import DemoSource, rhythm
from metrics import search
from metrics.engine import Engine
from metrics.explore import EventFilter, bin_seconds, busiest_per_window, episodes, rebin
from metrics.normalise import Rejects, normalise_all
from metrics.visible import visible_frame
from ui import charts, data, tables
from ui.page import LINE_POINTS, bin_for
from ui.view import View

T_END = 1_733_011_200  # 2024-12-01T00:00:00Z
HOUR, DAY = 3600, 86_400
PAGE_SIZE = tables.PAGE_SIZE


def sent(chart: alt.TopLevelMixin) -> dict:
    """What Streamlit sends for a chart, as the app hands it over (``charts.unvalidated``): the
    spec with the data as Arrow (not Altair's own row-by-row JSON, which ``to_dict`` alone
    would time)."""
    return _convert_altair_to_vega_lite_spec(charts.unvalidated(chart))


def load(events: int, days: int) -> Engine:
    """An engine holding about ``events`` demo records over the ``days`` before ``T_END``,
    normalised and ingested an hour (or a day) at a time, as the collector's batches. Over many
    days, one day of records is generated and repeated on each day with its own eventIDs (the
    demo's generator walks every 10-second slot, which for months takes longer than the pages)."""
    engine = Engine(retention_seconds=None)
    first_day = T_END - days * DAY if days == 1 else T_END - DAY
    # The demo's rate is its weekday peak: divide by its mean share over the day, weekends included.
    share = np.mean([rhythm(t) for t in range(first_day, T_END, 60)])
    # Its scripted incidents come on top, a fixed number a day: left out when a day is repeated.
    source = DemoSource(seed=11, rate=events / (days * DAY * share), prefill=0, incidents=days == 1)
    if days == 1:
        for start in range(T_END - DAY, T_END, HOUR):
            records = source.records(start, start + HOUR)
            if records:
                engine.ingest(normalise_all(iter(records), Rejects()))
        return engine
    day = source.records(T_END - DAY, T_END)  # eventTime "YYYY-MM-DDTHH:MM:SSZ", all on one date
    for back in range(days - 1, -1, -1):
        date = time.strftime("%Y-%m-%d", time.gmtime(T_END - DAY - back * DAY))
        copies = [{**r, "eventID": f"{r['eventID']}-{back}", "eventTime": date + r["eventTime"][10:]} for r in day]
        engine.ingest(normalise_all(iter(copies), Rejects()))
    return engine


def _table(engine: Engine, flt: EventFilter, view: View) -> int:
    """A drill-down's or the explorer's table: the matches and their first page as shown."""
    events = data.select_events(engine, flt)
    visible_frame(tables.rows(events.newest(0, PAGE_SIZE), view))
    return len(events)


def overview(engine: Engine, view: View, at: int) -> None:
    seconds = bin_for(view, 10, at)
    totals = data.binned(engine, "TotalCalls", view, at, seconds)
    successes = data.binned(engine, "NumberOfSuccessfulCalls", view, at, seconds)
    scores = engine.scored_windows(*view.bounds(at))
    sent(charts.activity(totals, rebin(scores, seconds, "max"), threshold=1.8, step=seconds))
    sent(charts.lines_by(successes.assign(category="Succeeded"), "category", "Outcome", step=seconds))
    episodes(scores, engine.binned_totals("TotalCalls", *view.bounds(at), 10, dense_until=at), 1.8, lookback=190)


def lines_page(metric: str):
    def run(engine: Engine, view: View, at: int) -> None:
        seconds = bin_for(view, 10, at, points=LINE_POINTS)
        frame = data.binned_metric(engine, metric, view, at, seconds)
        sent(charts.lines_by(frame, "category", "Series", step=seconds))

    return run


def bars_page(metric: str):
    def run(engine: Engine, view: View, at: int) -> None:
        sent(charts.top_bars(data.totals(engine, metric, view, at), "category", "Who"))

    return run


def ips(engine: Engine, view: View, at: int) -> None:
    sent(charts.top_bars(data.totals(engine, "CallsPerUniqueIp", view, at), "category", "Source IP"))
    seconds = bin_for(view, 60, at)
    peaks = busiest_per_window(data.binned_metric(engine, "CallsPerUniqueIp", view, at, seconds))
    sent(charts.busiest_line(peaks, step=seconds))


def explorer(text: str = "", cold: bool = False, indexed: bool = True, budget: float | None = None):
    """The explorer's data; ``cold``: as the first search of a word (what a word found in each
    block is kept, and the explorer reruns on every click); ``indexed=False``: as before the
    background thread has indexed the blocks; ``budget``: as the page runs it, reading records
    for about that many seconds a run and running again until the search is done (the note
    says how many runs and how long the first took)."""

    def run(engine: Engine, view: View, at: int) -> str | None:
        if cold:
            search._HITS.clear()
        hidden = None if indexed else search._INDEXES.pop(engine.buffer, None)
        try:
            base = view.filter(now=at)
            in_range = data.select_events(engine, base)
            for column in ("eventSource", "eventName", "user", "sourceIPAddress", "errorCode"):
                in_range.values(column)
            began = time.perf_counter()
            events = data.select_events(engine, base.narrowed(text=text), budget=budget)
            runs = [time.perf_counter() - began]
            while events.unsearched:
                events = data.select_events(engine, base.narrowed(text=text), budget=budget)
                runs.append(time.perf_counter() - began)
            start, end = base.start, base.end
            seconds = bin_seconds(end - start, 10, points=80)
            sent(charts.matches_histogram(events.times_ns(), start=start, end=end, seconds=seconds))
            for column in ("eventSource", "eventName", "user", "sourceIPAddress", "errorCode"):
                events.counts(column, 5, missing=column == "errorCode")
            visible_frame(tables.rows(events.newest(0, PAGE_SIZE), view))
        finally:
            if hidden is not None:
                search._INDEXES[engine.buffer] = hidden
        return f"{len(runs)} run(s), the first answered in {runs[0]:.2f} s" if budget is not None else None

    return run


def _top(engine: Engine, metric: str, view: View, at: int):
    return data.totals(engine, metric, view, at).iloc[0]


def drill_api(engine: Engine, view: View, at: int) -> None:
    top = _top(engine, "CallsPerAPI", view, at)
    _table(engine, view.filter(now=at, step=10, services=(top["category"],), apis=(top["subcategory"],)), view)


def drill_user(engine: Engine, view: View, at: int) -> None:
    _table(engine, view.filter(now=at, step=10, users=(_top(engine, "CallsPerUser", view, at)["category"],)), view)


def drill_session(engine: Engine, view: View, at: int) -> None:
    top = _top(engine, "CallsPerUser", view, at)
    flt = view.filter(now=at, step=10, users=(top["category"],), sessions=(top["subcategory"] or None,))
    _table(engine, flt, view)


def drill_ip(engine: Engine, view: View, at: int) -> None:
    _table(engine, view.filter(now=at, step=60, ips=(_top(engine, "CallsPerUniqueIp", view, at)["category"],)), view)


def _point_criteria(metric: str, peak) -> dict:
    if metric == "CallsPerUniqueIp":
        return {"ips": (peak["category"],)}
    if metric == "EC2Calls":
        return {"services": (peak["category"],), "error_codes": (peak["subcategory"] or None,)}
    return {"services": (peak["category"],)}


def drill_point(metric: str, step: int, points: int):
    """A click on a time chart: the busiest bin of the busiest series."""

    def run(engine: Engine, view: View, at: int) -> None:
        seconds = bin_for(view, step, at, points=points)
        frame = data.binned_metric(engine, metric, view, at, seconds)
        peak = frame.loc[frame["value"].idxmax()]
        t = int(peak["window_start"].timestamp())
        _table(engine, view.filter(**_point_criteria(metric, peak)).narrowed(start=t, end=t + seconds), view)

    return run


def drill_overview(engine: Engine, view: View, at: int) -> None:
    seconds = bin_for(view, 10, at)
    totals = data.binned(engine, "TotalCalls", view, at, seconds)
    t = int(totals.loc[totals["value"].idxmax(), "window_start"].timestamp())
    _table(engine, view.filter().narrowed(start=t, end=t + seconds), view)


PAGES = {
    "Overview": overview,
    "Services": lines_page("CallsPerServiceType"),
    "APIs": bars_page("CallsPerAPI"),
    "Users": bars_page("CallsPerUser"),
    "Source IPs": ips,
    "EC2": lines_page("EC2Calls"),
    "Events explorer": explorer(),
    "Explorer: word search": explorer("AccessDenied", cold=True),
    "Explorer: rare word": explorer("ci-run-7", cold=True),
    "Explorer: same, again": explorer("AccessDenied"),
    "Explorer: field search": explorer("errorCode:AccessDenied AND NOT eventName:Get*"),
    "Drill: Overview bar": drill_overview,
    "Drill: Services point": drill_point("CallsPerServiceType", 10, LINE_POINTS),
    "Drill: APIs bar": drill_api,
    "Drill: Users bar": drill_user,
    "Drill: Users session": drill_session,
    "Drill: Source IPs bar": drill_ip,
    "Drill: busiest IP point": drill_point("CallsPerUniqueIp", 60, 400),
    "Drill: EC2 point": drill_point("EC2Calls", 10, LINE_POINTS),
}


def altair_debug(page):
    """``page`` with Altair's debug mode on (its default, which ``ui.charts`` turns off)."""

    def run(engine: Engine, view: View, at: int) -> None:
        with altair.utils.schemapi.debug_mode(True):
            page(engine, view, at)

    return run


def parameters_validated(page):
    """``page`` with Altair validating each selection parameter it lifts to the top of a
    layer (its default, which ``ui.charts`` turns off for ``LIFTED``)."""

    def run(engine: Engine, view: View, at: int) -> None:
        patched = {kind: kind.__dict__["to_dict"] for kind in charts.LIFTED}
        for kind, method in patched.items():
            kind.to_dict = method.func
        try:
            page(engine, view, at)
        finally:
            for kind, method in patched.items():
                kind.to_dict = method

    return run


# For comparison, not counted in the slowest page: the search before the background thread has
# indexed the blocks (just after a start with a full buffer), in one call and as the page runs it;
# the Overview as it was built before (Altair validating the chart at every step, then each
# lifted selection parameter).
BEFORE = {
    "Explorer: word, unindexed": explorer("AccessDenied", cold=True, indexed=False),
    "Explorer: word, 1 s budget": explorer("AccessDenied", cold=True, indexed=False, budget=1.0),
    "Overview, Altair debug on": altair_debug(overview),
    "Overview, params validated": parameters_validated(overview),
}


def run(engine: Engine, ranges: dict[str, int], only: str = "", repeat: int = 1) -> float:
    """Times each page (those whose name holds ``only``) over each range, the median of
    ``repeat`` runs, and returns the slowest."""
    print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} cores")
    print(f"{'page':<28}{'range':<14}{'no scope':>10}{'one region':>12}")
    worst = 0.0
    for name, page in {**PAGES, **BEFORE}.items():
        if only not in name:
            continue
        for label, seconds in ranges.items():
            timings, notes = [], []
            for regions in ((), ("eu-west-1",)):
                view = View("Custom range", (T_END - seconds, T_END), regions, (), "UTC")
                runs = []
                for _ in range(repeat):
                    start = time.perf_counter()
                    notes.append(page(engine, view, T_END))
                    runs.append(time.perf_counter() - start)
                timings.append(float(np.median(runs)))
            notes = notes[::repeat]
            if name in PAGES:
                worst = max(worst, *timings)
            note = f"  ({'; '.join(notes)})" if notes[0] else ""
            print(f"{name:<28}{label:<14}{timings[0]:>9.3f}s{timings[1]:>11.3f}s{note}", flush=True)
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pages", description="Page data functions over 1M events.")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--scenario", choices=("day", "months", "both"), default="both")
    parser.add_argument("--only", default="", help="time only the pages whose name holds this text")
    parser.add_argument("--repeat", type=int, default=1, help="runs per figure, the median shown (noisy hosts)")
    args = parser.parse_args()
    alt.data_transformers.disable_max_rows()  # Streamlit sends charts its own way, without Altair's cap
    scenarios = {
        "day": (1, {"last hour": HOUR, "last 6 h": 6 * HOUR, "last 24 h": DAY}),
        "months": (args.days, {"last day": DAY, "last week": 7 * DAY, f"all {args.days} days": args.days * DAY}),
    }
    worst = {}
    for name in ("day", "months") if args.scenario == "both" else (args.scenario,):
        days, ranges = scenarios[name]
        began = time.perf_counter()
        engine = load(args.events, days)
        print(f"\n{len(engine.buffer):,} events over {days} day(s), loaded in {time.perf_counter() - began:.0f} s")
        began = time.perf_counter()
        blocks = search.index_blocks(engine.buffer)  # the background thread's work after ingest
        mib = search.indexed_bytes(engine.buffer) / 2**20
        print(f"search index: {blocks} blocks in {time.perf_counter() - began:.1f} s, {mib:.0f} MiB")
        worst[name] = run(engine, ranges, args.only, args.repeat)
        del engine
        gc.collect()
    for name, seconds in worst.items():
        print(f"slowest page or drill-down ({name}): {seconds:.2f} s (target: under 2 s)")


if __name__ == "__main__":
    main()
