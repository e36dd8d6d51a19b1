"""TLS and SASL settings of the Kafka log: the URL/config syntax, refused configurations, secrets that never
show, and real connections: TLS (server-verified and mutual) through a TLS-terminating proxy in front of Tansu
(Tansu 0.6.0 cannot serve TLS itself: ``ledger.testing.tls`` says why), SASL against Tansu with
``--authentication``.

SASL could not be shown to SUCCEED on Tansu: with ``--authentication`` it offers SCRAM-SHA-256/512 and
OAUTHBEARER (not PLAIN) but keeps SCRAM credentials in its storage engine, and on ``memory://`` they can only be
created by an authenticated client (AlterUserScramCredentials before authentication is refused with
NotAuthenticated). Nor with two Tansus sharing ``s3://`` storage (on moto): the one without authentication
answers AlterUserScramCredentials with success but stores nothing, so the authenticating one still answers
``e=unknown-user``. The SASL tests therefore show the exchange on the real broker as far as it goes: the
handshake, the whole SCRAM exchange up to the broker's server-final message, the refusal, and that no secret is
printed or logged.
"""

from __future__ import annotations

import logging
import os
import ssl
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.errors import LogError, ValidationError
from ledger.log import open_log
from ledger.log.kafka import CommandTokenProvider, KafkaLog
from ledger.log.kafka_security import (
    REDACTED,
    KafkaSecurity,
    parse_security,
    redact_url,
    security_for,
    split_url,
    url_with,
)
from ledger.sdk.home import Home, kafka_log_options
from ledger.testing.broker import binary_path, free_port
from ledger.testing.tls import Pki, ProxiedBroker, TlsBroker, make_pki

SECRET = "pw-Zq8x-never-printed"  # a test password whose appearance anywhere is a failure
LOG_WAIT_S = 10.0  # a broker log line written when a refused connection closes
FAST: dict[str, Any] = dict(connect_timeout_ms=1_500, request_timeout_ms=1_000, delivery_timeout_ms=1_000)


def _needs_tansu() -> None:
    try:
        binary_path()
    except LogError as e:
        pytest.skip(f"no Tansu broker here ({e.message})")


# ---------------------------------------------------------------------------------------------- syntax


def test_the_documented_example_parses_to_exact_settings() -> None:
    url = ("kafka://b1:9093,b2:9093?security=SASL_SSL&sasl_mechanism=scram-sha-512&sasl_username=svc"
           "&sasl_password_env=KAFKA_PW&ca=/etc/kafka/ca.pem")
    sec = security_for(url)
    assert sec == KafkaSecurity(protocol="SASL_SSL", ca="/etc/kafka/ca.pem", sasl_mechanism="SCRAM-SHA-512",
                                sasl_username="svc", sasl_password=sec.sasl_password, where="log")
    assert sec.sasl_password is not None
    assert (sec.sasl_password.env, sec.sasl_password.file, sec.sasl_password.field) == (
        "KAFKA_PW", None, "log.sasl_password_env")
    assert sec.check_hostname is True  # on unless turned off
    assert sec.tls and sec.sasl and sec.env_names() == ["KAFKA_PW"]
    assert split_url(url)[0] == "b1:9093,b2:9093"


def test_plain_urls_keep_working_and_mean_plaintext() -> None:
    assert security_for("kafka://127.0.0.1:9092") == KafkaSecurity()
    assert security_for("kafka://h:1?security=plaintext").protocol == "PLAINTEXT"


def test_tls_settings_and_hostname_switch() -> None:
    sec = security_for("kafka://h:9093?security=ssl&ca=/c.pem&cert=/me.pem&key=/me.key&key_password_file=/pp"
                       "&check_hostname=false")
    assert (sec.protocol, sec.ca, sec.cert, sec.key, sec.check_hostname) == ("SSL", "/c.pem", "/me.pem", "/me.key",
                                                                             False)
    assert sec.key_password is not None and sec.key_password.file == "/pp" and not sec.sasl


