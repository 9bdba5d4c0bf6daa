"""Every setting of the app in one table: name, default and help.

Each is read from the environment variable ``INSIGHTS_<NAME>`` (upper case), e.g.
``INSIGHTS_RETENTION_HOURS=6``, or else from the same name in lower case in Streamlit's
secrets (``.streamlit/secrets.toml``, never committed). The environment wins. The README
lists them all; a test keeps it that way.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from auth.sso import AllowList, parse_allow
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


def _networks(text: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    for item in items:
        ipaddress.ip_network(item, strict=False)  # raises ValueError with the bad entry
    return items


def _lookback(text: str) -> float:
    hours = _at_least(float, 0)(text)
    if hours > 2160:
        raise ValueError(f"LookupEvents keeps 90 days (2160 hours), not {text}")
    return hours


def _regions(text: str) -> tuple[str, ...]:
    """``all`` (empty tuple) or a comma-separated list of region names."""
    names = tuple(sorted({part.strip() for part in text.split(",") if part.strip()}))
    if not names or names == ("all",):
        return ()
    for name in names:
        if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", name):
            raise ValueError(f"{name!r} is not a region name like eu-west-1")
    return names


def _accounts(text: str) -> tuple[str, ...]:
    """Comma-separated 12-digit AWS account ids."""
    ids = tuple(sorted({part.strip() for part in text.split(",") if part.strip()}))
    for account in ids:
        if not re.fullmatch(r"\d{12}", account):
            raise ValueError(f"{account!r} is not a 12-digit AWS account id")
    return ids


def _names(text: str) -> tuple[str, ...]:
    return tuple(sorted({part.strip().lower() for part in text.split(",") if part.strip()}))


SETTINGS = (
    Setting(
        "source",
        "demo",
        "Where events come from: `demo` (synthetic, no AWS account needed), `cloudtrail` (LookupEvents in every "
        "enabled region of each account), `s3` (a trail's log files in `INSIGHTS_S3_BUCKET`), `files` "
        "(CloudTrail files dropped into `INSIGHTS_FILES_PATH`, read as they appear), `eventbridge` (an SQS queue "
        "that EventBridge rules fill within seconds, `INSIGHTS_SQS_QUEUE_URL`) or `athena` (windows "
        "counted by Amazon Athena over an organisation trail's table, see `INSIGHTS_ATHENA_*`).",
        choices=("demo", "cloudtrail", "s3", "files", "eventbridge", "athena"),
    ),
    Setting("athena_workgroup", "primary", "For `athena`: the workgroup the queries run in (its result location)."),
    Setting("athena_database", "default", "For `athena`: the database of the trail's table."),
    Setting(
        "athena_table",
        "cloudtrail_records",
        "For `athena`: the table `python -m collectors athena-ddl` created over the trail.",
    ),
    Setting(
        "athena_output_location",
        "",
        "For `athena`: an `s3://` location for query results, if the workgroup does not set one.",
    ),
    Setting(
        "athena_accounts",
        "",
        "For `athena`: account ids to query, comma-separated (needed when the table injects the account); "
        "empty: every account the table projects.",
    ),
    Setting(
        "athena_lookback_minutes",
        20.0,
        "For `athena`: minutes of the latest windows re-queried and replaced on each refresh (without a "
        "queue), or that the forest waits for late log files (with one).",
        _positive(float),
    ),
    Setting(
        "athena_csv_above_kib",
        1024,
        "For `athena`: a result larger than this many KiB is read from its CSV in the query's S3 output "
        "location in one request, instead of a `GetQueryResults` call per 1,000 rows.",
        _at_least(int, 0),
    ),
    Setting(
        "athena_event_rows",
        1000,
        "For `athena`: the most events one drill-down query (a chart click, the explorer, a detection's "
        "events) returns; it reads only the day, region and account partitions the filter names.",
        _positive(int),
    ),
    Setting(
        "athena_top_k",
        100,
        "For `athena`: the per-user and per-API metrics come back in one-minute windows as the K largest "
        "rows of each minute and one `(other)` row for the rest, so totals stay exact; 0: every row, in "
        "10-second windows (large results at organisation scale).",
        _at_least(int, 0),
    ),
    Setting(
        "athena_queue_url",
        "",
        "For `athena`: an SQS queue announcing the trail's new log files (the trail's SNS notification "
        "subscribed to it, or the bucket's S3 event notifications): each file is counted once, when it "
        "arrives. Empty: the latest minutes are re-queried and replaced.",
    ),
    Setting(
        "role_arns",
        "",
        "For `cloudtrail` and `s3`: roles to assume, one set of pollers each, comma-separated, each "
        "`arn:aws:iam::ACCOUNT:role/NAME` optionally followed by `|EXTERNAL-ID`. Empty: only the default "
        "credentials (environment, profile, SSO, instance or task role).",
    ),
    Setting(
        "lookback_hours",
        1.0,
        "For `cloudtrail` and `s3`: hours of history read at the first start, newest first (at most 2160, "
        "LookupEvents' 90 days).",
        _lookback,
    ),
    Setting(
        "overlap_minutes",
        20.0,
        "For `cloudtrail`: minutes each poll re-reads, for events CloudTrail makes visible late.",
        _at_least(float, 0),
    ),
    Setting("s3_bucket", "", "For `s3`: the trail's bucket."),
    Setting("s3_prefix", "", "For `s3`: the key prefix before `AWSLogs/`, if the trail has one."),
    Setting(
        "sqs_queue_url",
        "",
        "For `eventbridge`: the URL of the SQS queue the EventBridge rules deliver to "
        "(`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`, see `deploy/eventbridge.yaml`).",
    ),
    Setting(
        "sqs_receivers",
        8,
        "For `eventbridge`: receives in flight at most while the queue is deep (one while it is not), "
        "10 messages each.",
        _positive(int),
    ),
    Setting(
        "eventbridge_backfill",
        "cloudtrail",
        "For `eventbridge`: what fills the history before the first start (`INSIGHTS_LOOKBACK_HOURS`) and an "
        "outage longer than the queue's retention: `cloudtrail` (LookupEvents), `s3` (the trail's files in "
        "`INSIGHTS_S3_BUCKET`) or `none`.",
        choices=("cloudtrail", "s3", "none"),
    ),
    Setting(
        "save_minutes",
        5.0,
        "Minutes between two saves of the events and the collector's checkpoints to the state folder, so a "
        "restart resumes with its history.",
        _positive(float),
    ),
    Setting(
        "files_path",
        "",
        "For `files`: a folder (searched recursively) or a file of CloudTrail records: trail files, JSON Lines, "
        "gzipped or not. A folder of Parquet or CSV part files holds windows the Spark job counted "
        "(`jobs/spark_pumps.py`): they are loaded as they are, and again whenever they change.",
    ),
    Setting(
        "regions",
        (),
        "Only events of these regions (their `awsRegion`) are collected, comma-separated, e.g. "
        "`us-east-1,eu-west-1`; `all` keeps every region.",
        _regions,
    ),
    Setting(
        "retention_hours",
        24.0,
        "Hours of events kept in memory; older ones are dropped. For `files` and `s3`, counted back from the "
        "newest event read.",
        _positive(float),
    ),
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
    Setting(
        "score_threshold",
        1.8,
        "Anomaly score from which a window is marked as unusual. Ordinary traffic mostly scores under 1.",
        _positive(float),
    ),
    Setting(
        "learning_hours",
        1.0,
        "First-seen detections (a new region, IP, API or client for a principal) start after this many hours of "
        "a principal's activity; before that it is learning.",
        _at_least(float, 0),
    ),
    Setting(
        "dimension_top_n",
        10,
        "Besides the total, the busiest this many services, principals and error codes get anomaly scores.",
        _positive(int),
    ),
    Setting(
        "org_accounts",
        (),
        "The organisation's own account ids, comma-separated: policies, shares and trusts that let them in do "
        "not count as opened to another account. Empty: every account but the event's own is outside.",
        _accounts,
    ),
    Setting(
        "log_expiry_days",
        7.0,
        "An S3 lifecycle rule deleting objects within this many days is detected (higher severity on a trail's "
        "bucket).",
        _positive(float),
    ),
    Setting(
        "expected_tools",
        (),
        "Offensive-tool user agents your team runs itself, comma-separated (e.g. `prowler,scoutsuite`): they do "
        "not fire the offensive-tool detection.",
        _names,
    ),
    Setting(
        "detection_group_minutes",
        10.0,
        "Matches of one per-event rule by one principal within this many minutes are one detection listing "
        "them all (retries, a run of similar calls); 0 gives one detection per event.",
        _at_least(float, 0),
    ),
    Setting(
        "sigma_path",
        "",
        "A folder of Sigma rules (`.yml`, logsource `product: aws`, `service: cloudtrail`) run beside the rule "
        "table; rules using what is not supported are refused with their reason on the Status page. Empty: none.",
    ),
    Setting(
        "alert_webhook_url",
        "",
        "Optional: a webhook (Slack-compatible JSON) that receives new detections and unusual scores. Keep it in "
        "secrets.toml: the URL is a credential.",
    ),
    Setting("alert_sns_topic_arn", "", "Optional: an Amazon SNS topic that receives the same alerts."),
    Setting(
        "alert_min_severity",
        "high",
        "Detections at or above this severity are alerted: info, low, medium, high or critical.",
        choices=("info", "low", "medium", "high", "critical"),
    ),
    Setting(
        "alert_score_threshold",
        3.0,
        "Anomaly scores of the total at or above this are alerted (once per window).",
        _positive(float),
    ),
    Setting("app_url", "", "The app's address, for links in alerts (e.g. https://insights.example.com)."),
    Setting("line_refresh_seconds", 10, "Seconds between two refreshes of the line charts.", _positive(int)),
    Setting("bar_refresh_seconds", 60, "Seconds between two refreshes of the bar charts and tables.", _positive(int)),
    Setting(
        "state_dir",
        "state",
        "Folder for the app's state (user file, login sessions, saved events, checkpoints). Relative paths are "
        "from the working directory.",
    ),
    Setting(
        "auth_file",
        "",
        "User file (bcrypt hashes and the cookie key). Empty: `users.yaml` in the state folder.",
    ),
    Setting(
        "session_days",
        0.5,
        "Days a login lasts (0.5: 12 hours) before the password is asked again; the server ends it then too, "
        "whatever the browser keeps.",
        _positive(float),
    ),
    Setting(
        "cookie_secure",
        False,
        "Mark the sign-in cookie `Secure`, so that the browser sends it only over HTTPS. Turn it on whenever the "
        "app is served over HTTPS (the container sets it).",
        _flag,
    ),
    Setting(
        "trusted_proxies",
        (),
        "Addresses or networks of the proxies in front of the app (e.g. `10.0.0.0/16` for a load balancer in "
        "the VPC), comma-separated. Only a connection from one of them may name the client in `X-Forwarded-For`; "
        "empty: the connection's own address is the client.",
        _networks,
    ),
    Setting(
        "metrics_endpoint",
        False,
        "Whether the server answers Streamlit's `/_stcore/metrics` (OpenMetrics counters of sessions and runs). "
        "Off: it answers 404, since anyone who reaches the port could read it.",
        _flag,
    ),
    Setting(
        "sso_allow",
        AllowList(),
        "Who may see the dashboard after signing in with the identity provider (see Single sign-on), "
        "comma-separated: e-mail addresses, `@domain` for a whole domain, `group:NAME` for a group claim. Empty: "
        "nobody signed in that way.",
        parse_allow,
    ),
    Setting(
        "sso_groups_claim",
        "groups",
        "The identity token's claim that lists the user's groups: `groups` (Okta, Entra ID), `cognito:groups` "
        "(Cognito).",
    ),
    Setting("demo_seed", 7, "Seed of the demo generator: the same seed gives the same events.", int),
    Setting("demo_rate", 4.0, "Demo events per second at the daily peak (14:00 UTC).", _positive(float)),
    Setting("demo_incidents", True, "Whether the demo stages its hourly incidents.", _flag),
)


class SettingsError(ValueError):
    pass


def load(environ: Mapping[str, str] | None = None, secrets: Mapping[str, object] | None = None) -> dict[str, object]:
    """The value of every setting: from the environment where set, else from ``secrets``
    (lower-case names), else its default."""
    environ = os.environ if environ is None else environ
    secrets = secrets or {}
    values = {}
    for setting in SETTINGS:
        text = environ.get(setting.variable)
        if (text is None or text == "") and setting.name in secrets:
            text = str(secrets[setting.name])
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


def auth_file(values: Mapping[str, object]) -> str:
    """Where the user file lives: ``auth_file`` if set, else ``users.yaml`` in the state folder."""
    return str(values["auth_file"] or os.path.join(str(values["state_dir"]), "users.yaml"))
