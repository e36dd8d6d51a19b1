"""Bad input gets a clear, typed error naming the field and value, a non-zero exit, and changes nothing."""

from __future__ import annotations

import json
import math
import os

import pytest
from typer.testing import CliRunner

from ledger import Emitter, open_log
from ledger.errors import HomeError, KeyFileError, ValidationError
from ledger.integrity.keys import SigningKey, load_key, save_key
from ledger.testing.homes import make_home
from ledger.wire.events import Action, Compute, Data, Flow, Interaction, LlmUsage, Trust, body_from_dict
from processors.cli import build_app

app = build_app()  # the whole `tokenledger` command, as the console script builds it

runner = CliRunner()


@pytest.fixture
def home(tmp_path):
    return make_home(tmp_path / "home", agents=("alice", "bob"))


def log_size(h) -> int:
    log = h.open_log()
    try:
        return sum(log.end_offset(h.topic, p) for p in range(log.partitions(h.topic)))
    finally:
        log.close()


BAD_NUMBERS = [-1, math.nan, math.inf, -math.inf, 10**30, 1.5, True, "12"]


@pytest.mark.parametrize("value", BAD_NUMBERS, ids=repr)
@pytest.mark.parametrize("make,field", [
    (lambda v: LlmUsage("anthropic", "m", v, 0), "usage.input_tokens"),
    (lambda v: LlmUsage("anthropic", "m", 10, v), "usage.output_tokens"),
    (lambda v: Data(bytes_read=v, bytes_written=0), "bytes_read"),
    (lambda v: Compute("n", cpu_time_slices=v), "cpu_time_slices"),
    (lambda v: Flow(v), "flow.tokens"),
    (lambda v: Action("x", cost_weight_milli=v), "cost_weight_milli"),
])
def test_bad_numbers_are_refused_with_the_field_named(make, field, value):
    with pytest.raises(ValidationError) as e:
        make(value)
    assert e.value.field == field
    assert e.value.value is value or (isinstance(value, float) and math.isnan(value))
    assert field in str(e.value)


def test_cached_tokens_above_their_total():
    with pytest.raises(ValidationError) as e:
        LlmUsage("anthropic", "m", input_tokens=100, output_tokens=1, cache_read_tokens=80, cache_write_tokens=30)
    assert e.value.field == "usage.cache_read_tokens"
    with pytest.raises(ValidationError) as e:
        Flow(10, 11)
    assert e.value.field == "flow.cached_tokens" and e.value.value == 11
    with pytest.raises(ValidationError) as e:
        LlmUsage("anthropic", "m", 10, 5, reasoning_tokens=6)
    assert e.value.field == "usage.reasoning_tokens"
    with pytest.raises(ValidationError) as e:
        Interaction("i", "a", "b", "p", "m", "p", "m", Flow(10, 1), Flow(10), Flow(1), Flow(1))
    assert e.value.field == "request_output.cached_tokens"


def test_unknown_kind_and_missing_or_extra_fields():
    with pytest.raises(ValidationError) as e:
        body_from_dict("teleport", {})
    assert e.value.field == "kind" and e.value.value == "teleport"
    with pytest.raises(ValidationError) as e:
        body_from_dict("data", {"bytes_read": 1})
    assert e.value.field == "bytes_written" and "required" in e.value.reason
    with pytest.raises(ValidationError) as e:
        body_from_dict("data", {"bytes_read": 1, "bytes_written": 2, "colour": "red"})
    assert e.value.field == "colour" and e.value.value == "red"
    with pytest.raises(ValidationError) as e:
        body_from_dict("action", {"operation": "x", "usage": {"provider": "p", "model": "m", "input_tokens": 1,
                                                               "output_tokens": 1, "extra": 1}})
    assert e.value.field == "usage.extra"
    ok = body_from_dict("trust", {"subject_id": "b", "dimension": "accuracy", "value_milli": -5})
    assert ok == Trust("b", "accuracy", -5)


def test_sdk_refuses_and_appends_nothing(home):
    before = log_size(home)
    with Emitter.open("alice", home=home.path, background_flush=False) as em:
        for call in (
            lambda: em.action("x", cost_weight=math.nan),
            lambda: em.action("x", cost_weight="1.0001"),
            lambda: em.action("x", provider="anthropic", model="m", input_tokens=-5),
            lambda: em.action("x", input_tokens=5),  # tokens without a model
            lambda: em.trust("bob", "charisma", 1),
            lambda: em.data(bytes_read=10**16),
            lambda: em.emit(Action("x"), event_time_us=0),
            lambda: em.emit("not a body"),  # type: ignore[arg-type]
            lambda: em.interaction(responder_id="alice", interaction_id="i", requestor_provider="p",
                                   requestor_model="m", responder_provider="p", responder_model="m",
                                   request_tokens=1, response_tokens=1),
        ):
            with pytest.raises(ValidationError):
                call()
        assert em.stats().pending == 0 and em.head.seq == 0
    assert log_size(home) == before