def test_oauthbearer_takes_a_command_split_without_a_shell() -> None:
    sec = security_for(url_with("h:9093", security="sasl_ssl", sasl_mechanism="OAUTHBEARER",
                                oauth_token_command=f"/usr/bin/get-token --audience 'kafka prod' --secret {SECRET}"))
    assert sec.oauth_token_command == ("/usr/bin/get-token", "--audience", "kafka prod", "--secret", SECRET)
    assert sec.env_names() == []
    assert sec.summary()["oauth_token_command"] == "/usr/bin/get-token ..."  # what doctor prints: no arguments


def test_config_object_and_url_merge_with_the_url_winning() -> None:
    config = {"security": "sasl_ssl", "sasl_mechanism": "PLAIN", "sasl_username": "cfg-user",
              "sasl_password_file": "/run/secrets/kafka", "check_hostname": False}
    sec = security_for("kafka://h:9093?sasl_username=url-user", config)
    assert (sec.protocol, sec.sasl_mechanism, sec.sasl_username, sec.check_hostname) == (
        "SASL_SSL", "PLAIN", "url-user", False)
    assert sec.sasl_password is not None and sec.sasl_password.file == "/run/secrets/kafka"


BAD = [
    # (URL, field named, value in the error)
    ("kafka://h:1?security=tls", "log.security", "tls"),
    ("kafka://h:1?security=sasl_ssl&sasl_mechanism=GSSAPI&sasl_username=u&sasl_password_env=P",
     "log.sasl_mechanism", "GSSAPI"),
    ("kafka://h:1?security=sasl_ssl&sasl_mechanism=SCRAM-SHA-1&sasl_username=u&sasl_password_env=P",
     "log.sasl_mechanism", "SCRAM-SHA-1"),
    ("kafka://h:1?security=sasl_ssl&sasl_username=u&sasl_password_env=P", "log.sasl_mechanism", None),
    ("kafka://h:1?security=sasl_ssl&sasl_mechanism=PLAIN&sasl_password_env=P", "log.sasl_username", None),
    ("kafka://h:1?security=sasl_ssl&sasl_mechanism=PLAIN&sasl_username=u", "log.sasl_password_env", None),
    ("kafka://h:1?security=sasl_ssl&sasl_mechanism=PLAIN&sasl_username=u&sasl_password_env=P"
     "&sasl_password_file=/f", "log.sasl_password_env", "P"),
    ("kafka://h:1?security=sasl_ssl&sasl_mechanism=OAUTHBEARER", "log.oauth_token_command", None),
    ("kafka://h:1?security=sasl_ssl&sasl_mechanism=OAUTHBEARER&oauth_token_command=t&sasl_username=u",
     "log.sasl_username", "u"),
    ("kafka://h:1?ca=/c.pem", "log.ca", "/c.pem"),  # TLS setting without TLS: would silently be ignored
    ("kafka://h:1?security=ssl&sasl_mechanism=PLAIN", "log.sasl_mechanism", "PLAIN"),
    ("kafka://h:1?security=ssl&key=/k.pem", "log.key", "/k.pem"),
    ("kafka://h:1?security=ssl&check_hostname=maybe", "log.check_hostname", "maybe"),
    ("kafka://h:1?security=ssl&ca=", "log.ca", ""),
    ("kafka://h:1?security=ssl&security=ssl", "log.security", "ssl"),
    ("kafka://h:1?sasl_pasword_env=P", "log.sasl_pasword_env", REDACTED),  # a typo is not ignored
]


