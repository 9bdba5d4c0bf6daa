"""The login's pure parts: the user file, the session registry, the throttle and the command line."""

import doctest
import io
import os
import re
import stat
import subprocess
import sys
import threading
from pathlib import Path

import jwt
import pytest
import yaml

import auth.sessions
import auth.throttle
from auth import users
from auth.__main__ import main
from auth.sessions import SessionRegistry, read_cookie, session_key
from auth.throttle import SignInThrottle, Throttle, client_key

ROOT = Path(__file__).parent.parent


@pytest.fixture(autouse=True)
def cheap_bcrypt(monkeypatch):
    """bcrypt at its lowest cost, so that tests hash fast; production keeps the default (12)."""
    import bcrypt

    gensalt = bcrypt.gensalt
    monkeypatch.setattr(bcrypt, "gensalt", lambda rounds=4, prefix=b"2b": gensalt(4, prefix))


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def password_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "password:" in line]


# The user file


def test_bootstrap_creates_a_private_file_with_a_bcrypt_hash_not_the_password(tmp_path, capsys):
    from streamlit_authenticator import Hasher

    path = tmp_path / "state" / "users.yaml"
    password = users.bootstrap(str(path))
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    text = path.read_text()
    assert password not in text
    config = yaml.safe_load(text)
    admin = config["credentials"]["usernames"]["admin"]
    assert Hasher.is_hash(admin["password"])
    assert Hasher.check_pw(password, admin["password"])
    assert admin == {
        "name": "admin",
        "password": admin["password"],
        "must_change_password": True,
        "failed_login_attempts": 0,
        "logged_in": False,
    }
    assert config["cookie"]["name"] == users.COOKIE_NAME
    assert re.fullmatch(r"[0-9a-f]{64}", config["cookie"]["key"])
    lines = password_lines(capsys.readouterr().err)
    assert lines == [
        f"Account Activity Insights: created user admin with one-time password: {password} "
        "(you must change it at first sign-in)"
    ]


def test_a_second_bootstrap_changes_nothing_and_prints_nothing(tmp_path, capsys):
    path = tmp_path / "users.yaml"
    assert users.bootstrap(str(path)) is not None
    before = path.read_text()
    assert users.bootstrap(str(path)) is None
    assert path.read_text() == before
    assert len(password_lines(capsys.readouterr().err)) == 1


def test_each_install_draws_its_own_password_and_cookie_key(tmp_path):
    quiet = io.StringIO()
    first, second = tmp_path / "a" / "users.yaml", tmp_path / "b" / "users.yaml"
    assert users.bootstrap(str(first), log=quiet) != users.bootstrap(str(second), log=quiet)
    assert users.read(str(first))["cookie"]["key"] != users.read(str(second))["cookie"]["key"]


