"""One engine and one collector per server process, shared by every browser session.

The runtime lives in this module, not in ``st.cache_resource``: any client, signed in or not,
can send Streamlit's ``clear_cache`` message, which empties every cached resource. A cached
runtime would then be built a second time beside the first one's still-running threads.
"""

from __future__ import annotations

import atexit
import os
import threading
from dataclasses import dataclass

import settings as app_settings
from collectors import memory
from collectors.alerts import Alerter, SnsSink, WebhookSink
from collectors.analyses import Detections, ScoreAlerts
from collectors.backlog import Spool
from collectors.collector import Collector
from collectors.demo import DemoSource
from collectors.files import FileSource, RegionFilter
from collectors.readiness import READY_FILE, Readiness
from collectors.state import StateStore
from metrics import search
from metrics.detections import Detector, rules
from metrics.detections.sigma import SigmaRules, load_folder
from metrics.dimensions import DimensionAnomalies
from metrics.engine import Engine
from metrics.triage import Triage
from ui import data
from ui.configuration import load_settings


@dataclass(frozen=True)
class Runtime:
    settings: dict
    engine: Engine
    collector: Collector
    detector: Detector | None = None
    triage: Triage | None = None
    dimensions: DimensionAnomalies | None = None
    alerter: Alerter | None = None
    sigma: SigmaRules | None = None
    detections: Detections | None = None  # the detector as the collector runs it, with its backlog

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


def _athena(values: dict, engine=None):
    import boto3

    from collectors import athena, cloudtrail

    client = boto3.client("athena", config=cloudtrail.RETRY_CONFIG)
    runner = athena.AthenaRunner(
        client,
        workgroup=values["athena_workgroup"],
        database=values["athena_database"],
        output_location=values["athena_output_location"],
        s3=boto3.client("s3", config=cloudtrail.RETRY_CONFIG),
        csv_above_bytes=values["athena_csv_above_kib"] * 1024,
    )
    accounts = tuple(a.strip() for a in values["athena_accounts"].split(",") if a.strip())
    table = f"{values['athena_database']}.{values['athena_table']}"
    lookback = values["athena_lookback_minutes"] * 60
    from collectors import athena_events

    # The pages' events come from small queries of their own (a runner apart: its own stats).
    drill_runner = athena.AthenaRunner(
        client,
        workgroup=values["athena_workgroup"],
        database=values["athena_database"],
        output_location=values["athena_output_location"],
    )
    data.on_demand = athena_events.AthenaEvents(
        drill_runner,
        table,
        regions=values["regions"],
        accounts=accounts,
        span_seconds=values["retention_hours"] * 3600,
        limit=values["athena_event_rows"],
        engine=engine,  # its windows' top K, for a click on "(other)"; the scope's choices
        top_k=athena_pumps(values)["top_k"],
    )
    scope = {"regions": values["regions"], "accounts": accounts, "lookback": lookback, **athena_pumps(values)}
    retention = values["retention_hours"] * 3600
    if values["athena_queue_url"]:
        from collectors import athena_files

        url = values["athena_queue_url"]
        # The windows added and the files counted survive a restart in the state folder.
        state = os.path.join(str(values["state_dir"]), "athena-windows")
        client = athena_files.make_queue_client(url)
        return athena_files.NewFileWindows(runner, table, client, url, state_dir=state, retention=retention, **scope)
    return athena.AthenaWindows(runner, table, retention=retention, **scope)


def athena_pumps(values: dict) -> dict:
    """The pumps an Athena source fills (``collectors.athena.source_pumps``) and its K, for the
    engine and the source alike."""
    from collectors.athena import source_pumps

    k = values["athena_top_k"]
    return {"pumps": source_pumps(k or None), "top_k": k or None}


def make_source(values: dict, checkpoints: dict | None = None, engine: Engine | None = None):
    checkpoints = checkpoints or {}
    if values["source"] == "athena":
        return _athena(values, engine)
    if values["source"] == "cloudtrail":
        return _cloudtrail(values, checkpoints)  # regions are chosen by the pollers themselves
    if values["source"] == "s3":
        return _s3(values, checkpoints)
    if values["source"] == "eventbridge":
        from collectors import eventbridge

        return eventbridge.from_settings(values, checkpoints)
    if values["source"] == "files":
        if not values["files_path"]:
            raise app_settings.SettingsError("INSIGHTS_FILES_PATH must name a folder or file when the source is files")
        from collectors import window_files

        if window_files.holds_windows(values["files_path"]):  # the Spark job's windows, not trail files
            return window_files.WindowFiles(values["files_path"])
        source = FileSource(values["files_path"], checkpoints=checkpoints)
    else:
        source = DemoSource(seed=values["demo_seed"], rate=values["demo_rate"], incidents=values["demo_incidents"])
    return RegionFilter(source, values["regions"]) if values["regions"] else source