@pytest.mark.parametrize(("url", "field", "value"), BAD)
def test_bad_settings_are_validation_errors_naming_the_field(url: str, field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        open_log(url)
    assert (info.value.field, info.value.value) == (field, value)


@pytest.mark.parametrize("url", [
    f"kafka://h:1?security=sasl_ssl&sasl_mechanism=PLAIN&sasl_username=u&sasl_password={SECRET}",
    f"kafka://h:1?security=sasl_ssl&sasl_mechanism=PLAIN&sasl_username=u&password={SECRET}",
    f"kafka://h:1?security=ssl&cert=/c&key=/k&key_password={SECRET}",
    f"kafka://h:1?security=sasl_ssl&sasl_mechanism=OAUTHBEARER&token={SECRET}",
    f"kafka://svc:{SECRET}@h:1",
    f"kafka://h:1?security=sasl_ssl&sasl_mechanism=PLAIN&sasl_username=u&sasl_password_env={SECRET}-x",
])
def test_an_inline_secret_is_refused_and_never_echoed(url: str) -> None:
    with pytest.raises(ValidationError) as info:
        open_log(url)
    e = info.value
    assert e.field.startswith("log")
    for text in (str(e), repr(e), e.message, str(e.to_dict())):
        assert SECRET not in text


def test_redact_url_hides_user_info_and_secret_like_values() -> None:
    assert redact_url(f"kafka://u:{SECRET}@h:1?sasl_password={SECRET}&ca=/c.pem") == (
        f"kafka://{REDACTED}@h:1?sasl_password={REDACTED}&ca=/c.pem")


def test_config_errors_name_the_config_field() -> None:
    with pytest.raises(ValidationError) as info:
        parse_security({"security": "sasl_ssl", "sasl_mechanism": "KERBEROS"}, where="kafka")
    assert (info.value.field, info.value.value) == ("kafka.sasl_mechanism", "KERBEROS")
    with pytest.raises(ValidationError) as info:
        security_for("kafka://h:1?security=sasl_ssl&sasl_username=u&sasl_password_env=P",
                     {"sasl_mechanism": "PLAIN", "security": "ssl"})
    assert info.value.field == "kafka.sasl_mechanism"  # the config alone (security=ssl) cannot carry SASL


def test_home_config_with_a_bad_kafka_object_is_refused_on_open(tmp_path: Path) -> None:
    home = Home.init(tmp_path / "h")
    import json

    cfg = json.loads(home.config_file.read_text())
    cfg["kafka"] = {"security": "ssl", "sasl_password": SECRET}
    home.config_file.write_text(json.dumps(cfg))
    from ledger.errors import HomeError

    with pytest.raises(HomeError) as info:
        Home.open(home.path)
    assert "kafka.sasl_password" in str(info.value) and SECRET not in str(info.value)


# ---------------------------------------------------------------------------------------------- files and secrets


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), passphrase="key-passphrase-1")


def test_missing_ca_file_is_a_validation_error_before_connecting(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ValidationError) as info:
        open_log(url_with("127.0.0.1:1", security="ssl", ca=str(missing)))
    assert (info.value.field, info.value.value, info.value.reason) == ("log.ca", str(missing), "no such file")


def test_a_ca_file_that_is_no_certificate_names_the_field(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ValidationError) as info:
        open_log(url_with("127.0.0.1:1", security="ssl", ca=str(junk)))
    assert info.value.field == "log.ca"


def test_a_client_key_that_does_not_match_or_wrong_passphrase_names_the_key(pki: Pki, tmp_path: Path) -> None:
    other = make_pki(tmp_path / "other")
    with pytest.raises(ValidationError) as info:
        open_log(url_with("127.0.0.1:1", security="ssl", ca=str(pki.ca), cert=str(pki.client_cert),
                          key=str(other.client_key)))
    assert info.value.field == "log.key"
    assert pki.client_key_encrypted is not None
    (tmp_path / "wrong").write_text("not-the-passphrase\n")
    with pytest.raises(ValidationError) as info:
        open_log(url_with("127.0.0.1:1", security="ssl", ca=str(pki.ca), cert=str(pki.client_cert),
                          key=str(pki.client_key_encrypted), key_password_file=str(tmp_path / "wrong")))
    assert info.value.field == "log.key"


def test_an_env_variable_not_passed_in_names_the_setting_not_a_value() -> None:
    url = "kafka://127.0.0.1:1?security=sasl_plaintext&sasl_mechanism=PLAIN&sasl_username=u&sasl_password_env=KPW"
    with pytest.raises(ValidationError) as info:
        open_log(url)  # no env: only Home.open_log reads the environment
    assert (info.value.field, info.value.value) == ("log.sasl_password_env", "KPW")
    assert "Home.open_log" in info.value.reason
    with pytest.raises(ValidationError) as info:
        open_log(url, env={})
    assert "is not set in the environment" in info.value.reason


