import contextlib
import copy
import json
import time
from pathlib import Path

import pytest

from metrics.engine import Engine
from metrics.normalise import Rejects, normalise_all
from settings import SettingsError

DATA = Path(__file__).parent / "data"
APP = str(Path(__file__).parent.parent / "app.py")
STRATUS = DATA / "stratus-red-team"


def stratus(name: str) -> list[dict]:
    """The records of one Stratus Red Team technique file."""
    return json.loads((STRATUS / f"{name}.json").read_text())


def all_stratus() -> list[dict]:
    return [r for path in sorted(STRATUS.glob("*.json")) for r in json.loads(path.read_text())]


BASE_RECORD = {
    "eventVersion": "1.10",
    "userIdentity": {
        "type": "IAMUser",
        "principalId": "AIDAEXAMPLE",
        "arn": "arn:aws:iam::111122223333:user/alice",
        "accountId": "111122223333",
        "userName": "alice",
    },
    "eventTime": "2024-08-02T08:30:00Z",
    "eventSource": "sts.amazonaws.com",
    "eventName": "GetCallerIdentity",
    "awsRegion": "us-east-1",
    "sourceIPAddress": "198.51.100.7",
    "userAgent": "aws-cli/2.22.4",
    "requestParameters": None,
    "responseElements": None,
    "eventID": "00000000-0000-4000-8000-000000000000",
    "readOnly": True,
    "eventType": "AwsApiCall",
    "recipientAccountId": "111122223333",
}


def make_record(event_id: str, event_time: str, **fields) -> dict:
    """A valid record with the given eventID and eventTime; ``fields`` replace top-level keys
    (a value of ``...`` removes the key)."""
    record = copy.deepcopy(BASE_RECORD)
    record["eventID"] = event_id
    record["eventTime"] = event_time
    for key, value in fields.items():
        if value is ...:
            record.pop(key, None)
        else:
            record[key] = value
    return record


def batch_of(records):
    rejects = Rejects()
    batch = normalise_all(records, rejects)
    assert rejects.total == 0, rejects.summary()
    return batch


@pytest.fixture
def engine():
    return Engine(retention_seconds=None, seed=0)


@pytest.fixture
def start_app(tmp_path, monkeypatch):
    """Runs app.py in AppTest with the given settings (``INSIGHTS_*`` names in lower case),
    signed in as a user with a registered session unless ``signed_in=False``, the URL's query
    string ``query``; ``page`` switches to ``pages/<page>.py`` after the first run. The runtime is
    started and its collector's first poll (in its thread) awaited first, as a server that reports
    ready would have it; stops the
    collector afterwards."""
    from auth import users
    from auth.sessions import SessionRegistry, session_key
    from ui.runtime import reset as reset_runtime
    from ui.runtime import runtime

    state_dir = tmp_path / "state"
    user_file = str(state_dir / "users.yaml")
    started = []

    def start(
        page: str = "overview",
        signed_in: bool = True,
        session: dict | None = None,
        query: dict | None = None,
        **settings,
    ):
        from streamlit.testing.v1 import AppTest

        monkeypatch.setenv("INSIGHTS_POLL_SECONDS", "3600")  # the first poll is enough
        monkeypatch.setenv("INSIGHTS_STATE_DIR", str(state_dir))
        for name, value in settings.items():
            monkeypatch.setenv(f"INSIGHTS_{name.upper()}", str(value))
        reset_runtime()
        with contextlib.suppress(SettingsError):  # the app shows the error; that is what such a test checks
            assert runtime().collector.wait_ready(60), "the collector did not get ready within 60 s"
        at = AppTest.from_file(APP, default_timeout=60)
        if signed_in:
            if not started:

                def add_analyst(config):
                    entry = users.new_user("analyst", users.new_password())
                    entry["must_change_password"] = False
                    config["credentials"]["usernames"]["analyst"] = entry

                users.update(user_file, add_analyst, create=True)
            expires = time.time() + 3600
            key = session_key(expires)
            SessionRegistry(users.sessions_path(user_file)).register("analyst", key, expires)
            at.session_state["authentication_status"] = True
            at.session_state["username"] = "analyst"
            at.session_state["auth_session_key"] = key
            at.session_state["auth_file"] = user_file
        for name, value in (session or {}).items():
            at.session_state[name] = value
        at.query_params.update(query or {})  # the link the browser opened
        started.append(at)
        at.run()
        if page != "overview":
            at.switch_page(f"pages/{page}.py").run()
        return at

    yield start
    reset_runtime()
