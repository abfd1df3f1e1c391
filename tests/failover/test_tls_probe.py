"""A server whose address is ``https://`` is probed over TLS, against a configurable CA.

The node here is a real HTTPS server process with a certificate signed by a private CA
made in the test (openssl). Trusted: the probe passes. Not trusted (the system's CAs, a
certificate for another host, an unreadable CA bundle): a clear reason, never a pass and
never "the node is gone".
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from failover.choices import Health
from failover.monitor.server_evidence import Outcome
from failover.monitor.targets import ServerTarget, ServerTimings
from failover.monitor.watchers import ServerWatcher, tls_context

TIMINGS = ServerTimings(
    interval=1.0, timeout=2.0, rise=1, flap_window=60.0, flap_max=10, silence=5.0, unresponsive=10.0
)

HTTPS_NODE = r"""
import http.server, ssl, sys
class Healthz(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/healthz" else 404)
        self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *args): pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Healthz)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def private_ca(tmp_path: Path) -> Path:
    """A CA, and a node certificate it signed for the host name ``localhost`` only."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Test CA",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=tmp_path)  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", "node.key", "-out", "node.csr", cwd=tmp_path)  # fmt: skip
    (tmp_path / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    openssl("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "node.pem", cwd=tmp_path)  # fmt: skip
    return tmp_path


@pytest.fixture
def https_node(private_ca: Path):
    process = subprocess.Popen(
        [sys.executable, "-c", HTTPS_NODE, str(private_ca / "node.pem"), str(private_ca / "node.key")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield int(process.stdout.readline())
    finally:
        process.kill()
        process.wait()


def probe(base_url: str) -> tuple[Outcome, str]:
    async def nothing(change) -> None:
        return None

    watcher = ServerWatcher(ServerTarget(1, "routing-tls", base_url, Health.UP), TIMINGS, nothing, nothing)
    tls_context.cache_clear()  # the CA bundle setting differs from test to test
    outcome, _, error = asyncio.run(watcher._probe_once())
    return outcome, error


def test_a_node_whose_certificate_the_configured_ca_signed_passes(https_node, private_ca, settings):
    settings.COLLABADMIN_TLS_CA_BUNDLE = str(private_ca / "ca.pem")
    assert probe(f"https://localhost:{https_node}") == (Outcome.OK, "")


def test_a_certificate_from_an_unknown_ca_is_a_clear_reason_not_a_pass(https_node, settings):
    settings.COLLABADMIN_TLS_CA_BUNDLE = ""  # the system's CAs do not know the test's CA
    outcome, error = probe(f"https://localhost:{https_node}")
    assert outcome == Outcome.ERROR
    assert error.startswith("TLS certificate not trusted:"), error
    assert not outcome.hard  # the node answered: it is not gone


def test_a_certificate_for_another_host_is_refused(https_node, private_ca, settings):
    settings.COLLABADMIN_TLS_CA_BUNDLE = str(private_ca / "ca.pem")
    outcome, error = probe(f"https://127.0.0.1:{https_node}")  # the certificate names localhost only
    assert outcome == Outcome.ERROR
    assert error.startswith("TLS certificate not trusted:"), error
    assert "mismatch" in error, error


def test_an_unreadable_ca_bundle_names_the_setting(https_node, tmp_path, settings):
    settings.COLLABADMIN_TLS_CA_BUNDLE = str(tmp_path / "missing.pem")
    outcome, error = probe(f"https://localhost:{https_node}")
    assert outcome == Outcome.ERROR
    assert "COLLABADMIN_TLS_CA_BUNDLE" in error, error
    assert "missing.pem" in error, error


def test_plain_http_is_not_wrapped_in_tls(https_node, private_ca, settings):
    settings.COLLABADMIN_TLS_CA_BUNDLE = str(private_ca / "ca.pem")
    # Speaking plain HTTP to a TLS port gets no valid HTTP answer: never a pass.
    outcome, _ = probe(f"http://localhost:{https_node}")
    assert outcome != Outcome.OK
