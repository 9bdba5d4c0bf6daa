"""One colour per meaning on every page, and one steady colour per series.

Success, failure and each severity have fixed colours. Error codes are drawn from warm
colours and every other series (services, IPs, users) from the rest, so that a service line
is never mistaken for an error. A series keeps its colour for as long as the ``Palette``
lives (one per browser session): adding a series, or a refresh that reorders them, never
repaints the others. A new series takes the colour its name hashes to, or the next free one,
so the same names get the same colours in every session. No Streamlit here.
"""

from __future__ import annotations

import zlib

SUCCESS = "#4c78a8"  # blue: the calls that succeeded
FAILURE = "#e45756"  # red: the calls that failed, whatever the code
SEVERITY = {
    "critical": "#8b0000",
    "high": "#e45756",
    "medium": "#f58518",
    "low": "#eeca3b",
    "info": "#9e9e9e",
}
# Warm and dark colours only: an error code never looks like success (blue) or a service.
ERROR_COLORS = (
    "#e45756",
    "#f58518",
    "#b279a2",
    "#9d755d",
    "#d62728",
    "#ff9da6",
    "#bcbd22",
    "#8c564b",
    "#e377c2",
    "#7f3b08",
)
# Tableau 20 without success blue and the reds.
SERIES_COLORS = (
    "#f58518",
    "#54a24b",
    "#b279a2",
    "#72b7b2",
    "#eeca3b",
    "#9d755d",
    "#9ecae9",
    "#ffbf79",
    "#88d27a",
    "#d67195",
    "#fcbfd2",
    "#439894",
    "#b6992d",
    "#d6a5c9",
    "#83bcb6",
    "#f2cf5b",
)
OTHER = "#bab0ac"  # grey: one line summing the series not drawn on their own


class Palette:
    """Colours handed out to series names of one kind and kept."""

    def __init__(self, colors: tuple[str, ...] = SERIES_COLORS, fixed: dict[str, str] | None = None):
        self.colors = colors
        self.fixed = dict(fixed or {})
        self.given: dict[str, str] = {}

    def color(self, name: str) -> str:
        if name in self.fixed:
            return self.fixed[name]
        if name not in self.given:
            used = set(self.given.values())
            first = zlib.crc32(name.encode()) % len(self.colors)
            free = [self.colors[(first + i) % len(self.colors)] for i in range(len(self.colors))]
            # All taken: the hashed colour again, shared with an older series.
            self.given[name] = next((c for c in free if c not in used), self.colors[first])
        return self.given[name]

    def of(self, names) -> dict[str, str]:
        """``{name: colour}`` for a chart's scale, in the order given."""
        return {name: self.color(name) for name in names}


OTHERS = "All others"  # the label of that line


def series_palette() -> Palette:
    return Palette(SERIES_COLORS, fixed={OTHERS: OTHER})


def error_palette(success_label: str, failure_label: str) -> Palette:
    return Palette(ERROR_COLORS, fixed={success_label: SUCCESS, failure_label: FAILURE})
