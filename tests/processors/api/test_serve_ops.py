"""The service's door and its operations endpoints, over real HTTP on loopback: tokens (401 / 403 / 429),
problem+json, /healthz, /readyz, /metrics (parsed by the Prometheus text parser), /openapi.json, and the
`serve` command's refusals."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.serving import problem

from ledger.testing.homes import fill, inject_bad, make_home
from processors.testing.serve import running_service


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    home = make_home(tmp_path_factory.mktemp("serve") / "home")
    fill(home, tasks=3)
    bad = inject_bad(home)
    subprocess.run([sys.executable, "-m", "processors.cli", "run", "journal", "budgets", "--until-caught-up", "--home",
                    str(home.path)], check=True, capture_output=True, timeout=300)
    with running_service(home.path) as s:
        s.expected_rejections = bad  # type: ignore[attr-defined]
        yield s



def test_health_is_public_and_ready_reports_the_log_and_processors(served):
    assert httpx.get(served.url + "/healthz").json() == {"status": "ok"}
    r = httpx.get(served.url + "/readyz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ready" and body["log"]["events_end_offsets"][0] > 0
    assert body["processors"]["journal"]["lag"] == 0 and body["processors"]["reputation"]["state"] == "never run"
    # reputation never ran and nothing runs now: readiness with a lag bound says so
    r = httpx.get(served.url + "/readyz", params={"max_lag": 0})
    assert r.status_code == 503 and "reputation" in r.json()["behind"]
    problem(httpx.get(served.url + "/readyz", params={"max_lag": -1}), 400, "invalid_field")


def test_metrics_need_an_operator_token(served):
    problem(httpx.get(served.url + "/metrics"), 401, "unauthorized")
    r = httpx.get(served.url + "/metrics", headers={"Authorization": "Bearer tlk_000000000000_" + "A" * 43})
    assert problem(r, 401, "unauthorized") and r.headers["www-authenticate"] == "Bearer"
    agent = served.token("alice", scopes=("read",))
    problem(httpx.get(served.url + "/metrics", headers=served.auth(agent)), 403, "operator_only")


def test_metrics_parse_and_carry_the_processors_rejections_and_requests(served):
    httpx.get(served.url + "/healthz")
    r = httpx.get(served.url + "/metrics", headers=served.auth())
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    lag = {s.labels["processor"]: s.value for s in families["tokenledger_processor_lag_records"].samples}
    assert lag["journal"] == 0 and lag["budgets"] == 0
    events = {s.labels["processor"]: s.value for s in families["tokenledger_processor_events"].samples
              if s.name == "tokenledger_processor_events_total"}
    assert events["journal"] > 0
    rejections = {s.labels["code"]: s.value for s in families["tokenledger_rejections"].samples
                  if s.name == "tokenledger_rejections_total"}
    assert rejections == {code: float(n) for code, n in served.expected_rejections.items()}
    ages = {s.labels["processor"]: s.value for s in families["tokenledger_view_publish_age_seconds"].samples}
    assert set(ages) == {"journal", "budgets"} and all(a >= 0 for a in ages.values())
    requests = [s for s in families["tokenledger_http_requests"].samples if s.name == "tokenledger_http_requests_total"]
    assert any(s.labels == {"route": "/healthz", "method": "GET", "status": "200"} and s.value >= 1 for s in requests)
    assert any(s.labels["route"] == "/metrics" and s.labels["status"] == "401" for s in requests)


def test_rate_limit_answers_429_with_retry_after(served):
    slow = served.token("bob", scopes=("read",), rate_per_s=0.5)  # a burst of 1 request, then one per 2 s
    first = httpx.get(served.url + "/metrics", headers=served.auth(slow))
    assert first.status_code == 403  # authenticated (then refused the endpoint): it counted
    r = httpx.get(served.url + "/metrics", headers=served.auth(slow))
    body = problem(r, 429, "rate_limited")
    assert int(r.headers["retry-after"]) >= 1 and body["token_id"]


def test_unknown_route_is_a_problem_and_openapi_lists_the_endpoints(served):
    problem(httpx.get(served.url + "/v0/nothing"), 404, "not_found")
    spec = httpx.get(served.url + "/openapi.json").json()
    assert spec["openapi"].startswith("3.") and {"/healthz", "/readyz", "/metrics"} <= set(spec["paths"])


def test_serve_refuses_bad_flags_with_the_field(tmp_path):
    home = make_home(tmp_path / "h", agents=())
    for args, field in ((["--port", "70000"], "port"), (["--tls-cert", str(tmp_path / "nope.pem")], "tls_key"),
                        (["--tls-cert", str(tmp_path / "c.pem"), "--tls-key", str(tmp_path / "k.pem")], "tls_cert")):
        r = subprocess.run([sys.executable, "-m", "processors.cli", "serve", "--home", str(home.path), *args],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and field in r.stderr, r.stderr


def test_serves_https_with_the_given_certificate(tmp_path):
    import datetime as dt
    import ipaddress
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    home = make_home(tmp_path / "h", agents=())
    with running_service(home.path, extra_args=["--tls-cert", str(cert_file), "--tls-key", str(key_file)],
                         ca_file=cert_file) as s:
        assert s.url.startswith("https://")
        ctx = ssl.create_default_context(cafile=str(cert_file))
        assert httpx.get(s.url + "/healthz", verify=ctx).json() == {"status": "ok"}
        with pytest.raises(httpx.ConnectError):  # an untrusted certificate is refused by a default client
            httpx.get(s.url + "/healthz")
