"""A Schema Registry on a loopback port, for tests: the three calls the flat topic's writer and readers make.

Answers the documented REST shapes (content type ``application/vnd.schemaregistry.v1+json``):

    POST /subjects/{subject}/versions        {"schema": text}  ->  {"id": N}  (the same schema again: the same id)
    GET  /schemas/ids/{id}                                     ->  {"schema": text}              (404, 40403)
    GET  /subjects/{subject}/versions/latest                   ->  {"subject", "id", "version", "schema"} (404, 40401)

Ids are global (one schema text, one id, whatever the subject), from 1 up; a body that is not JSON with a string
``schema`` that parses as Avro is refused (422, 42201). Query strings are ignored (clients add ``?subject=...``).
Everything is kept in memory; ``requests`` records each (method, path) so a test can see what was asked.
Not a registry to run anything on: no compatibility checks, no deletes, no references.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import fastavro

from ledger import limits

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
_VERSIONS = re.compile(r"^/subjects/(?P<subject>[^/]+)/versions$")
_LATEST = re.compile(r"^/subjects/(?P<subject>[^/]+)/versions/latest$")
_BY_ID = re.compile(r"^/schemas/ids/(?P<id>[0-9]{1,10})$")


class RegistryState:
    """Schemas by id and the versions of each subject (a list of ids, version = index + 1)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_id: dict[int, str] = {}
        self.ids: dict[str, int] = {}  # canonical JSON of a schema -> its id
        self.subjects: dict[str, list[int]] = {}
        self.requests: list[tuple[str, str]] = []

    def register(self, subject: str, text: str) -> int:
        key = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
        with self.lock:
            sid = self.ids.get(key)
            if sid is None:
                sid = self.ids[key] = len(self.by_id) + 1
                self.by_id[sid] = text
            versions = self.subjects.setdefault(subject, [])
            if sid not in versions:
                versions.append(sid)
            return sid


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a test's output is its assertions."""

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _path(self) -> str:
        path = urllib.parse.urlsplit(self.path).path
        self.server.state.requests.append((self.command, path))
        return path

    def do_GET(self) -> None:
        path = self._path()
        st = self.server.state
        if m := _BY_ID.match(path):
            text = st.by_id.get(int(m["id"]))
            if text is None:
                return self._answer(404, {"error_code": 40403, "message": "Schema not found"})
            return self._answer(200, {"schema": text})
        if m := _LATEST.match(path):
            subject = urllib.parse.unquote(m["subject"])
            versions = st.subjects.get(subject)
            if not versions:
                return self._answer(404, {"error_code": 40401, "message": f"Subject '{subject}' not found."})
            sid = versions[-1]
            return self._answer(200, {"subject": subject, "id": sid, "version": len(versions),
                                      "schema": st.by_id[sid]})
        return self._answer(404, {"error_code": 404, "message": "HTTP 404 Not Found"})

    def do_POST(self) -> None:
        path = self._path()
        m = _VERSIONS.match(path)
        if m is None:
            return self._answer(404, {"error_code": 404, "message": "HTTP 404 Not Found"})
        length = int(self.headers.get("Content-Length") or 0)
        if length > limits.MAX_SCHEMA_REGISTRY_BODY_BYTES:
            return self._answer(413, {"error_code": 413, "message": "body too large"})
        try:
            text = json.loads(self.rfile.read(length))["schema"]
            if not isinstance(text, str):
                raise TypeError("schema is not a string")
            fastavro.parse_schema(json.loads(text), _force=True)
        except (ValueError, TypeError, KeyError) as e:
            return self._answer(422, {"error_code": 42201, "message": f"Invalid schema: {e}"})
        return self._answer(200, {"id": self.server.state.register(urllib.parse.unquote(m["subject"]), text)})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: RegistryState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


@contextmanager
def schema_registry() -> Iterator[tuple[str, RegistryState]]:
    """A registry on a free loopback port for the block: (its URL, its state)."""
    state = RegistryState()
    server = _Server(state)
    thread = threading.Thread(target=server.serve_forever, name="schema-registry", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
