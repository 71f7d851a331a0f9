"""Real registries on 127.0.0.1 for tests and the sandbox: docker-registry, a JWT token endpoint, a proxy."""

from __future__ import annotations

import base64
import datetime
import http.client
import json
import shutil
import socket
import struct
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

ECR_ACCOUNT_HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
ECR_USER, ECR_PASSWORD = "AWS", "123456789012-auth-token"  # what moto's get_authorization_token returns


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # answering, even 401
        except OSError:
            if time.monotonic() > end:
                raise RuntimeError(f"{url} did not come up") from None
            time.sleep(0.05)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    #: connections accepted so far (counted by the one thread that accepts them)
    connections = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections += 1
        super().process_request(request, client_address)


def _serve(respond: Callable[[BaseHTTPRequestHandler], None], *, keep_alive: bool = False) -> _Server:
    """An HTTP server on a free loopback port that hands every request, whatever its method, to `respond`.
    With `keep_alive` it speaks HTTP/1.1 and keeps connections open, as a real registry does (every answer must then
    carry its Content-Length); without, each answer ends its connection (HTTP/1.0), so a fault may answer freely."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            respond(self)

        do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = do_GET

    server = _Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name=getattr(respond, "__qualname__", "serve")).start()
    return server


#: a fault injected into a server: may answer the request itself (True) or let it through (False)
Fault = Callable[[BaseHTTPRequestHandler], bool]


# -- token endpoint ------------------------------------------------------------------------------------------------


@dataclass
class TokenRequest:
    scopes: list[str]
    service: str | None
    username: str | None


@dataclass
class TokenServer:
    """Docker Hub's auth.docker.io in small: RS256 JWTs with an x5c header, pull for all, push for the one user."""

    workdir: Path
    username: str = "hubuser"
    password: str = "hub-access-token-s3cret"
    service: str = "test-registry"
    issuer: str = "test-token-issuer"
    expires_in: int = 300
    requests: list[TokenRequest] = field(default_factory=list)
    fail_with: int | None = None  # answer every request with this status (a failing token endpoint)
    #: path-and-query fragment (a scope, say) -> a fault that may answer the request itself, as HubProxy's faults
    faults: dict[str, Fault] = field(default_factory=dict)
    #: the host name the realm is announced under (`localhost` puts it on "another host" than 127.0.0.1)
    realm_host: str = "127.0.0.1"
    #: whether an anonymous request gets a pull token (Docker Hub: yes, for public repositories)
    anonymous_pull: bool = True

    def __post_init__(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test token issuer")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cert_path = self.workdir / "token-cert.pem"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._key = key
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self._server = _serve(self._answer)
        self.realm = f"http://{self.realm_host}:{self._server.server_port}/token"

    def _answer(self, h: BaseHTTPRequestHandler) -> None:
        for fragment, fault in list(self.faults.items()):
            if fragment in unquote(h.path) and fault(h):
                return
        query = parse_qs(urlsplit(h.path).query)
        user = None
        auth = h.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            if (user, password) != (self.username, self.password):
                self._reply(h, 401, {"details": "incorrect username or password"})
                return
        scopes = query.get("scope", [])
        self.requests.append(TokenRequest(scopes, query.get("service", [""])[0] or None, user))
        if self.fail_with:
            self._reply(h, self.fail_with, {"details": "token service unavailable"})
            return
        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":", 2) if scope.count(":") >= 2 else (scope, "", "")
            allowed = [
                a
                for a in actions.split(",")
                if (a == "pull" and (user or self.anonymous_pull)) or (user and a in ("push", "delete"))
            ]
            access.append({"type": kind, "name": name, "actions": allowed})
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,
            "iat": now,
            "nbf": now - 5,
            "exp": now + self.expires_in,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"x5c": [self._x5c]})
        self._reply(h, 200, {"token": token, "access_token": token, "expires_in": self.expires_in})

    @staticmethod
    def _reply(h: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# -- registry ------------------------------------------------------------------------------------------------------


class Registry:
    """A real distribution registry (`docker-registry serve`) on 127.0.0.1, with no auth, Basic or Bearer tokens."""

    def __init__(self, workdir: Path, *, basic: tuple[str, str] | None = None, token: TokenServer | None = None):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.basic = basic
        config = [
            "version: 0.1",
            "log:",
            "  level: error",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {workdir / 'data'}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            "  secret: test-only-http-secret",
        ]
        if basic:
            htpasswd = workdir / "htpasswd"
            line = subprocess.run(["htpasswd", "-Bbn", *basic], check=True, capture_output=True, text=True).stdout
            htpasswd.write_text(line.strip() + "\n")
            config += ["auth:", "  htpasswd:", "    realm: test-ecr", f"    path: {htpasswd}"]
        if token:
            config += [
                "auth:",
                "  token:",
                f"    realm: {token.realm}",
                f"    service: {token.service}",
                f"    issuer: {token.issuer}",
                f"    rootcertbundle: {token.cert_path}",
            ]
        (workdir / "config.yml").write_text("\n".join(config) + "\n")
        self._log = (workdir / "registry.log").open("wb")
        self.process = subprocess.Popen(
            [shutil.which("docker-registry") or "docker-registry", "serve", str(workdir / "config.yml")],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_http(f"{self.url}/v2/")
        except RuntimeError:
            self.close()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def location(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


# -- proxy ---------------------------------------------------------------------------------------------------------


class _Front:
    """A stand-in HTTP server of ours on loopback (`_server`): where clients reach it, and how it stops."""

    _server: _Server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def location(self) -> str:
        return f"127.0.0.1:{self._server.server_port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class HubProxy(_Front):
    """A reverse proxy in front of a registry that answers like Docker Hub: `ratelimit-*` headers on manifest
    requests, where only a GET counts as a pull. `faults` maps a path fragment to a function that may answer
    the request itself (return True) to inject a fault; `requests` records (method, path) of all requests.
    """

    def __init__(self, upstream: Registry, *, limit: int = 100, keep_alive: bool = False) -> None:
        self.upstream = upstream
        self.limit = limit
        self.remaining = limit
        self.faults: dict[str, Fault] = {}
        self.requests: list[tuple[str, str]] = []
        #: tags per page of `GET …/tags/list` (None: pass the registry's answer through)
        self.tags_page: int | None = 100
        self.tag_pages_served = 0
        #: seconds added before each answer: the latency of a registry across the internet (benchmarks)
        self.delay = 0.0
        self._lock = threading.Lock()
        #: with keep_alive, each serving thread keeps one connection to the registry behind, as a front end does
        self._keep_alive = keep_alive
        self._behind = threading.local()
        self._server = _serve(self._forward, keep_alive=keep_alive)

    def pulls(self) -> int:
        return self.limit - self.remaining

    @property
    def connections(self) -> int:
        """Connections clients have opened to the proxy so far."""
        return self._server.connections

    def _forward(self, h: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append((h.command, h.path))
        if self.delay:
            time.sleep(self.delay)
        for fragment, fault in list(self.faults.items()):
            if fragment in h.path and fault(h):
                h.close_connection = True  # a fault's answer may carry no length: its end is the connection's
                return
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else None
        kept = getattr(self._behind, "conn", None) if self._keep_alive else None
        conn = kept or http.client.HTTPConnection("127.0.0.1", self.upstream.port, timeout=30)
        headers: dict[str, str] = {}
        for key, value in h.headers.items():  # repeated headers (skopeo sends several Accept lines) are joined
            if key.lower() not in ("host", "connection"):
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
        listing = h.command == "GET" and urlsplit(h.path).path.endswith("/tags/list") and self.tags_page is not None
        # Tag lists are paged here, as Docker Hub pages them: the registry behind gives the whole list.
        target = urlsplit(h.path).path if listing else h.path
        try:
            conn.request(h.command, target, body=body, headers=headers)
            response = conn.getresponse()
        except (OSError, http.client.HTTPException):
            if kept is None:
                raise
            conn.close()  # the kept connection was closed by the registry behind: once more on a new one
            conn = http.client.HTTPConnection("127.0.0.1", self.upstream.port, timeout=30)
            conn.request(h.command, target, body=body, headers=headers)
            response = conn.getresponse()
        data = response.read()
        if self._keep_alive and not response.will_close:
            self._behind.conn = conn
        else:
            conn.close()
            self._behind.conn = None
        link = None
        if listing and response.status == 200:
            data, link = self._page(h.path, data)
        h.send_response(response.status)
        if link:
            h.send_header("Link", link)
        for key, value in response.getheaders():
            if key.lower() in ("connection", "transfer-encoding", "content-length", "location", "link"):
                continue
            h.send_header(key, value)
        location = response.getheader("Location")
        if location:
            h.send_header("Location", location.replace(self.upstream.location, self.location))
        if "/manifests/" in h.path:
            with self._lock:
                if h.command == "GET" and response.status == 200:
                    self.remaining = max(0, self.remaining - 1)
                remaining = self.remaining
            h.send_header("ratelimit-limit", f"{self.limit};w=21600")
            h.send_header("ratelimit-remaining", f"{remaining};w=21600")
        h.send_header(
            "Content-Length", str(len(data) if h.command != "HEAD" else response.getheader("Content-Length") or 0)
        )
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    def _page(self, path: str, data: bytes) -> tuple[bytes, str | None]:
        """One page of a tag list: at most `n` (and at most `tags_page`) tags after `last`, and the next Link."""
        assert self.tags_page is not None
        query = parse_qs(urlsplit(path).query)
        size = min(int(query.get("n", [self.tags_page])[0] or self.tags_page), self.tags_page)
        listing = json.loads(data)
        tags = sorted(listing.get("tags") or [])
        last = query.get("last", [None])[0]
        after = [t for t in tags if last is None or t > last]
        page, more = after[:size], len(after) > size
        with self._lock:
            self.tag_pages_served += 1
        link = f'<{urlsplit(path).path}?n={size}&last={page[-1]}>; rel="next"' if more and page else None
        return json.dumps({"name": listing.get("name"), "tags": page}).encode(), link


# -- registry.k8s.io ------------------------------------------------------------------------------------------------


class K8sFront(_Front):
    """registry.k8s.io's front end (archeio) in front of a registry standing in for its Artifact Registry backend,
    as kubernetes/registry.k8s.io documents and implements it (cmd/archeio/docs/request-handling.md,
    cmd/archeio/internal/app/handlers.go):

    - only GET and HEAD (else 405); `/v2/` answers 401 with a Bearer challenge whose realm is its own `/token`, which
      hands out a pull-correlation "token" (32 hex digits, not authentication), and 200 to a request bearing one;
      `/v2/_catalog` is 404;
    - every other `/v2/…` request (manifests, tags, and blobs for a client on no known AWS or GCP address, as here)
      is a 307 to `<backend>/v2/k8s-artifacts-prod/images/<rest of the path>?rid=<trace id>`: the path only, the
      query dropped (`upstreamRedirectURL` joins `r.URL.Path`), with Go's `http.Redirect` body on GET.

    The backend is a public Artifact Registry repository: reads need no token (the archeio comment says so), so a
    registry without auth stands in for it. `redirect_to` sends the redirects elsewhere (a rule-breaking hop)."""

    def __init__(self, backend_url: str, *, path: str = "k8s-artifacts-prod/images") -> None:
        self.backend = backend_url
        self.path = path
        self.redirect_to: str | None = None
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server = _serve(self._answer, keep_alive=True)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
        h.send_response(status)
        for key, value in headers.items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def _answer(self, h: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append((h.command, h.path))
        text = {"Content-Type": "text/plain; charset=utf-8"}
        if h.command not in ("GET", "HEAD"):
            self._send(h, 405, b"Only GET and HEAD are allowed.\n", text)
            return
        path = urlsplit(h.path).path
        trace = uuid.uuid4().hex
        if path in ("/v2/", "/v2"):
            headers = {"Docker-Distribution-Api-Version": "registry/2.0", "X-Request-ID": trace}
            bearer = (h.headers.get("Authorization") or "").removeprefix("Bearer ")
            if len(bearer) == 32 and all(c in "0123456789abcdefABCDEF" for c in bearer):
                self._send(h, 200, b"", headers)
                return
            host = h.headers.get("Host") or self.location
            headers["WWW-Authenticate"] = f'Bearer realm="http://{host}/token",service="{host}"'
            self._send(h, 401, b"authentication required\n", {**headers, **text})
        elif path == "/token":
            body = json.dumps({"token": trace, "expires_in": 3600}).encode()
            self._send(h, 200, body, {"Content-Type": "application/json", "X-Request-ID": trace})
        elif path == "/v2/_catalog":
            self._send(h, 404, b"_catalog is not supported\n", text)
        elif path.startswith("/v2/"):
            target = f"{self.redirect_to or self.backend}/v2/{self.path}/{path[len('/v2/') :]}?rid={trace}"
            body = f'<a href="{target}">Temporary Redirect</a>.\n\n'.encode()
            self._send(h, 307, body, {"Location": target, "Content-Type": "text/html; charset=utf-8"})
        else:
            self._send(h, 404, b"404 page not found\n", text)


def auth_file(path: Path, logins: dict[str, tuple[str, str]]) -> Path:
    """A containers auth file (`REGISTRY_AUTH_FILE`) with Basic logins per registry location."""
    auths = {loc: {"auth": base64.b64encode(f"{u}:{p}".encode()).decode()} for loc, (u, p) in logins.items()}
    path.write_text(json.dumps({"auths": auths}))
    path.chmod(0o600)
    return path


def answer(status: int, headers: dict[str, str] | None = None, body: bytes = b"", *, times: int | None = None) -> Fault:
    """A fault that answers `status` itself (the first `times` requests only, when given), else passes through."""
    left = [times]

    def fault(h: BaseHTTPRequestHandler) -> bool:
        if left[0] is not None:
            if left[0] <= 0:
                return False
            left[0] -= 1
        h.send_response(status)
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)
        return True

    return fault


def reset(*, times: int | None = None) -> Fault:
    """Close the connection with a TCP reset instead of answering."""
    left = [times]

    def fault(h: BaseHTTPRequestHandler) -> bool:
        if left[0] is not None:
            if left[0] <= 0:
                return False
            left[0] -= 1
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.connection.close()
        h.close_connection = True
        return True

    return fault


def hang(seconds: float = 15.0) -> Fault:
    """Accept the request and never answer (for `seconds`, so the test's threads still end)."""

    def fault(h: BaseHTTPRequestHandler) -> bool:
        time.sleep(seconds)
        h.close_connection = True
        return True

    return fault


def _limited(times: int | None) -> Callable[[], bool]:
    left = [times]

    def take() -> bool:
        if left[0] is None:
            return True
        if left[0] <= 0:
            return False
        left[0] -= 1
        return True

    return take


def drip(body: bytes = b'{"token": "' + b"x" * 200 + b'"}', *, every: float = 0.5, headers_too: bool = False) -> Fault:
    """Answer 200, then send one byte every `every` seconds (the headers too, with `headers_too`): each read
    returns in time, so only a limit over the whole exchange ends it. Stops when the client hangs up."""

    def fault(h: BaseHTTPRequestHandler) -> bool:
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Docker-Content-Digest: sha256:" + "0" * 64 + "\r\n\r\n"
        ).encode()
        try:
            if headers_too:
                for i in range(len(head)):
                    h.wfile.write(head[i : i + 1])
                    h.wfile.flush()
                    time.sleep(every)
            else:
                h.wfile.write(head)
            if h.command != "HEAD":
                for i in range(len(body)):
                    h.wfile.write(body[i : i + 1])
                    h.wfile.flush()
                    time.sleep(every)
        except OSError:
            pass
        h.close_connection = True
        return True

    return fault


def huge(size: int = 100 * 2**20, *, chunked: bool = False) -> Fault:
    """Answer 200 with a body of `size` bytes (announced by Content-Length, or chunked without a length)."""

    def fault(h: BaseHTTPRequestHandler) -> bool:
        block = b" " * 2**16
        try:
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            if chunked:
                h.send_header("Transfer-Encoding", "chunked")
            else:
                h.send_header("Content-Length", str(size))
            h.end_headers()
            sent = 0
            while sent < size:
                piece = block[: size - sent]
                h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
            if chunked:
                h.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client stopped reading, as it should
        h.close_connection = True
        return True

    return fault


def redirect_loop() -> Fault:
    """Redirect every request to itself."""

    def fault(h: BaseHTTPRequestHandler) -> bool:
        h.send_response(302)
        h.send_header("Location", h.path)
        h.send_header("Content-Length", "0")
        h.end_headers()
        return True

    return fault


def cut_off(*, times: int | None = None) -> Fault:
    """Start a chunked JSON body and close the connection mid-way (a flaky link to a token service)."""
    take = _limited(times)

    def fault(h: BaseHTTPRequestHandler) -> bool:
        if not take():
            return False
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        piece = b'{"token": "eyJhbGciOiJSUzI1NiJ9.'
        h.wfile.write(b"%x\r\n%s\r\n" % (100, piece))
        h.wfile.flush()
        h.close_connection = True
        return True

    return fault


def put_tags(
    registry_url: str, repository: str, manifest: bytes, media_type: str, tags: list[str], *, headers: dict[str, str]
) -> None:
    """Point many tags at one manifest with the registry API (far faster than a skopeo copy per tag)."""
    import requests

    with requests.Session() as session:
        for tag in tags:
            response = session.put(
                f"{registry_url}/v2/{repository}/manifests/{tag}",
                data=manifest,
                headers={"Content-Type": media_type, **headers},
                timeout=10,
            )
            response.raise_for_status()


def push_token(tokens: TokenServer, repository: str) -> str:
    """A token allowing pull and push on `repository`, as the one authorised user."""
    import requests

    response = requests.get(
        tokens.realm,
        params={"service": tokens.service, "scope": f"repository:{repository}:pull,push"},
        auth=(tokens.username, tokens.password),
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["token"])
