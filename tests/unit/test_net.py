"""The SSRF guard for agents' HTTP requests (chalicelib/agents/net.py) and the ``http``
kind on top of it. Name resolution is injected (a seam), so no test depends on DNS;
requests go to real HTTP(S) servers on loopback, in threads."""
from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import urllib3

from chalicelib.agents import KindDeps, execute, get_kind
from chalicelib.agents.net import GuardedHttp, NetPolicy, TargetRefused, open_checked, refusal
from chalicelib.agents.policy import AgentPolicy
from chalicelib.domain.model import ErrorCategory
from chalicelib.errors import ConfigError
from chalicelib.settings import Settings
from tests.unit.test_agents import FakeContext

TIMEOUT = urllib3.Timeout(connect=2.0, read=5.0)
AWS = NetPolicy()  # what the AWS settings give without an allow-list
LOCAL = NetPolicy(allow_loopback=True)


def refused(policy: NetPolicy, address: str, port: int = 443) -> str | None:
    try:
        policy.check(address, port)
    except TargetRefused as exc:
        return exc.message
    return None


# --- the rules, address by address ------------------------------------------------
@pytest.mark.parametrize(
    "address, rule",
    [
        ("127.0.0.1", "loopback range 127.0.0.0/8"),
        ("127.255.0.9", "loopback range 127.0.0.0/8"),
        ("10.0.0.1", "private range 10.0.0.0/8"),
        ("172.16.0.1", "private range 172.16.0.0/12"),
        ("172.31.255.254", "private range 172.16.0.0/12"),
        ("192.168.1.20", "private range 192.168.0.0/16"),
        ("100.64.0.1", "shared (carrier-grade NAT) range 100.64.0.0/10"),
        ("100.127.255.254", "shared (carrier-grade NAT) range 100.64.0.0/10"),
        ("169.254.169.254", "link-local range 169.254.0.0/16"),
        ("169.254.170.2", "link-local range 169.254.0.0/16"),
        ("0.0.0.0", "unspecified range 0.0.0.0/8"),
        ("224.0.0.1", "multicast range 224.0.0.0/4"),
        ("239.255.255.250", "multicast range 224.0.0.0/4"),
        ("240.0.0.1", "reserved range 240.0.0.0/4"),
        ("255.255.255.255", "reserved range 240.0.0.0/4"),
        ("192.0.0.8", "reserved range 192.0.0.0/24"),
        ("192.0.2.1", "reserved range 192.0.2.0/24"),
        ("198.18.0.1", "reserved range 198.18.0.0/15"),
        ("203.0.113.7", "reserved range 203.0.113.0/24"),
    ],
)
def test_refused_ipv4(address, rule):
    assert refused(AWS, address) == f"refused {address}: {rule}"


@pytest.mark.parametrize(
    "address, rule",
    [
        ("::1", "loopback address ::1/128"),
        ("::", "unspecified address ::/128"),
        ("fe80::1", "link-local range fe80::/10"),
        ("fe80::1%eth0", "link-local range fe80::/10"),
        ("febf:ffff::1", "link-local range fe80::/10"),
        ("fc00::1", "private range fc00::/7"),
        ("fd00:ec2::254", "private range fc00::/7"),  # the IPv6 instance metadata address
        ("ff02::1", "multicast range ff00::/8"),
        ("fec0::1", "reserved range fec0::/10"),
        ("::7f00:1", "reserved range ::/96"),  # IPv4-compatible ::127.0.0.1
        ("2001:db8::1", "reserved range 2001:db8::/32"),
        ("2001::1", "reserved range 2001::/23"),  # Teredo
        ("100::1", "reserved range 100::/64"),
        ("4000::1", "reserved range, outside global unicast 2000::/3"),
    ],
)
def test_refused_ipv6(address, rule):
    message = refused(AWS, address)
    shown = str(ipaddress.ip_address(address.split("%")[0]))
    assert message == f"refused {shown}: {rule}"


