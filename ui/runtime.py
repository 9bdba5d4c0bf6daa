"""One engine and one collector per server process, shared by every browser session."""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import orjson
import streamlit as st

import settings as app_settings
from collectors.alerts import Alerter, SnsSink, WebhookSink
from collectors.analyses import Detections, ScoreAlerts
from collectors.collector import Collector
from collectors.demo import DemoSource
from collectors.files import FileSource, RegionFilter
from collectors.state import StateStore
from metrics.detections import Detector
from metrics.dimensions import DimensionAnomalies
from metrics.engine import Engine
from metrics.triage import Triage


@dataclass(frozen=True)
class Runtime:
    settings: dict
    engine: Engine
    collector: Collector
    detector: Detector | None = None
    triage: Triage | None = None
    dimensions: DimensionAnomalies | None = None
    alerter: Alerter | None = None

    @property
    def is_demo(self) -> bool:
        return self.settings["source"] == "demo"


def _cloudtrail(values: dict, checkpoints: dict):
    from collectors import cloudtrail

    def build():
        pollers = cloudtrail.build_pollers(
            cloudtrail.sessions_for(values["role_arns"]),
            regions=values["regions"],
            lookback=values["lookback_hours"] * 3600,
            overlap=values["overlap_minutes"] * 60,
            checkpoints=checkpoints,
        )
        return cloudtrail.CloudTrailSource(pollers)

    return cloudtrail.DeferredSource("cloudtrail", build)


def _s3(values: dict, checkpoints: dict):
    import time

    from collectors import cloudtrail, s3

    if not values["s3_bucket"]:
        raise app_settings.SettingsError("INSIGHTS_S3_BUCKET must name the trail's bucket when the source is s3")

    def build():
        session = cloudtrail.sessions_for(values["role_arns"])[0]
        client = session.client("s3", config=cloudtrail.RETRY_CONFIG)
        source = s3.S3TrailSource(
            client,
            values["s3_bucket"],
            values["s3_prefix"],
            start=time.time() - values["lookback_hours"] * 3600,
            regions=values["regions"],
            seen=set(checkpoints.get("seen", [])),
        )
        source.checkpoints = lambda: {"seen": sorted(source.seen)}
        return source

    return cloudtrail.DeferredSource("s3", build)


def _athena(values: dict):
    import boto3

    from collectors import athena, cloudtrail

    client = boto3.client("athena", config=cloudtrail.RETRY_CONFIG)
    runner = athena.AthenaRunner(
        client,
        workgroup=values["athena_workgroup"],
        database=values["athena_database"],
        output_location=values["athena_output_location"],
    )
    accounts = tuple(a.strip() for a in values["athena_accounts"].split(",") if a.strip())
    table = f"{values['athena_database']}.{values['athena_table']}"
    lookback = values["athena_lookback_minutes"] * 60
    return athena.AthenaWindows(runner, table, regions=values["regions"], accounts=accounts, lookback=lookback)


def make_source(values: dict, checkpoints: dict | None = None):
    checkpoints = checkpoints or {}
    if values["source"] == "athena":
        return _athena(values)
    if values["source"] == "cloudtrail":
        return _cloudtrail(values, checkpoints)  # regions are chosen by the pollers themselves
    if values["source"] == "s3":
        return _s3(values, checkpoints)
    if values["source"] == "files":
        if not values["files_path"]:
            raise app_settings.SettingsError("INSIGHTS_FILES_PATH must name a folder or file when the source is files")
        source = FileSource(values["files_path"])
    else:
        source = DemoSource(seed=values["demo_seed"], rate=values["demo_rate"], incidents=values["demo_incidents"])
    return RegionFilter(source, values["regions"]) if values["regions"] else source


def build(values: dict) -> Runtime:
    """The engine with the saved history restored, its analyses (detections, per-dimension
    scores, alerts) and its collector, resuming from the saved checkpoints. The demo keeps
    nothing: it regenerates its history."""
    engine = Engine(retention_seconds=values["retention_hours"] * 3600, anomaly_engine=values["anomaly_engine"])
    store = None
    if values["source"] != "demo":
        store = StateStore(os.path.join(str(values["state_dir"]), "collector"), values["source"])
        store.restore(engine)
    source = make_source(values, store.checkpoints() if store else {})
    detector = Detector(learning_seconds=values["learning_hours"] * 3600)
    triage = Triage(os.path.join(str(values["state_dir"]), "detections.json"))
    dimensions = DimensionAnomalies(
        top_n=values["dimension_top_n"],
        anomaly_engine=values["anomaly_engine"],
        retention_seconds=values["retention_hours"] * 3600,
        trees=30,  # a smaller forest per series than the total's: about 30 series are scored
        sample_size=128,
    )
    if len(engine.buffer):  # restored history: the baseline of the analyses too
        snapshot = engine.buffer.snapshot()
        detector.observe(_raw_records(engine, snapshot))
        dimensions.add(snapshot.columns())
    alerter = _alerter(values)
    analyses = [Detections(detector, triage, alerter), dimensions]
    if alerter is not None:
        analyses.append(ScoreAlerts(engine, alerter))
    save_every = values["save_minutes"] * 60
    collector = Collector(
        source, engine, interval=values["poll_seconds"], store=store, save_every=save_every, analyses=analyses
    )
    return Runtime(values, engine, collector, detector, triage, dimensions, alerter)


def _raw_records(engine: Engine, snapshot) -> list[dict]:
    ids = [i for chunk in snapshot.chunks for i in chunk.ids.tolist()]
    return [orjson.loads(raw) for raw in engine.buffer.raw_records(ids) if raw is not None]


def _alerter(values: dict) -> Alerter | None:
    sinks = []
    if values["alert_webhook_url"]:
        sinks.append(WebhookSink(values["alert_webhook_url"]))
    if values["alert_sns_topic_arn"]:
        import boto3

        region = values["alert_sns_topic_arn"].split(":")[3]
        sinks.append(SnsSink(boto3.client("sns", region_name=region), values["alert_sns_topic_arn"]))
    if not sinks:
        return None
    return Alerter(
        sinks,
        min_severity=values["alert_min_severity"],
        score_threshold=values["alert_score_threshold"],
        state_path=os.path.join(str(values["state_dir"]), "alerts.json"),
        base_url=values["app_url"],
    ).start()


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
    if shared.settings["source"] in ("demo", "files"):
        try:
            shared.collector.poll_once()  # local and quick: the first page already has its history
        except Exception as error:  # the thread retries with backoff and the Status page shows it
            shared.collector.record_error(error)
    # AWS sources backfill in the thread while pages show the progress.
    shared.collector.start()
    atexit.register(shared.collector.stop)  # a clean shutdown (SIGTERM on ECS) saves the state
    return shared