def test_the_home_resolves_exactly_the_named_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_PW_T1", SECRET)
    monkeypatch.setenv("UNRELATED_T1", "x")
    url = "kafka://h:1?security=sasl_ssl&sasl_mechanism=SCRAM-SHA-256&sasl_username=u&sasl_password_env=KAFKA_PW_T1"
    opts = kafka_log_options(url)
    assert opts["env"] == {"KAFKA_PW_T1": SECRET}
    assert SECRET not in repr(opts["security"])
    assert kafka_log_options("sqlite:///tmp/x.sqlite") == {}


def test_secret_file_strips_one_newline_and_refuses_empty(tmp_path: Path) -> None:
    from ledger.log.kafka import _ClientSecurity

    f = tmp_path / "pw"
    f.write_text(SECRET + "\n")
    sec = security_for(url_with("h:1", security="sasl_plaintext", sasl_mechanism="SCRAM-SHA-512",
                                sasl_username="svc", sasl_password_file=str(f)))
    cs = _ClientSecurity.build(sec, None)
    assert cs.config["sasl_plain_password"] == SECRET and cs.config["sasl_plain_username"] == "svc"
    assert cs.config["security_protocol"] == "SASL_PLAINTEXT" and cs.config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert SECRET not in repr(cs)
    f.write_text("\n")
    with pytest.raises(ValidationError) as info:
        _ClientSecurity.build(sec, None)
    assert info.value.field == "log.sasl_password_file"


def test_token_command_output_is_the_token_and_failures_hide_output(tmp_path: Path) -> None:
    good = tmp_path / "tok"
    good.write_text(f"#!{sys.executable}\nprint('  eyJhbGciOi.payload.sig  ')\n")
    bad = tmp_path / "bad"
    bad.write_text(f"#!{sys.executable}\nimport sys\nprint('{SECRET}'); print('{SECRET}', file=sys.stderr)\n"
                   "sys.exit(3)\n")
    for p in (good, bad):
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    assert CommandTokenProvider((str(good),), "log.oauth_token_command").token() == "eyJhbGciOi.payload.sig"
    with pytest.raises(LogError) as info:
        CommandTokenProvider((str(bad),), "log.oauth_token_command").token()
    assert info.value.evidence["exit_code"] == 3 and SECRET not in str(info.value)
    with pytest.raises(LogError):
        CommandTokenProvider((str(tmp_path / "missing"),), "log.oauth_token_command").token()


# ---------------------------------------------------------------------------------------------- TLS, real listener


@pytest.fixture
def tls_broker(pki: Pki, tmp_path: Path) -> Iterator[TlsBroker]:
    _needs_tansu()
    with TlsBroker(pki, tmp_path / "broker") as tb:
        yield tb


@pytest.fixture
def mtls_broker(pki: Pki, tmp_path: Path) -> Iterator[TlsBroker]:
    _needs_tansu()
    with TlsBroker(pki, tmp_path / "broker", mutual=True) as tb:
        yield tb


def _round_trip(log: KafkaLog, topic: str) -> None:
    log.ensure_topic(topic, 2)
    positions = log.append(topic, [(b"agent-a", b"one"), (b"agent-b", b"two"), (b"agent-a", b"three")])
    assert len(positions) == 3
    got = sorted(r.value for p in range(2) for r in log.read(topic, p, 0, 10, timeout_s=5))
    assert got == [b"one", b"three", b"two"]


@pytest.mark.kafka
def test_tls_with_the_ca_round_trips_through_the_tls_listener(tls_broker: TlsBroker, pki: Pki) -> None:
    log = open_log(url_with(tls_broker.bootstrap, security="ssl", ca=str(pki.ca)))
    try:
        _round_trip(log, "tls.t1")  # type: ignore[arg-type]
    finally:
        log.close()
    # every connection (bootstrap, the advertised broker, probes) went through the TLS proxy
    assert tls_broker.proxy.handshakes >= 2


@pytest.mark.kafka
def test_a_plain_client_cannot_talk_to_the_tls_listener(tls_broker: TlsBroker) -> None:
    with pytest.raises(LogError):
        KafkaLog(tls_broker.url, **FAST)


@pytest.mark.kafka
def test_an_untrusted_ca_is_refused(tls_broker: TlsBroker, tmp_path: Path) -> None:
    stranger = make_pki(tmp_path / "stranger")
    before = tls_broker.proxy.handshakes
    with pytest.raises(LogError):
        KafkaLog(url_with(tls_broker.bootstrap, security="ssl", ca=str(stranger.ca)), **FAST)
    assert tls_broker.proxy.handshakes == before  # no handshake completed