@pytest.mark.parametrize(
    "address, carried, rule",
    [
        ("::ffff:169.254.169.254", "169.254.169.254", "link-local range 169.254.0.0/16"),
        ("::ffff:127.0.0.1", "127.0.0.1", "loopback range 127.0.0.0/8"),
        ("::ffff:10.1.2.3", "10.1.2.3", "private range 10.0.0.0/8"),
        ("::ffff:100.64.1.1", "100.64.1.1", "shared (carrier-grade NAT) range 100.64.0.0/10"),
        ("64:ff9b::169.254.169.254", "169.254.169.254", "link-local range 169.254.0.0/16"),  # NAT64
        ("2002:c0a8:0101::1", "192.168.1.1", "private range 192.168.0.0/16"),  # 6to4
    ],
)
def test_ipv6_forms_of_refused_ipv4_are_refused(address, carried, rule):
    message = refused(AWS, address)
    assert message is not None
    assert f"(carries IPv4 {carried}): {rule}" in message


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8",
     "64:ff9b::8.8.8.8"],
)
def test_public_addresses_pass(address):
    assert refused(AWS, address) is None
    assert refusal(ipaddress.ip_address(address)) is None


def test_not_an_address_is_refused():
    assert refused(AWS, "example.com") == "refused example.com: not an IP address"


# --- the allow-list setting --------------------------------------------------------------
def aws_settings(**env) -> Settings:
    return Settings.from_env({"SCHEDULER_ENV": "aws", "SCHEDULER_JWT_SECRET": "s", **env})


def test_allow_cidrs_lets_listed_ranges_through():
    policy = NetPolicy.from_settings(aws_settings(SCHEDULER_HTTP_ALLOW_CIDRS="10.1.0.0/16, fd12::/16"))
    assert refused(policy, "10.1.2.3") is None
    assert refused(policy, "::ffff:10.1.2.3") is None  # its IPv4-mapped form too
    assert refused(policy, "fd12::5") is None
    assert refused(policy, "10.2.0.1") == "refused 10.2.0.1: private range 10.0.0.0/8"
    assert refused(policy, "169.254.169.254") == "refused 169.254.169.254: link-local range 169.254.0.0/16"
    assert refused(policy, "127.0.0.1") is not None


def test_allow_cidrs_setting_is_parsed_once_and_checked():
    assert aws_settings(SCHEDULER_HTTP_ALLOW_CIDRS="10.1.2.3/16,,192.168.5.5").http_allow_cidrs == (
        "10.1.0.0/16",
        "192.168.5.5/32",
    )
    assert aws_settings().http_allow_cidrs == ()
    with pytest.raises(ConfigError) as info:
        aws_settings(SCHEDULER_HTTP_ALLOW_CIDRS="10.0.0.0/8,intranet")
    assert "SCHEDULER_HTTP_ALLOW_CIDRS" in info.value.message and "'intranet'" in info.value.message


# --- local mode: loopback yes, the system's own ports no ----------------------------------
LOCAL_ENV = {
    "SCHEDULER_API_PORT": "9100",
    "SCHEDULER_WS_PORT": "9101",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9102",
    "SCHEDULER_WS_ENDPOINT": "http://127.0.0.1:9101",
}


def test_aws_mode_refuses_loopback_local_mode_allows_it():
    assert NetPolicy.from_settings(aws_settings()).allow_loopback is False
    local = NetPolicy.from_settings(Settings.from_env(LOCAL_ENV))
    assert refused(local, "127.0.0.1", 3000) is None
    assert refused(local, "::1", 3000) is None
    assert refused(local, "169.254.169.254", 80) is not None  # only loopback is let through
    assert refused(local, "192.168.1.1", 80) is not None


@pytest.mark.parametrize(
    "port, what",
    [
        (9100, "REST API port (SCHEDULER_API_PORT)"),
        (9101, "WebSocket port (SCHEDULER_WS_PORT)"),
        (9102, "local AWS emulator's port (AWS_ENDPOINT_URL)"),
    ],
)
@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"])
def test_local_mode_refuses_the_systems_own_ports(address, port, what):
    local = NetPolicy.from_settings(Settings.from_env(LOCAL_ENV))
    message = refused(local, address, port)
    assert message is not None and what in message
    assert f":{port}" in message


def test_own_ports_stay_refused_on_allow_listed_addresses():
    local = NetPolicy.from_settings(Settings.from_env({**LOCAL_ENV, "SCHEDULER_HTTP_ALLOW_CIDRS": "10.0.0.0/8"}))
    assert refused(local, "10.0.0.5", 443) is None
    assert "SCHEDULER_API_PORT" in refused(local, "10.0.0.5", 9100)


