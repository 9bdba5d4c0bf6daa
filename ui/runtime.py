"""One engine and one collector per server process, shared by every browser session."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

import settings as app_settings
from collectors.collector import Collector
from collectors.demo import DemoSource
from collectors.files import FileSource, RegionFilter
from metrics.engine import Engine


@dataclass(frozen=True)
class Runtime:
    settings: dict
    engine: Engine
    collector: Collector

    @property
    def is_demo(self) -> bool:
        return self.settings["source"] == "demo"


def make_source(values: dict):
    if values["source"] == "files":
        if not values["files_path"]:
            raise app_settings.SettingsError("INSIGHTS_FILES_PATH must name a folder or file when the source is files")
        source = FileSource(values["files_path"])
    else:
        source = DemoSource(seed=values["demo_seed"], rate=values["demo_rate"], incidents=values["demo_incidents"])
    return RegionFilter(source, values["regions"]) if values["regions"] else source


def build(values: dict) -> Runtime:
    engine = Engine(retention_seconds=values["retention_hours"] * 3600, anomaly_engine=values["anomaly_engine"])
    collector = Collector(make_source(values), engine, interval=values["poll_seconds"])
    return Runtime(values, engine, collector)


def secrets() -> dict:
    """Settings from ``.streamlit/secrets.toml``; none when there is no such file."""
    try:
        return dict(st.secrets)
    except (FileNotFoundError, st.errors.StreamlitSecretNotFoundError):
        return {}


def load_settings() -> dict:
    return app_settings.load(secrets=secrets())


@st.cache_resource(show_spinner="Starting the collector…")
def runtime() -> Runtime:
    """The process-wide runtime, started on first use."""
    shared = build(load_settings())
    try:
        shared.collector.poll_once()  # the first hour of history, before the first page renders
    except Exception as error:  # the thread retries with backoff and the Status page shows it
        shared.collector.record_error(error)
    shared.collector.start()
    return shared
