"""Every setting of the app in one table: name, default and help.

Each is read from the environment variable ``INSIGHTS_<NAME>`` (upper case), e.g.
``INSIGHTS_RETENTION_HOURS=6``. The README lists them all; a test keeps it that way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from metrics.anomaly import ENGINES


@dataclass(frozen=True)
class Setting:
    name: str
    default: object
    help: str
    parse: Callable[[str], object] = str
    choices: tuple = ()

    @property
    def variable(self) -> str:
        return f"INSIGHTS_{self.name.upper()}"


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _at_least(kind, low, strictly: bool = False):
    def parse(text: str):
        value = kind(text)
        if value < low or (strictly and value == low):
            raise ValueError(f"expected a {'positive' if strictly else 'non-negative'} number, got {text!r}")
        return value

    return parse


def _positive(kind):
    return _at_least(kind, 0, strictly=True)


SETTINGS = (
    Setting("source", "demo", "Where events come from: `demo` (synthetic, no AWS account needed).", choices=("demo",)),
    Setting("retention_hours", 24.0, "Hours of events kept in memory; older ones are dropped.", _positive(float)),
    Setting(
        "anomaly_engine",
        "krcf",
        "Random Cut Forest implementation: `krcf` (AWS's RCF, fast) or `rrcf`.",
        choices=tuple(sorted(ENGINES)),
    ),
    Setting("poll_seconds", 2.0, "Seconds between two polls of the source.", _positive(float)),
    Setting(
        "score_delay_seconds",
        120,
        "Anomaly scores are drawn up to this many seconds ago: newer windows are still receiving late events.",
        _at_least(int, 0),
    ),
    Setting("refresh_seconds", 10, "Seconds between two refreshes of the dashboard's charts.", _positive(int)),
    Setting("demo_seed", 7, "Seed of the demo generator: the same seed gives the same events.", int),
    Setting("demo_rate", 4.0, "Demo events per second at the daily peak (14:00 UTC).", _positive(float)),
    Setting("demo_incidents", True, "Whether the demo stages its hourly incidents.", _flag),
)


class SettingsError(ValueError):
    pass


def load(environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """The value of every setting: from the environment where set, else its default."""
    environ = os.environ if environ is None else environ
    values = {}
    for setting in SETTINGS:
        text = environ.get(setting.variable)
        if text is None or text == "":
            values[setting.name] = setting.default
            continue
        try:
            value = setting.parse(text)
        except ValueError as error:
            raise SettingsError(f"{setting.variable}: {error}") from None
        if setting.choices and value not in setting.choices:
            raise SettingsError(f"{setting.variable} must be one of {', '.join(setting.choices)}, not {text!r}")
        values[setting.name] = value
    return values
