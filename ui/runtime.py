"""One engine and one collector per server process, shared by every browser session."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

import settings as app_settings
from collectors.collector import Collector
from collectors.demo import DemoSource
from metrics.engine import Engine


@dataclass(frozen=True)
class Runtime:
    settings: dict
    engine: Engine
    collector: Collector

    @property
    def is_demo(self) -> bool:
        return self.settings["source"] == "demo"


def build(values: dict) -> Runtime:
    engine = Engine(retention_seconds=values["retention_hours"] * 3600, anomaly_engine=values["anomaly_engine"])
    source = DemoSource(seed=values["demo_seed"], rate=values["demo_rate"], incidents=values["demo_incidents"])
    collector = Collector(source, engine, interval=values["poll_seconds"])
    return Runtime(values, engine, collector)


@st.cache_resource(show_spinner="Starting the collector…")
def runtime() -> Runtime:
    """The process-wide runtime, started on first use."""
    shared = build(app_settings.load())
    shared.collector.poll_once()  # the first hour of history, before the first page renders
    shared.collector.start()
    return shared