# --- real servers -------------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict] = []

    def log_message(self, format, *args):
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading at its cap, as it should

    def do_GET(self):
        Handler.seen.append({"path": self.path, "host": self.headers.get("Host"), "port": self.server.server_address[1]})
        if self.path == "/metadata-redirect":
            self._send(302, b"", {"Location": "http://169.254.169.254/latest/meta-data/iam/"})
        elif self.path == "/big":
            self._send(200, b"y" * 100_000, {"Content-Type": "text/plain"})
        else:
            self._send(200, b'{"ok": true}', {"Content-Type": "application/json"})


class V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def serve(httpd):
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return httpd


@pytest.fixture(scope="module")
def port():
    httpd = serve(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


class Resolver:
    """Answers from a table and counts the lookups."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        answer = self.answers[host]
        return answer.pop(0) if answer and isinstance(answer[0], list) else answer


class Recording(GuardedHttp):
    """Records every address a connection pool is opened for."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.connected: list[str] = []

    def _pool(self, scheme, address, port, host, timeout):
        self.connected.append(address)
        return super()._pool(scheme, address, port, host, timeout)


def test_local_loopback_works(port):
    response = open_checked(f"http://127.0.0.1:{port}/x?q=1", timeout=TIMEOUT, policy=LOCAL)
    assert (response.status, response.body, response.truncated) == (200, b'{"ok": true}', False)
    assert Handler.seen[-1]["path"] == "/x?q=1"


def test_local_loopback_over_ipv6_works():
    try:
        httpd = serve(V6Server(("::1", 0), Handler))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    try:
        response = open_checked(f"http://[::1]:{httpd.server_address[1]}/", timeout=TIMEOUT, policy=LOCAL)
        assert response.status == 200 and response.address == "::1"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_name_that_resolves_to_loopback_is_refused_in_aws_mode(port):
    resolver = Resolver({"innocent.example": ["127.0.0.1"]})
    http = Recording(AWS, resolver=resolver)
    before = len(Handler.seen)
    with pytest.raises(TargetRefused) as info:
        http.request("GET", f"http://innocent.example:{port}/", timeout=TIMEOUT)
    assert info.value.message == "refused 127.0.0.1: loopback range 127.0.0.0/8"
    assert http.connected == [] and len(Handler.seen) == before


def test_every_resolved_address_is_checked():
    resolver = Resolver({"mixed.example": ["93.184.215.14", "10.0.0.7"]})
    http = Recording(AWS, resolver=resolver)
    with pytest.raises(TargetRefused) as info:
        http.request("GET", "https://mixed.example/", timeout=TIMEOUT)
    assert "10.0.0.7: private range" in info.value.message
    assert http.connected == []


def test_the_checked_address_is_the_one_connected_to(port):
    # The second lookup would say 169.254.169.254 (DNS rebinding): there is none.
    resolver = Resolver({"rebind.test": [["127.0.0.1"], ["169.254.169.254"]]})
    http = Recording(LOCAL, resolver=resolver)
    response = http.request("GET", f"http://rebind.test:{port}/", timeout=TIMEOUT)
    assert response.status == 200
    assert resolver.calls == ["rebind.test"]
    assert http.connected == ["127.0.0.1"]
    assert Handler.seen[-1]["host"] == f"rebind.test:{port}"  # Host is the URL's name


def test_the_next_checked_address_is_tried_when_one_does_not_connect(port):
    # The server listens on 127.0.0.1 only: 127.0.0.2 refuses the connection.
    http = Recording(LOCAL, resolver=Resolver({"two.test": ["127.0.0.2", "127.0.0.1"]}))
    response = http.request("GET", f"http://two.test:{port}/", timeout=TIMEOUT)
    assert response.status == 200 and response.address == "127.0.0.1"
    assert http.connected == ["127.0.0.2", "127.0.0.1"]


def test_own_port_is_refused_before_connecting(port):
    policy = NetPolicy(allow_loopback=True, reserved_ports=((port, "the scheduler's REST API port (SCHEDULER_API_PORT)"),))
    http = Recording(policy)
    with pytest.raises(TargetRefused) as info:
        http.request("GET", f"http://127.0.0.1:{port}/", timeout=TIMEOUT)
    assert info.value.message == f"refused 127.0.0.1:{port}: the scheduler's REST API port (SCHEDULER_API_PORT)"
    assert http.connected == []


def test_redirects_are_handed_back_not_followed(port):
    http = Recording(LOCAL)
    response = http.request("GET", f"http://127.0.0.1:{port}/metadata-redirect", timeout=TIMEOUT)
    assert response.status == 302
    assert http.connected == ["127.0.0.1"]


def test_body_is_capped(port):
    response = open_checked(f"http://127.0.0.1:{port}/big", timeout=TIMEOUT, max_body=1000, policy=LOCAL)
    assert response.truncated is True and response.body == b"y" * 1000


# --- https: SNI and certificate checked against the URL's name, not the address -------
@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "svc.test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("svc.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_file, key_file)
    sni_seen: list[str | None] = []
    server_ctx.sni_callback = lambda sock, server_name, ctx: sni_seen.append(server_name)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = server_ctx.wrap_socket(httpd.socket, server_side=True)
    serve(httpd)
    client_ctx = ssl.create_default_context(cafile=str(cert_file))
    try:
        yield httpd.server_address[1], client_ctx, sni_seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_https_keeps_sni_and_host_of_the_url(tls):
    port, client_ctx, sni_seen = tls
    http = Recording(LOCAL, resolver=Resolver({"svc.test": ["127.0.0.1"]}), ssl_context=client_ctx)
    response = http.request("GET", f"https://svc.test:{port}/tls", timeout=TIMEOUT)
    assert response.status == 200
    assert http.connected == ["127.0.0.1"]
    assert sni_seen[-1] == "svc.test"
    assert Handler.seen[-1]["host"] == f"svc.test:{port}"


