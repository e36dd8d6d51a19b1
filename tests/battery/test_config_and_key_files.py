"""Battery, classes "config files" and "key files": a home whose config.json or key file is bad.

Config cases rewrite ``<home>/config.json`` (restored after each case) and run two real commands,
``emit`` and ``verify``: each must exit 3 (home problem) naming the config field and the bad value
(or 2 where the value is a well-formed but unusable one, e.g. an unknown log URL scheme), and append
nothing. Key cases damage ``<home>/keys/alice.key`` (restored after each case): ``load_key`` raises
``KeyFileError`` (or ``HomeError`` for a key of another signer) with the path, ``emit`` exits 3 without
printing the secret seed, and nothing is appended. A well-formed key the operator never registered is
refused by the key ring (exit 1, ``unknown_key``), still appending nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.errors import HomeError, KeyFileError
from ledger.integrity.keys import SigningKey, load_key
from ledger.sdk.home import Home
from ledger.testing.homes import make_home

from .support import cli, log_records


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    return make_home(tmp_path_factory.mktemp("battery-files") / "home", agents=("alice", "bob"))


# ------------------------------------------------------------------------------------------ config files

Config = dict[str, Any]


def drop(key: str) -> Callable[[Config], Any]:
    return lambda c: {k: v for k, v in c.items() if k != key}


def put(key: str, value: Any) -> Callable[[Config], Any]:
    return lambda c: c | {key: value}


# (new config text or a function of the good config, exit code, texts the message must show)
CONFIG_CASES = [
    pytest.param("", 3, ["config.json is malformed", "Expecting value"], id="empty"),
    pytest.param("\x00\xffzz", 3, ["config.json is malformed"], id="binary"),
    pytest.param('{"version": 1, "log": ', 3, ["config.json is malformed"], id="truncated"),
    pytest.param("[]", 3, ["config.json is malformed"], id="array"),
    pytest.param("null", 3, ["config.json is malformed"], id="null"),
    pytest.param(drop("version"), 3, ["config.json is malformed", "version"], id="no-version"),
    pytest.param(put("version", 99), 3, ["config.json is malformed", "version"], id="future-version"),
    pytest.param(drop("log"), 3, ["config.json is malformed", "log"], id="no-log"),
    pytest.param(put("log", 123), 3, ["log=123"], id="log-not-a-string"),
    pytest.param(put("log", ""), 3, ["log=''"], id="log-empty"),
    pytest.param(put("log", "ftp://example"), 2, ["log='ftp://example'"], id="log-unknown-scheme"),
    pytest.param(drop("operators"), 3, ["config.json is malformed", "operators"], id="no-operators"),
    pytest.param(put("operators", {}), 3, ["operators={}"], id="operators-empty"),
    pytest.param(put("operators", ["a"]), 3, ["operators=['a']"], id="operators-array"),
    pytest.param(put("operators", {"operator": "zz"}), 3, ["operators.operator='zz'"], id="operator-key-not-hex"),
    pytest.param(put("operators", {"operator": "ab" * 31}), 3, ["operators.operator="], id="operator-key-short"),
    pytest.param(put("operators", {"operator": "zz" * 32}), 3, ["operators.operator=", "hexadecimal"],
                 id="operator-key-64-non-hex"),
    pytest.param(put("topic_prefix", "a b\n"), 3, ["topic_prefix='a b\\n'"], id="topic-prefix-control-chars"),
    pytest.param(put("topic_prefix", 5), 3, ["topic_prefix=5"], id="topic-prefix-int"),
    pytest.param(put("partitions", "x"), 3, ["partitions='x'"], id="partitions-text"),
    pytest.param(put("partitions", 0), 2, ["partitions=0"], id="partitions-zero"),
    pytest.param(put("partitions", -1), 2, ["partitions=-1"], id="partitions-negative"),
    pytest.param(put("partitions", 10**9), 2, ["partitions=1000000000"], id="partitions-huge"),
]


@pytest.fixture
def config_restored(home: Home) -> Iterator[Path]:
    original = home.config_file.read_bytes()
    try:
        yield home.config_file
    finally:
        home.config_file.write_bytes(original)


@pytest.mark.parametrize("command", [["emit", "action", "-a", "alice", "--operation", "x"], ["verify"]],
                         ids=["emit", "verify"])
@pytest.mark.parametrize("change,code,texts", CONFIG_CASES)
def test_bad_config_is_refused_naming_field_and_value(home: Home, config_restored: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch, change: Any, code: int,
                                                      texts: list[str], command: list[str]) -> None:
    monkeypatch.chdir(tmp_path)  # a log URL taken for a relative path would create a file here
    good = json.loads(config_restored.read_text())
    config_restored.write_text(change if isinstance(change, str) else json.dumps(change(good)))
    before = log_records(home)  # the Home object keeps the good config: it counts the real log
    r = cli(home, command)
    assert r.exit_code == code, r.output
    for text in texts:
        assert text in r.output, r.output
    assert log_records(home) == before
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ key files

KeyDoc = dict[str, Any]


def doc_edit(fn: Callable[[KeyDoc], Any]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        path.write_text(json.dumps(fn(json.loads(path.read_text()))))
    return apply


def raw(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def truncate(path: Path) -> None:
    text = path.read_bytes()
    path.write_bytes(text[: len(text) // 2])


def mode(m: int) -> Callable[[Path], None]:
    return lambda path: os.chmod(path, m)


def directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def dev_zero(path: Path) -> None:
    path.unlink()
    path.symlink_to("/dev/zero")  # must be refused before anything is read (reading it never ends)


def other_signer(path: Path) -> None:
    path.write_bytes(path.with_name("bob.key").read_bytes())


# (damage, error class, text the message must show)
KEY_CASES = [
    pytest.param(mode(0o644), KeyFileError, "readable or writable by group/others", id="world-readable"),
    pytest.param(mode(0o620), KeyFileError, "readable or writable by group/others", id="group-writable"),
    pytest.param(mode(0o604), KeyFileError, "readable or writable by group/others", id="others-readable"),
    pytest.param(raw(b""), KeyFileError, "malformed", id="empty"),
    pytest.param(raw(b"not json"), KeyFileError, "malformed", id="garbage"),
    pytest.param(raw(b"\x00\xff" * 64), KeyFileError, "malformed", id="binary"),
    pytest.param(truncate, KeyFileError, "malformed", id="truncated"),
    pytest.param(raw(b"[]"), KeyFileError, "malformed", id="json-array"),
    pytest.param(doc_edit(lambda d: d | {"kind": "rsa"}), KeyFileError, "malformed", id="wrong-kind"),
    pytest.param(doc_edit(lambda d: {k: v for k, v in d.items() if k != "seed"}), KeyFileError, "malformed",
                 id="no-seed"),
    pytest.param(doc_edit(lambda d: d | {"seed": d["seed"][:-2]}), KeyFileError, "malformed", id="seed-short"),
    pytest.param(doc_edit(lambda d: d | {"seed": d["seed"][:-1]}), KeyFileError, "malformed", id="seed-odd-length"),
    pytest.param(doc_edit(lambda d: d | {"seed": d["seed"] + "00"}), KeyFileError, "malformed", id="seed-long"),
    pytest.param(doc_edit(lambda d: d | {"seed": "zz" * 32}), KeyFileError, "malformed", id="seed-not-hex"),
    pytest.param(doc_edit(lambda d: d | {"seed": 12345}), KeyFileError, "malformed", id="seed-int"),
    pytest.param(doc_edit(lambda d: d | {"public_key": "00" * 32}), KeyFileError, "does not match its seed",
                 id="public-key-mismatch"),
    pytest.param(doc_edit(lambda d: d | {"signer_id": "a\nb"}), HomeError, "belongs to another signer",
                 id="signer-id-newline"),
    pytest.param(other_signer, HomeError, "belongs to another signer", id="key-of-another-signer"),
    pytest.param(directory, KeyFileError, "not a regular file", id="directory"),
    pytest.param(dev_zero, KeyFileError, "not a regular file", id="symlink-to-dev-zero"),
    pytest.param(lambda p: p.unlink(), KeyFileError, "key file not found", id="missing"),
]


@pytest.fixture
def key_restored(home: Home) -> Iterator[Path]:
    path = home.key_path("alice")
    original = path.read_bytes()
    seed = json.loads(original)["seed"]
    try:
        yield path
    finally:
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            path.rmdir()
        path.write_bytes(original)
        os.chmod(path, 0o600)
        assert load_key(path).public.raw.hex() == json.loads(original)["public_key"] and seed


@pytest.mark.parametrize("damage,error,text", KEY_CASES)
def test_bad_key_file_is_refused_without_leaking_the_seed(home: Home, key_restored: Path, damage: Any,
                                                         error: type[Exception], text: str) -> None:
    seed = json.loads(key_restored.read_text())["seed"]
    damage(key_restored)
    with pytest.raises(error) as e:
        home.load_key("alice")
    assert text in str(e.value) and e.value.evidence["path"] == str(key_restored)  # type: ignore[attr-defined]
    before = log_records(home)
    r = cli(home, ["emit", "action", "-a", "alice", "--operation", "x"])
    assert r.exit_code == 3, r.output
    assert text in r.output and str(key_restored) in r.output, r.output
    assert seed not in r.output and seed[:16] not in r.output
    assert log_records(home) == before


def test_a_key_the_operator_never_registered_is_refused_by_the_key_ring(home: Home, key_restored: Path) -> None:
    """A wrong signer: a valid key file for "alice" that is not the key the operator registered."""
    from ledger.integrity.keys import save_key

    key_restored.unlink()
    save_key(key_restored, SigningKey.generate("alice"))
    before = log_records(home)
    r = cli(home, ["emit", "action", "-a", "alice", "--operation", "x"])
    assert r.exit_code == 1 and "unknown_key" in r.output, r.output
    assert log_records(home) == before
