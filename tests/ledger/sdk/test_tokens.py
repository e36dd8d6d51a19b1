"""API tokens: stored hashed (0600), shown once, scoped, expiring, revocable; the CLI never prints a stored token."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import stat

import pytest
from typer.testing import CliRunner

from ledger.errors import ValidationError
from ledger.sdk.home import Home
from ledger.sdk.tokens import DEFAULT_TTL_US, TokenStore, parse_ttl, token_id_of
from ledger.units import US_PER_DAY, US_PER_HOUR
from processors.cli import build_app

NOW = 1_800_000_000_000_000


@pytest.fixture
def store(tmp_path):
    s = TokenStore(tmp_path / "state" / "tokens.sqlite")
    yield s
    s.close()


def test_the_file_holds_only_a_hash_and_is_private(store, tmp_path):
    issued = store.create(agent="alice", scopes=["ingest"], now_us=NOW)
    path = tmp_path / "state" / "tokens.sqlite"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = b"".join(p.read_bytes() for p in path.parent.iterdir() if p.name.startswith("tokens.sqlite"))
    secret = issued.token.rsplit("_", 1)[1]
    assert secret.encode() not in raw and issued.token.encode() not in raw
    row = sqlite3.connect(path).execute("SELECT sha256 FROM tokens").fetchone()
    assert row[0] == hashlib.sha256(issued.token.encode()).hexdigest()


def test_authenticate_accepts_only_the_exact_live_token(store):
    issued = store.create(agent="alice", scopes=["ingest", "read"], ttl_us=US_PER_HOUR, now_us=NOW)
    info = store.authenticate(issued.token, NOW + 1)
    assert info is not None and info.agent == "alice" and info.scopes == ("ingest", "read") and not info.operator
    tampered = issued.token[:-1] + ("A" if issued.token[-1] != "A" else "B")
    assert store.authenticate(tampered, NOW + 1) is None
    assert store.authenticate("tlk_" + "0" * 12 + "_" + "x" * 43, NOW) is None  # well formed, unknown
    assert store.authenticate("Bearer nonsense", NOW) is None
    assert store.authenticate("x" * 10_000, NOW) is None
    assert store.authenticate(issued.token, NOW + US_PER_HOUR) is None  # expired at its expiry
    assert store.get(token_id_of(issued.token)).state(NOW + US_PER_HOUR) == "expired"


def test_revoked_token_is_refused(store):
    issued = store.create(agent="bob", now_us=NOW)
    assert store.authenticate(issued.token, NOW) is not None
    info = store.revoke(issued.info.token_id, now_us=NOW + 5)
    assert info.revoked_us == NOW + 5 and info.state(NOW + 6) == "revoked"
    assert store.authenticate(issued.token, NOW + 6) is None
    assert store.revoke(issued.info.token_id, now_us=NOW + 9).revoked_us == NOW + 5  # the first revocation stays


def test_operator_token_has_every_scope_and_no_agent(store):
    issued = store.create(agent=None, operator=True, ttl_us=None, now_us=NOW)
    assert issued.info.operator and issued.info.agent is None and set(issued.info.scopes) == {"ingest", "reserve",
                                                                                              "read"}
    assert issued.info.expires_us is None and store.authenticate(issued.token, NOW + 100 * US_PER_DAY) is not None


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"agent": None}, "agent"),
    ({"agent": "../etc"}, "agent"),
    ({"agent": "alice", "scopes": ["ingest", "admin"]}, "scopes"),
    ({"agent": "alice", "scopes": [""]}, "scopes"),
    ({"agent": "alice", "rate_per_s": 0}, "rate"),
    ({"agent": "alice", "rate_per_s": float("nan")}, "rate"),
    ({"agent": "alice", "rate_per_s": True}, "rate"),
    ({"agent": "alice", "operator": True}, "agent"),
    ({"agent": "alice", "note": "n" * 201}, "note"),
])
def test_bad_requests_name_the_field_and_create_nothing(store, kwargs, field):
    with pytest.raises(ValidationError) as e:
        store.create(now_us=NOW, **kwargs)
    assert e.value.field == field
    assert store.list() == []


def test_ttl_parsing():
    assert parse_ttl("90d") == 90 * US_PER_DAY and parse_ttl("12h") == 12 * US_PER_HOUR and parse_ttl("never") is None
    for bad in ("", "0d", "-1d", "1w", "10", "99999999d", "1.5h"):
        with pytest.raises(ValidationError) as e:
            parse_ttl(bad)
        assert e.value.field == "expires"
    assert DEFAULT_TTL_US == 90 * US_PER_DAY


def test_cli_prints_the_token_once_and_never_again(tmp_path):
    home = Home.init(tmp_path / "h")
    runner = CliRunner()
    made = runner.invoke(build_app(), ["token", "create", "--agent", "alice", "--scopes", "ingest,read", "--home",
                                       str(home.path), "--json"])
    assert made.exit_code == 0, made.output
    token = json.loads(made.stdout)["token"]
    store = TokenStore(home.tokens_file)
    try:
        assert store.authenticate(token, store.list()[0].created_us + 1) is not None
    finally:
        store.close()
    listed = runner.invoke(build_app(), ["token", "list", "--home", str(home.path), "--json"])
    assert listed.exit_code == 0 and token not in listed.output and token.rsplit("_", 1)[1] not in listed.output
    (row,) = json.loads(listed.stdout)
    assert row["agent"] == "alice" and row["scopes"] == ["ingest", "read"] and row["state"] == "active"
    revoked = runner.invoke(build_app(), ["token", "revoke", row["token_id"], "--home", str(home.path), "--json"])
    assert revoked.exit_code == 0 and json.loads(revoked.stdout)["state"] == "revoked"
    bad = runner.invoke(build_app(), ["token", "create", "--agent", "alice", "--scopes", "root", "--home",
                                      str(home.path)])
    assert bad.exit_code == 2 and "scopes" in bad.output and "root" in bad.output