@pytest.mark.parametrize("args,field", [
    (["--input-tokens", "-5"], "input_tokens"),
    (["--input-tokens", "nan"], "input_tokens"),
    (["--input-tokens", "1e99"], "input_tokens"),
    (["--output-tokens", "inf"], "output_tokens"),
    (["--cost-weight", "nan"], "cost_weight"),
    (["--provider", "anthropic", "--model", "m", "--input-tokens", "10", "--cache-read-tokens", "11"],
     "usage.cache_read_tokens"),
    (["--input-tokens", str(10**13), "--provider", "p", "--model", "m"], "usage.input_tokens"),
    (["--time", "yesterday"], "time"),
    (["--label", "novalue"], "label"),
])
def test_cli_emit_bad_input(home, args, field):
    before = log_size(home)
    r = runner.invoke(app, ["emit", "action", "--home", str(home.path), "-a", "alice", "--operation", "x", *args])
    assert r.exit_code == 2, r.output
    assert f"invalid {field}=" in r.output
    assert log_size(home) == before


def test_cli_unknown_trust_dimension(home):
    r = runner.invoke(app, ["emit", "trust", "--home", str(home.path), "-a", "alice", "--subject", "bob",
                            "--dimension", "vibes", "--value", "1"])
    assert r.exit_code == 2 and "invalid dimension='vibes'" in r.output


def test_world_readable_key_file_is_refused(home):
    path = home.key_path("alice")
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError) as e:
        load_key(path)
    assert e.value.evidence["mode"] == "0o644" and "chmod 600" in e.value.hint
    before = log_size(home)
    r = runner.invoke(app, ["emit", "action", "--home", str(home.path), "-a", "alice", "--operation", "x"])
    assert r.exit_code == 3 and "readable or writable by group/others" in r.output
    assert log_size(home) == before


def test_malformed_key_file_is_refused_without_leaking(home, tmp_path):
    path = home.key_path("alice")
    doc = json.loads(path.read_text())
    secret = doc["seed"]
    doc["seed"] = secret[:-2]  # odd-length hex
    path.write_text(json.dumps(doc))
    os.chmod(path, 0o600)
    r = runner.invoke(app, ["emit", "action", "--home", str(home.path), "-a", "alice", "--operation", "x"])
    assert r.exit_code == 3 and "malformed" in r.output
    assert secret[:16] not in r.output
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not json")
    os.chmod(garbage, 0o600)
    with pytest.raises(KeyFileError):
        load_key(garbage)


def test_keys_are_saved_0600_and_never_printed(home, tmp_path):
    k = SigningKey.generate("carol")
    p = save_key(tmp_path / "carol.key", k)
    assert (p.stat().st_mode & 0o777) == 0o600
    assert k._seed().hex() not in repr(k)
    r = runner.invoke(app, ["keys", "show", "alice", "--home", str(home.path), "--json"])
    assert r.exit_code == 0
    seed = json.loads(home.key_path("alice").read_text())["seed"]
    assert seed not in r.output
    with pytest.raises(KeyFileError):
        save_key(p, k)  # no silent overwrite


def test_wrong_home_directory(tmp_path):
    with pytest.raises(HomeError):
        Emitter.open("alice", home=tmp_path / "nope")
    (tmp_path / "not-a-home").mkdir()
    (tmp_path / "not-a-home" / "x.txt").write_text("hello")
    r = runner.invoke(app, ["verify", "--home", str(tmp_path / "not-a-home")])
    assert r.exit_code == 3 and "not a ledger home" in r.output and "tokenledger init" in r.output
    r = runner.invoke(app, ["init", "--home", str(tmp_path / "not-a-home")])
    assert r.exit_code == 3 and "not empty" in r.output
    assert not (tmp_path / "not-a-home" / "config.json").exists()


def test_unknown_log_url(home):
    with pytest.raises(ValidationError) as e:
        open_log("ftp://example")
    assert e.value.field == "log"
    r = runner.invoke(app, ["verify", "--home", str(home.path), "--log", "ftp://example"])
    assert r.exit_code == 2 and "unknown log URL" in r.output


# ---------------------------------------------------------------- input files are read bounded


def test_verify_proof_refuses_a_device_and_a_fifo(tmp_path):
    r = runner.invoke(app, ["verify-proof", "/dev/zero"])
    assert r.exit_code == 2 and "/dev/zero" in r.output and "MAX_PROOF_FILE_BYTES" in r.output
    fifo = tmp_path / "proof.fifo"
    os.mkfifo(fifo)
    r = runner.invoke(app, ["verify-proof", str(fifo)])
    assert r.exit_code == 2 and "FIFO" in r.output


def test_import_refuses_a_device_without_reading_it(home):
    before = log_size(home)
    r = runner.invoke(app, ["import", "openai", "/dev/zero", "--home", str(home.path), "--json"])
    assert r.exit_code != 0
    problems = json.loads(r.output)["rejected"]
    assert [(p["file"], p["field"]) for p in problems] == [("/dev/zero", "file")]
    assert "MAX_IMPORT_FILE_BYTES" in problems[0]["reason"]
    assert log_size(home) == before


def test_a_key_file_or_config_that_is_a_fifo_is_refused(home):
    key = home.key_path("alice")
    key.unlink()
    os.mkfifo(key, 0o600)
    r = runner.invoke(app, ["emit", "action", "--home", str(home.path), "-a", "alice", "--operation", "x"])
    assert r.exit_code == 3 and "not a regular file" in r.output
    cfg = home.path / "config.json"
    cfg.unlink()
    os.mkfifo(cfg, 0o600)
    r = runner.invoke(app, ["verify", "--home", str(home.path)])
    assert r.exit_code == 3 and "FIFO" in r.output and "MAX_CONFIG_FILE_BYTES" in r.output