def build(values: dict) -> Runtime:
    """The engine, its analyses (detections, per-dimension scores, alerts) and its collector,
    resuming from the saved checkpoints. Nothing slow happens here: the collector's thread
    restores the saved history (the demo keeps none: it regenerates it) before its first poll."""
    pumps = {"pumps": athena_pumps(values)["pumps"]} if values["source"] == "athena" else {}
    engine = Engine(
        retention_seconds=values["retention_hours"] * 3600, anomaly_engine=values["anomaly_engine"], **pumps
    )
    data.on_demand = None  # until the source says it serves events itself
    store = None
    if values["source"] != "demo":
        store = StateStore(os.path.join(str(values["state_dir"]), "collector"), values["source"])
    source = make_source(values, store.checkpoints() if store else {}, engine)
    table = rules(
        org_accounts=values["org_accounts"],
        log_expiry_days=values["log_expiry_days"],
        expected_tools=values["expected_tools"],
    )
    sigma = load_folder(str(values["sigma_path"]))
    detector = Detector(
        (*table, *sigma.rules),
        learning_seconds=values["learning_hours"] * 3600,
        group_seconds=values["detection_group_minutes"] * 60,
    )
    triage = Triage(os.path.join(str(values["state_dir"]), "detections.json"))
    dimensions = DimensionAnomalies(
        top_n=values["dimension_top_n"],
        anomaly_engine=values["anomaly_engine"],
        retention_seconds=values["retention_hours"] * 3600,
        trees=30,  # a smaller forest per series than the total's: about 30 series are scored
        sample_size=128,
    )
    alerter = _alerter(values)
    spool = Spool(os.path.join(str(values["state_dir"]), "detections-backlog"))
    detections = Detections(detector, triage, alerter, spool=spool)
    analyses = [detections, dimensions]
    if alerter is not None:
        analyses.append(ScoreAlerts(engine, alerter))
    save_every = values["save_minutes"] * 60
    readiness = Readiness(os.path.join(str(values["state_dir"]), READY_FILE))
    readiness.write(ready=False)
    collector = Collector(
        source,
        engine,
        interval=values["poll_seconds"],
        store=store,
        save_every=save_every,
        analyses=analyses,
        warm_up=(lambda c: _restore(c, store, detections, dimensions)) if store is not None else None,
        on_ready=lambda: readiness.write(ready=True),
        retain_from_newest=values["source"] in ("files", "s3"),
    )
    # The explorer's word search reads the index, not every record; built once a backlog is in.
    search.keep_indexed(engine.buffer, wait=collector.reading_backlog)
    return Runtime(values, engine, collector, detector, triage, dimensions, alerter, sigma, detections)


def _restore(collector: Collector, store: StateStore, detections: Detections, dimensions: DimensionAnomalies) -> None:
    """The saved events back into the engine, a row group at a time; the detections read them
    afterwards, behind the charts (``Detections.observe_later``), as they read a large poll."""
    engine = collector.engine

    def progress(share: float) -> None:
        collector.start_progress = share

    def observe(batch, result) -> None:
        detections.observe_later(batch, result.positions)

    collector.starting = "Restoring the saved history"
    store.restore(engine, progress=progress, on_batch=observe, from_newest=collector.retain_from_newest)
    if store.restored_newest is not None:  # the retention goes on counting from the history's newest event
        held = collector.health.newest_event
        collector.health.newest_event = max(store.restored_newest, held or store.restored_newest)
    dimensions.add(engine.buffer.snapshot().columns())
    memory.trim()


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


_runtime: Runtime | None = None
_lock = threading.Lock()


def runtime() -> Runtime:
    """The process-wide runtime, started on first use; raises ``SettingsError`` (and starts
    nothing) while the settings are invalid."""
    global _runtime
    shared = _runtime
    if shared is not None:
        return shared
    with _lock:
        if _runtime is None:
            _runtime = _start(build(load_settings()))
        return _runtime


def _start(shared: Runtime) -> Runtime:
    # The restore and the first poll run in the thread while pages show their progress: a
    # day of a busy account takes minutes, and the sign-in page must not wait for it.
    shared.collector.start()
    atexit.register(shared.collector.stop)  # a clean shutdown (SIGTERM on ECS) saves the state
    return shared


def reset() -> None:
    """Stops the runtime's threads and forgets it, so that the next ``runtime()`` builds a new
    one from the current settings. For tests; a server never needs it."""
    global _runtime
    with _lock:
        shared, _runtime = _runtime, None
    data.on_demand = None
    if shared is not None:
        shared.collector.stop()
        if shared.alerter is not None:
            shared.alerter.stop()