@pytest.mark.kafka
def test_hostname_verification_is_on_by_default_and_can_be_turned_off(pki: Pki, tmp_path: Path) -> None:
    _needs_tansu()
    wrong = make_pki(tmp_path / "wrong-name", server_names=("broker.example.internal",))
    with TlsBroker(wrong, tmp_path / "broker") as tb:
        with pytest.raises(LogError):  # the certificate does not name 127.0.0.1
            KafkaLog(url_with(tb.bootstrap, security="ssl", ca=str(wrong.ca)), **FAST)
        assert tb.proxy.handshakes == 0
        log = KafkaLog(url_with(tb.bootstrap, security="ssl", ca=str(wrong.ca), check_hostname="false"))
        try:
            _round_trip(log, "tls.noname")
        finally:
            log.close()
        assert tb.proxy.handshakes >= 1


@pytest.mark.kafka
def test_mutual_tls_needs_the_client_certificate(mtls_broker: TlsBroker, pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(LogError):
        KafkaLog(url_with(mtls_broker.bootstrap, security="ssl", ca=str(pki.ca)), **FAST)
    assert pki.client_key_encrypted is not None and pki.passphrase is not None
    passfile = tmp_path / "passphrase"
    passfile.write_text(pki.passphrase + "\n")
    passfile.chmod(0o600)
    log = KafkaLog(url_with(mtls_broker.bootstrap, security="ssl", ca=str(pki.ca), cert=str(pki.client_cert),
                            key=str(pki.client_key_encrypted), key_password_file=str(passfile)))
    try:
        _round_trip(log, "tls.mutual")
    finally:
        log.close()


@pytest.mark.kafka
def test_a_home_on_a_tls_cluster_with_secrets_from_the_environment(
        tls_broker: TlsBroker, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole path: config.json's kafka object, Home.open_log, the ledger's own topics and events, over TLS
    with a client key whose passphrase comes from an environment variable the config names."""
    import json

    from ledger.log import read_all

    assert pki.client_key_encrypted is not None and pki.passphrase is not None
    monkeypatch.setenv("TL_TEST_KEY_PASSPHRASE", pki.passphrase)
    home_dir = tmp_path / "home"
    home = Home.init(home_dir, log_url=tls_broker.url)
    cfg = json.loads(home.config_file.read_text())
    cfg["kafka"] = {"security": "ssl", "ca": str(pki.ca), "cert": str(pki.client_cert),
                    "key": str(pki.client_key_encrypted), "key_password_env": "TL_TEST_KEY_PASSPHRASE"}
    home.config_file.write_text(json.dumps(cfg))
    home = Home.open(home_dir)
    log = home.open_log()
    try:
        assert isinstance(log, KafkaLog) and log.security.protocol == "SSL"
        assert pki.passphrase not in repr(log) and pki.passphrase not in repr(vars(log))
        assert set(log.topics()) >= {home.control_topic, home.topic}
    finally:
        log.close()
    # and the ledger on it: a signed control event appended and read back over TLS
    log = home.open_log()
    try:
        from ledger.sdk.emitter import Emitter
        from ledger.wire.events import AgentRegistered

        op = home.operator_key()
        with Emitter.for_operator(home, log) as em:
            em.emit(AgentRegistered(agent_id="operator", key_id=op.key_id, public_key=op.public.raw, role="operator"))
        assert len(read_all(log, home.control_topic)) == 1
    finally:
        log.close()
    monkeypatch.delenv("TL_TEST_KEY_PASSPHRASE")
    with pytest.raises(ValidationError) as info:
        home.open_log()
    assert (info.value.field, info.value.value) == ("kafka.key_password_env", "TL_TEST_KEY_PASSPHRASE")


# ---------------------------------------------------------------------------------------------- SASL, real broker


@pytest.fixture
def auth_broker(tmp_path: Path) -> Iterator[ProxiedBroker]:
    """Tansu with --authentication (SASL required), advertising its own port."""
    _needs_tansu()
    port = free_port()
    broker = ProxiedBroker(port, directory=tmp_path / "auth-broker", extra_args=("--authentication",))
    broker.port = port
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _broker_logged(broker: ProxiedBroker, text: str) -> bool:
    """Has the broker's log got ``text``? Polled up to LOG_WAIT_S: Tansu writes it when the connection closes."""
    deadline = time.monotonic() + LOG_WAIT_S
    while text not in broker.log_tail(400):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.kafka
@pytest.mark.parametrize(("mechanism", "client_log", "broker_log"), [
    # SCRAM runs to its last message: the broker sends salt and iterations, checks the client's proof and
    # answers with the server-final message "e=unknown-user" (RFC 5802: no credentials stored for svc)
    ("SCRAM-SHA-256", "auth_bytes=b'e=unknown-user'", None),
    ("SCRAM-SHA-512", "auth_bytes=b'e=unknown-user'", None),
    # Tansu does not offer PLAIN (it offers SCRAM-SHA-256/512 and OAUTHBEARER): it drops the connection
    ("PLAIN", "socket disconnected", "NoSharedMechanism"),
])
def test_sasl_runs_against_the_authenticating_broker_and_no_secret_is_printed_or_logged(
        auth_broker: ProxiedBroker, mechanism: str, client_log: str, broker_log: str | None,
        caplog: pytest.LogCaptureFixture) -> None:
    url = url_with(f"127.0.0.1:{auth_broker.port}", security="sasl_plaintext", sasl_mechanism=mechanism,
                   sasl_username="svc", sasl_password_env="KAFKA_PW")
    with caplog.at_level(logging.DEBUG, logger="kafka"), pytest.raises(LogError) as info:
        KafkaLog(url, env={"KAFKA_PW": SECRET}, **FAST)
    assert f"SaslHandshakeRequest(version=1, mechanism='{mechanism}')" in caplog.text  # the client asked for it
    assert client_log in caplog.text, caplog.text[-2000:]
    if broker_log is not None:
        assert _broker_logged(auth_broker, broker_log), auth_broker.log_tail(40)
    assert "<redacted>" in caplog.text  # kafka-python logged its configuration, with the password replaced
    for text in (str(info.value), repr(info.value), str(info.value.to_dict()), caplog.text):
        assert SECRET not in text
    assert "SASL" in (info.value.hint or "")


@pytest.mark.kafka
def test_a_client_without_sasl_is_refused_by_the_authenticating_broker(auth_broker: ProxiedBroker) -> None:
    with pytest.raises(LogError):
        KafkaLog(f"kafka://127.0.0.1:{auth_broker.port}", **FAST)
    assert _broker_logged(auth_broker, "NotAuthenticated"), auth_broker.log_tail(40)


@pytest.mark.kafka
def test_oauthbearer_runs_the_token_command_for_the_broker(auth_broker: ProxiedBroker, tmp_path: Path) -> None:
    marker = tmp_path / "token-command-ran"
    cmd = tmp_path / "token"
    cmd.write_text(f"#!{sys.executable}\nimport pathlib\npathlib.Path({str(marker)!r}).write_text('x')\n"
                   "print('header.payload.signature')\n")
    cmd.chmod(0o700)
    url = url_with(f"127.0.0.1:{auth_broker.port}", security="sasl_plaintext", sasl_mechanism="OAUTHBEARER",
                   oauth_token_command=str(cmd))
    with pytest.raises(LogError) as info:  # Tansu validates bearer tokens against an identity provider: refused
        KafkaLog(url, **FAST)
    assert marker.exists(), "the token command ran when the connection authenticated"
    assert "header.payload.signature" not in str(info.value)


def test_ssl_context_checks_hostnames_and_chains_by_default(pki: Pki) -> None:
    from ledger.log.kafka import _ssl_context

    ctx = _ssl_context(security_for(url_with("h:1", security="ssl", ca=str(pki.ca))), None)
    assert ctx.check_hostname is True and ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    ctx = _ssl_context(security_for(url_with("h:1", security="ssl", ca=str(pki.ca), check_hostname="false")), None)
    assert ctx.check_hostname is False and ctx.verify_mode == ssl.CERT_REQUIRED  # the chain is still verified
    assert os.environ.get("KAFKA_PW") is None  # nothing here set a process-wide variable