def test_https_certificate_must_match_the_urls_name(tls):
    port, client_ctx, _ = tls
    http = GuardedHttp(LOCAL, resolver=Resolver({"other.test": ["127.0.0.1"]}), ssl_context=client_ctx)
    with pytest.raises(urllib3.exceptions.SSLError):
        http.request("GET", f"https://other.test:{port}/", timeout=TIMEOUT)


# --- the http kind on top of it ------------------------------------------------------------
def run_http(config: dict, deps: KindDeps):
    kind = get_kind("http")
    return execute(kind, kind.validate_config(config), FakeContext(), deps, 5.0)


def test_http_kind_refusal_is_permanent_and_names_address_and_rule():
    deps = KindDeps(policy=AgentPolicy(net=AWS))
    out = run_http({"url": "http://169.254.169.254/latest/meta-data/?x=secret"}, deps)
    assert out.category is ErrorCategory.PERMANENT
    assert out.message == (
        "GET http://169.254.169.254/latest/meta-data/: refused 169.254.169.254: link-local range 169.254.0.0/16"
    )


def test_http_kind_name_resolving_to_loopback_in_aws_mode(port):
    deps = KindDeps(policy=AgentPolicy(net=AWS), resolver=Resolver({"localtest.me": ["127.0.0.1"]}))
    out = run_http({"url": f"http://localtest.me:{port}/"}, deps)
    assert out.category is ErrorCategory.PERMANENT
    assert "refused 127.0.0.1: loopback range 127.0.0.0/8" in out.message


def test_http_kind_redirect_to_metadata_is_not_followed(port):
    # In AWS, with loopback allowed for this test's server only through the allow-list.
    policy = NetPolicy.from_settings(aws_settings(SCHEDULER_HTTP_ALLOW_CIDRS="127.0.0.0/8"))
    http = Recording(policy)
    out = run_http({"url": f"http://127.0.0.1:{port}/metadata-redirect"}, KindDeps(http=http))
    assert out.category is ErrorCategory.PERMANENT
    assert "HTTP 302" in out.message
    assert "redirect to http://169.254.169.254/latest/meta-data/iam/ not followed" in out.message
    assert http.connected == ["127.0.0.1"]  # nothing ever went to 169.254.169.254


def test_http_kind_keeps_at_most_64_kb(port):
    out = run_http({"url": f"http://127.0.0.1:{port}/big"}, KindDeps(policy=AgentPolicy(net=LOCAL)))
    assert out.ok and out.output["bodyTruncated"] is True


def test_http_kind_local_mode_refuses_own_port(port):
    settings = Settings.from_env({"SCHEDULER_API_PORT": str(port)})
    out = run_http({"url": f"http://localhost:{port}/api/health"},
                   KindDeps(policy=AgentPolicy.from_settings(settings), resolver=Resolver({"localhost": ["127.0.0.1"]})))
    assert out.category is ErrorCategory.PERMANENT
    assert f"refused 127.0.0.1:{port}: the scheduler's REST API port (SCHEDULER_API_PORT)" in out.message