def test_concurrent_bootstraps_create_one_password(tmp_path):
    path = str(tmp_path / "state" / "users.yaml")
    log = io.StringIO()
    start = threading.Barrier(8)
    results = []

    def boot():
        start.wait()
        results.append(users.bootstrap(path, log=log))

    threads = [threading.Thread(target=boot) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    created = [password for password in results if password is not None]
    assert len(created) == 1
    assert len(password_lines(log.getvalue())) == 1
    stored = users.read(path)["credentials"]["usernames"]["admin"]["password"]
    assert users.check_password(created[0], stored)


def test_no_password_or_cookie_key_is_kept_in_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert not [name for name in tracked.splitlines() if name.endswith(("users.yaml", "sessions.json"))]
    assert "state/" in (ROOT / ".gitignore").read_text().splitlines()


def test_hashes_use_bcrypts_default_cost_outside_tests(monkeypatch):
    monkeypatch.undo()
    assert users.hash_password("x" * 12).startswith("$2b$12$")


def test_a_damaged_user_file_is_reported_not_used(tmp_path):
    path = tmp_path / "users.yaml"
    with pytest.raises(users.UserFileError, match="no user file"):
        users.read(str(path))
    path.write_text("cookie: [unclosed")
    with pytest.raises(users.UserFileError, match="not valid YAML"):
        users.read(str(path))
    path.write_text("credentials: {usernames: {}}\n")
    with pytest.raises(users.UserFileError, match="cookie"):
        users.read(str(path))


def test_update_user_changes_only_the_given_fields_of_an_existing_user(tmp_path):
    path = str(tmp_path / "users.yaml")
    users.bootstrap(path, log=io.StringIO())
    before = users.read(path)["credentials"]["usernames"]["admin"]
    assert users.update_user(path, "admin", {"logged_in": True})
    after = users.read(path)["credentials"]["usernames"]["admin"]
    assert after == {**before, "logged_in": True}
    assert not users.update_user(path, "nobody", {"logged_in": True})
    assert mode(path) == 0o600


@pytest.mark.parametrize(
    ("password", "ok"),
    [("a" * 11, False), ("a" * 12, True), ("é" * 36, True), ("é" * 37, False), ("a" * 73, False)],
)
def test_a_new_password_needs_12_characters_and_at_most_72_bytes(password, ok):
    assert (users.password_problem(password) is None) is ok


@pytest.mark.parametrize(
    ("name", "ok"),
    [("admin", True), ("j.doe_2-x", True), ("a" * 64, True), ("a" * 65, False), ("", False), ("Admin", False)]
    + [("a b", False), ("ünï", False), ("a/b", False)],
)
def test_user_names_are_lower_case_letters_digits_dot_underscore_dash(name, ok):
    assert users.valid_name(name) is ok


# The session registry


@pytest.fixture
def clock():
    now = [1_000.0]
    return now


@pytest.fixture
def registry(tmp_path, clock):
    return SessionRegistry(str(tmp_path / "sessions.json"), clock=lambda: clock[0])


def test_a_registered_session_is_valid_until_revoked(registry):
    registry.register("alice", "k1", 2_000.0)
    assert registry.valid("alice", "k1")
    assert not registry.valid("alice", "k2")
    assert not registry.valid("bob", "k1")
    assert not registry.valid("alice", None)
    registry.revoke("alice", "k1")
    assert not registry.valid("alice", "k1")


def test_revoking_a_user_ends_all_its_sessions_but_the_one_kept(registry):
    for key in ("k1", "k2", "k3"):
        registry.register("alice", key, 2_000.0)
    registry.register("bob", "k1", 2_000.0)
    assert registry.revoke_user("alice", keep="k2") == 2
    assert [registry.valid("alice", key) for key in ("k1", "k2", "k3")] == [False, True, False]
    assert registry.valid("bob", "k1")
    assert registry.revoke_user("alice") == 1
    assert registry.count("alice") == 0


def test_a_session_expires_with_its_cookie(registry, clock):
    registry.register("alice", "k1", 1_500.0)
    clock[0] = 1_499.0
    assert registry.valid("alice", "k1")
    clock[0] = 1_500.0
    assert not registry.valid("alice", "k1")
    registry.register("alice", "k2", 3_000.0)  # a write prunes the expired ones
    assert "k1" not in Path(registry.path).read_text()


def test_sessions_persist_across_registries_in_a_private_file(registry, tmp_path, clock):
    registry.register("alice", "k1", 2_000.0)
    other = SessionRegistry(registry.path, clock=lambda: clock[0])
    assert other.valid("alice", "k1")
    other.revoke("alice", "k1")
    assert not registry.valid("alice", "k1")
    assert mode(registry.path) == 0o600


def test_a_damaged_registry_honours_no_session(registry):
    registry.register("alice", "k1", 2_000.0)
    Path(registry.path).write_text("{not json")
    assert not registry.valid("alice", "k1")


def test_the_session_key_survives_the_cookies_jwt_round_trip():
    exp_date = 1795862217.461962
    token = jwt.encode({"username": "alice", "exp_date": exp_date}, "k" * 64, algorithm="HS256")
    decoded = jwt.decode(token, "k" * 64, algorithms=["HS256"])
    assert session_key(decoded["exp_date"]) == session_key(exp_date) == "1795862217.461962"


# The throttle


@pytest.fixture
def throttle(clock):
    return Throttle(clock=lambda: clock[0])


KEYS = ("user:alice", "client:203.0.113.9")


def fail(throttle, times, keys=KEYS):
    for _ in range(times):
        throttle.failed(keys)


def test_five_failures_are_free_then_a_cooldown_of_30_s(throttle):
    fail(throttle, 4)
    assert throttle.wait(KEYS) == 0.0
    fail(throttle, 1)
    assert throttle.wait(KEYS) == 30.0
    assert throttle.wait(["user:alice"]) == 30.0
    assert throttle.wait(["client:203.0.113.9"]) == 30.0
    assert throttle.wait(["user:bob", "client:198.51.100.1"]) == 0.0


def test_the_cooldown_doubles_per_further_failure_up_to_15_minutes(throttle, clock):
    fail(throttle, 5)
    waits = []
    for _ in range(8):
        clock[0] += throttle.wait(KEYS)  # the next attempt comes as soon as it is allowed
        fail(throttle, 1)
        waits.append(throttle.wait(KEYS))
    assert waits == [60.0, 120.0, 240.0, 480.0, 900.0, 900.0, 900.0, 900.0]


def test_nobody_is_locked_out_for_good(throttle, clock):
    fail(throttle, 5)
    for _ in range(2_000):  # a long attack, one failure per cooldown
        clock[0] += throttle.wait(KEYS)
        fail(throttle, 1)
    assert throttle.wait(KEYS) == 900.0
    clock[0] += 900.0
    assert throttle.wait(KEYS) == 0.0


def test_a_success_clears_the_user_name_but_not_the_client(throttle):
    fail(throttle, 5)
    throttle.succeeded(["user:alice"])
    assert throttle.wait(["user:alice"]) == 0.0
    assert throttle.wait(["client:203.0.113.9"]) == 30.0
    fail(throttle, 1, ["user:alice"])
    assert throttle.wait(["user:alice"]) == 0.0  # five free failures again


def test_a_key_quiet_for_an_hour_starts_afresh(throttle, clock):
    fail(throttle, 5)
    clock[0] += 3_600.0
    fail(throttle, 1)
    assert throttle.wait(KEYS) == 0.0


def test_the_throttle_counts_failures_from_many_threads(throttle):
    threads = [threading.Thread(target=fail, args=(throttle, 50)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert throttle._records["user:alice"].failures == 400


def test_the_client_is_the_connection_unless_it_is_a_trusted_proxy():
    assert client_key(["203.0.113.9"], "198.51.100.7") == "198.51.100.7"  # anyone can write the header
    assert client_key(["203.0.113.9"], None) == "unknown"
    assert client_key([], object()) == "unknown"
    trusted = ("10.0.0.0/16",)
    assert client_key(["203.0.113.9"], "198.51.100.7", trusted) == "198.51.100.7"
    assert client_key(["192.0.2.1, 203.0.113.9, 10.0.5.5"], "10.0.0.2", trusted) == "203.0.113.9"
    assert client_key(["203.0.113.9", "198.51.100.7 , "], "10.0.0.2", trusted) == "198.51.100.7"
    assert client_key([" "], "10.0.0.2", trusted) == "10.0.0.2"
    assert client_key(["203.0.113.9"], None, ("127.0.0.1",)) == "203.0.113.9"  # a proxy on this machine


def test_failures_from_elsewhere_never_lock_the_owner_of_a_name_out_for_long(clock):
    throttle = SignInThrottle(clock=lambda: clock[0])
    for _ in range(2_000):  # an attacker guessing admin's password, as fast as allowed
        clock[0] += throttle.wait("admin", "203.0.113.9")
        throttle.failed("admin", "203.0.113.9")
    assert throttle.wait("admin", "203.0.113.9") == 900.0  # the attacker waits long
    assert throttle.wait("admin", "198.51.100.7") <= 10.0  # the owner, from elsewhere, a short delay
    assert throttle.wait("alice", "198.51.100.7") == 0.0
    throttle.failed("admin", "198.51.100.7")  # the owner's typo does not double anything
    clock[0] += 10.0
    assert throttle.wait("admin", "198.51.100.7") == 0.0


def test_a_client_failing_many_names_is_slowed_down_itself(clock):
    throttle = SignInThrottle(clock=lambda: clock[0])
    for name in ("a", "b", "c", "d", "e"):
        throttle.failed(name, "203.0.113.9")
    assert throttle.wait("f", "203.0.113.9") == 30.0
    assert throttle.wait("f", "198.51.100.7") == 0.0


@pytest.mark.parametrize("module", [auth.throttle, auth.sessions])
def test_docstring_examples_hold(module):
    assert doctest.testmod(module).failed == 0


# The command line


@pytest.fixture
def user_file(tmp_path, monkeypatch):
    """A user file found through the app's settings, away from any secrets.toml."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("INSIGHTS_AUTH_FILE", raising=False)
    monkeypatch.setenv("INSIGHTS_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state" / "users.yaml"


def printed_password(text: str) -> str:
    return re.search(r"password: (\S+)", text).group(1)


def test_add_prints_a_one_time_password_and_stores_its_hash(user_file, capsys):
    users.bootstrap(str(user_file), log=io.StringIO())
    assert main(["users", "add", "alice"]) == 0
    password = printed_password(capsys.readouterr().out)
    assert len(password) >= 16
    alice = users.read(str(user_file))["credentials"]["usernames"]["alice"]
    assert users.check_password(password, alice["password"])
    assert alice["must_change_password"] is True
    assert password not in user_file.read_text()
    assert mode(user_file) == 0o600


def test_add_creates_the_user_file_if_there_is_none(user_file, capsys):
    assert main(["users", "add", "alice"]) == 0
    config = users.read(str(user_file))
    assert list(config["credentials"]["usernames"]) == ["alice"]
    assert re.fullmatch(r"[0-9a-f]{64}", config["cookie"]["key"])


def test_adding_an_existing_user_or_a_bad_name_exits_2(user_file, capsys):
    users.bootstrap(str(user_file), log=io.StringIO())
    before = user_file.read_text()
    assert main(["users", "add", "admin"]) == 2
    assert "admin already exists" in capsys.readouterr().err
    assert main(["users", "add", "Bad Name"]) == 2
    assert "not a valid user name" in capsys.readouterr().err
    assert user_file.read_text() == before


def test_reset_gives_a_new_one_time_password_and_ends_the_sessions(user_file, capsys):
    old = users.bootstrap(str(user_file), log=io.StringIO())
    users.update_user(str(user_file), "admin", {"must_change_password": False, "failed_login_attempts": 3})
    registry = SessionRegistry(users.sessions_path(str(user_file)))
    registry.register("admin", "k1", 4_000_000_000.0)
    assert main(["users", "reset", "admin"]) == 0
    new = printed_password(capsys.readouterr().out)
    admin = users.read(str(user_file))["credentials"]["usernames"]["admin"]
    assert users.check_password(new, admin["password"]) and not users.check_password(old, admin["password"])
    assert admin["must_change_password"] is True
    assert admin["failed_login_attempts"] == 0
    assert not registry.valid("admin", "k1")


def test_remove_deletes_the_user_and_ends_its_sessions(user_file, capsys):
    users.bootstrap(str(user_file), log=io.StringIO())
    main(["users", "add", "alice"])
    registry = SessionRegistry(users.sessions_path(str(user_file)))
    registry.register("alice", "k1", 4_000_000_000.0)
    assert main(["users", "remove", "alice"]) == 0
    assert "alice" not in users.read(str(user_file))["credentials"]["usernames"]
    assert not registry.valid("alice", "k1")


def test_reset_or_remove_of_an_unknown_user_exits_2(user_file, capsys):
    users.bootstrap(str(user_file), log=io.StringIO())
    for command in ("reset", "remove"):
        assert main(["users", command, "nobody"]) == 2
        assert "no user nobody" in capsys.readouterr().err


def test_list_shows_each_user_with_pending_changes_and_sessions(user_file, capsys):
    users.bootstrap(str(user_file), log=io.StringIO())
    main(["users", "add", "alice"])
    users.update_user(str(user_file), "alice", {"must_change_password": False})
    SessionRegistry(users.sessions_path(str(user_file))).register("alice", "k1", 4_000_000_000.0)
    capsys.readouterr()
    assert main(["users", "list"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "admin\tmust change password\t0 sessions",
        "alice\tactive\t1 session",
    ]


def test_commands_without_a_user_file_exit_2(user_file, capsys):
    assert main(["users", "list"]) == 2
    assert "no user file" in capsys.readouterr().err
    assert not user_file.exists()


def test_the_file_comes_from_the_settings_or_the_command_line(tmp_path, user_file, monkeypatch, capsys):
    elsewhere = tmp_path / "elsewhere.yaml"
    assert main(["users", "add", "alice", "--file", str(elsewhere)]) == 0
    assert main(["--file", str(elsewhere), "users", "add", "bob"]) == 0
    assert set(users.read(str(elsewhere))["credentials"]["usernames"]) == {"alice", "bob"}
    assert not user_file.exists()
    monkeypatch.setenv("INSIGHTS_AUTH_FILE", str(tmp_path / "named.yaml"))
    assert main(["users", "add", "carol"]) == 0
    assert "carol" in users.read(str(tmp_path / "named.yaml"))["credentials"]["usernames"]


def test_python_dash_m_auth_runs_the_command_line(tmp_path):
    path = tmp_path / "users.yaml"
    run = [sys.executable, "-m", "auth", "users"]
    added = subprocess.run([*run, "add", "alice", "--file", str(path)], cwd=ROOT, capture_output=True, text=True)
    assert added.returncode == 0, added.stderr
    assert len(password_lines(added.stdout)) == 1
    unknown = subprocess.run([*run, "reset", "bob", "--file", str(path)], cwd=ROOT, capture_output=True, text=True)
    assert unknown.returncode == 2
    assert "no user bob" in unknown.stderr


def _unsigned(claims: dict) -> str:
    import base64
    import json as _json

    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(_json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


@pytest.mark.parametrize(
    "token",
    [
        _unsigned({"username": "admin", "exp_date": 4e9}),  # alg none
        jwt.encode({"username": "admin", "exp_date": 4e9}, "another key", algorithm="HS256"),
        jwt.encode({"username": "admin", "exp_date": 4e9}, "k" * 64, algorithm="HS512"),
        jwt.encode({"username": "admin"}, "k" * 64, algorithm="HS256"),
        jwt.encode({"username": ["admin"], "exp_date": 4e9}, "k" * 64, algorithm="HS256"),
        jwt.encode({"username": "admin", "exp_date": "soon"}, "k" * 64, algorithm="HS256"),
        "not a token",
        "",
        None,
    ],
)
def test_a_forged_or_malformed_cookie_is_no_login(token):
    assert read_cookie(token, "k" * 64) is None


def test_a_cookie_signed_with_the_install_key_carries_its_login():
    token = jwt.encode({"username": "admin", "exp_date": 4e9}, "k" * 64, algorithm="HS256")
    assert read_cookie(token, "k" * 64) == {"username": "admin", "exp_date": 4e9}
