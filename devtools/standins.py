"""Stand-ins for named public registries: a front end on loopback in front of a real registry (`Registry`, no
auth), answering every request the function and the build's skopeo make as that registry answers it. What each
registry does is data (`Profile`), each behaviour with a comment naming where it is documented; the mechanics
(tokens, challenges, blob redirects to a second "CDN" host, tag-list pages, error bodies) are written once here.

The registries themselves are in `devtools.profiles`."""

from __future__ import annotations

import http.client
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from devtools.registries import Registry, _Front, _serve

#: the error codes of the distribution spec a stand-in answers with (its `errors` table gives status and message)
ErrorKind = Literal["unauthorized", "denied", "manifest_unknown", "name_unknown", "blob_unknown", "unsupported"]


@dataclass(frozen=True)
class Tags:
    """How a registry pages `GET /v2/<name>/tags/list`."""

    #: tags a page when the request names no `n`; None: the whole list
    default: int | None = None
    #: the most tags a page holds whatever `n` asks; None: as many as `n` asks
    maximum: int | None = None
    #: whether `n` is read at all (gcr.io ignores it and answers every tag)
    honours_n: bool = True
    #: the query parameter the next page's Link carries: `last` (the spec's) or Quay's opaque `next_page`
    cursor: Literal["last", "next_page"] = "last"
    #: whether the Link is an absolute URL (else a path, as the spec's examples and distribution send)
    absolute_link: bool = False
    #: what else the body carries beside `name` and `tags` (gcr.io's `child` and `manifest` maps)
    extra: Callable[[list[str]], dict[str, Any]] | None = None


@dataclass(frozen=True)
class Profile:
    """What a registry answers, as data. Every field is one documented behaviour (see `devtools.profiles`)."""

    #: the name users write (`ghcr.io`)
    name: str
    #: `service` in the Bearer challenge; None: the registry answers without a challenge (anonymous reads)
    service: str | None
    #: where the token endpoint is on the registry's own host (`/token`), or None for one on a host of its own
    token_path: str | None = "/token"
    #: extra challenge parameters for `/v2/` (public.ecr.aws's `scope="aws"`)
    ping_scope: str | None = None
    #: whether a challenge for a repository request names the scope (`repository:<name>:pull`)
    challenge_scope: bool = True
    #: the token endpoint's answer for a token value
    token_body: Callable[[str], dict[str, Any]] = lambda t: {"token": t}
    #: the status `GET /v2/` answers without a token (401 with the challenge; 200 where reads are anonymous)
    ping_status: int = 401
    #: whether a manifest, tag list or blob may be read without any token (registries answering without challenge)
    anonymous_reads: bool = False
    #: whether a HEAD of a manifest carries Docker-Content-Digest
    head_digest: bool = True
    #: the status a blob GET is redirected with (to the "CDN" host), or None where the registry serves it itself
    blob_redirect: int | None = 307
    #: the path a blob's redirect names on the CDN host (`{digest}` and `{name}` filled in), before its signature
    blob_path: str = "/blobs/{digest}"
    #: Docker Hub's rate-limit headers on manifest answers, only GET counting as a pull
    rate_limit: bool = False
    tags: Tags = field(default_factory=Tags)
    #: per error kind: the status and the `errors[0]` object the registry answers with ({name} and {reference})
    errors: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    #: the answer to a repository that does not exist (Docker Hub: `unauthorized`, as for a private one)
    missing_repository: ErrorKind = "name_unknown"
    #: headers every answer carries
    headers: dict[str, str] = field(default_factory=lambda: {"Docker-Distribution-Api-Version": "registry/2.0"})


#: the distribution spec's error codes and messages, the default of every profile (distribution registry/api/errcode)
SPEC_ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "unauthorized": (401, {"code": "UNAUTHORIZED", "message": "authentication required", "detail": None}),
    "denied": (403, {"code": "DENIED", "message": "requested access to the resource is denied", "detail": None}),
    "manifest_unknown": (404, {"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": None}),
    "name_unknown": (404, {"code": "NAME_UNKNOWN", "message": "repository name not known to registry", "detail": None}),
    "blob_unknown": (404, {"code": "BLOB_UNKNOWN", "message": "blob unknown to registry", "detail": None}),
    "unsupported": (405, {"code": "UNSUPPORTED", "message": "The operation is unsupported.", "detail": None}),
}


@dataclass
class Seen:
    """One request a stand-in received."""

    host: Literal["registry", "auth", "cdn"]
    method: str
    path: str
    authorization: str | None


class RegistryFront(_Front):
    """`profile`'s registry on loopback in front of `backend` (a registry without auth, holding the images).

    It hands out its own tokens (opaque, per scope, expiring) and checks them on every repository request; blob GETs
    are redirected to a second server (`cdn_url`), which serves a blob only on the signed URL it was sent to;
    a token endpoint on a host of its own (`token_path=None`: auth.docker.io) is a third. `requests` records them
    all; `pulls` counts manifest GETs (what Docker Hub counts)."""

    def __init__(self, profile: Profile, backend: Registry) -> None:
        self.profile = profile
        self.backend = backend
        self.requests: list[Seen] = []
        self.pulls = 0
        self.limit = 100
        self._tokens: dict[str, tuple[frozenset[str], float]] = {}
        self._signed: dict[str, str] = {}  # signature -> the backend path it may read
        self._cursors: dict[str, str] = {}  # Quay's next_page -> the last tag of the page before
        self._lock = threading.Lock()
        self._behind = threading.local()
        self._server = _serve(self._registry, keep_alive=True)
        self._cdn = _serve(self._serve_blob, keep_alive=True)
        self._auth = _serve(self._token_answer, keep_alive=True) if profile.token_path is None else None

    @property
    def cdn_url(self) -> str:
        return f"http://127.0.0.1:{self._cdn.server_port}"

    @property
    def realm(self) -> str:
        if self._auth is not None:
            return f"http://127.0.0.1:{self._auth.server_port}/token"
        return f"{self.url}{self.profile.token_path}"

    def seen(self, host: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.requests if s.host == host]

    def close(self) -> None:
        for server in (self._cdn, self._auth):
            if server is not None:
                server.shutdown()
                server.server_close()
        super().close()

    # -- answering ------------------------------------------------------------------------------------------------

    def _record(self, host: Literal["registry", "auth", "cdn"], h: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append(Seen(host, h.command, h.path, h.headers.get("Authorization")))

    def _send(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        *,
        length: str | None = None,
    ) -> None:
        h.send_response(status)
        for key, value in {**self.profile.headers, **(headers or {})}.items():
            h.send_header(key, value)
        h.send_header("Content-Length", length if length is not None else str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def _error(self, h: BaseHTTPRequestHandler, kind: str, headers: dict[str, str] | None = None, **names: str) -> None:
        status, error = self.profile.errors.get(kind) or SPEC_ERRORS[kind]
        filled = json.loads(
            json.dumps(error)
            .replace("{name}", names.get("name", ""))
            .replace("{reference}", names.get("reference", ""))
        )
        body = json.dumps({"errors": [filled]}).encode()
        self._send(h, status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})

    def _challenge(self, scope: str | None) -> dict[str, str]:
        p = self.profile
        params = [f'realm="{self.realm}"', f'service="{p.service}"']
        if scope is not None:
            params.append(f'scope="{scope}"')
        return {"WWW-Authenticate": "Bearer " + ",".join(params)}

    def _granted(self, h: BaseHTTPRequestHandler, scope: str) -> bool:
        if self.profile.anonymous_reads:
            return True
        value = (h.headers.get("Authorization") or "").removeprefix("Bearer ")
        with self._lock:
            grant = self._tokens.get(value)
        return grant is not None and grant[1] > time.monotonic() and scope in grant[0]

    def _registry(self, h: BaseHTTPRequestHandler) -> None:
        self._record("registry", h)
        path = urlsplit(h.path).path
        p = self.profile
        if p.token_path is not None and path == p.token_path:
            self._token_answer(h, record=False)
            return
        if path in ("/v2/", "/v2"):
            if p.ping_status == 200 or self._valid_token(h):
                self._send(h, 200, b"{}", {"Content-Type": "application/json"})
            else:
                self._error(h, "unauthorized", self._challenge(p.ping_scope))
            return
        name, kind, reference = _api_path(path)
        if name is None:
            self._send(h, 404, b"404 page not found\n", {"Content-Type": "text/plain; charset=utf-8"})
            return
        if h.command not in ("GET", "HEAD"):
            self._error(h, "unsupported")
            return
        scope = f"repository:{name}:pull"
        if not self._granted(h, scope):
            self._error(h, "unauthorized", self._challenge(scope if p.challenge_scope else None))
            return
        if kind == "tags":
            self._tag_page(h, name)
        elif kind == "blobs" and h.command == "GET" and p.blob_redirect is not None:
            self._redirect_blob(h, name, reference)
        else:
            self._pass(h, name, kind, reference)

    def _valid_token(self, h: BaseHTTPRequestHandler) -> bool:
        value = (h.headers.get("Authorization") or "").removeprefix("Bearer ")
        with self._lock:
            grant = self._tokens.get(value)
        return grant is not None and grant[1] > time.monotonic()

    def _token_answer(self, h: BaseHTTPRequestHandler, *, record: bool = True) -> None:
        if record:
            self._record("auth", h)
        query = parse_qs(urlsplit(h.path).query)
        granted = set()
        for scope in query.get("scope", []):  # `repository:<name>:<actions>`: pull is granted to anyone
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind == "repository" and "pull" in actions.split(","):
                granted.add(f"repository:{name}:pull")
        value = secrets.token_urlsafe(32)
        body = self.profile.token_body(value)
        lifetime = body["expires_in"] if isinstance(body.get("expires_in"), int) else 60
        with self._lock:
            self._tokens[value] = (frozenset(granted), time.monotonic() + lifetime)
        self._send(h, 200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def _behind_request(self, method: str, target: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """`method target` on the backend over this thread's kept connection (once more on a new one if the kept
        one was closed)."""
        for fresh in (False, True):
            conn = None if fresh else getattr(self._behind, "conn", None)
            conn = conn or http.client.HTTPConnection("127.0.0.1", self.backend.port, timeout=30)
            try:
                conn.request(method, target, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self._behind.conn = None
                if fresh:
                    raise
                continue
            self._behind.conn = None if response.will_close else conn
            return response.status, {k: v for k, v in response.getheaders()}, data
        raise AssertionError("unreachable")

    def _pass(self, h: BaseHTTPRequestHandler, name: str, kind: str, reference: str) -> None:
        accept = ", ".join(h.headers.get_all("Accept") or [])
        status, headers, data = self._behind_request(
            h.command, f"/v2/{name}/{kind}/{reference}", {"Accept": accept} if accept else {}
        )
        if status == 404:
            self._not_found(h, name, kind, reference)
            return
        keep = {k: v for k, v in headers.items() if k.lower() in ("content-type", "docker-content-digest", "etag")}
        if kind == "manifests" and h.command == "HEAD" and not self.profile.head_digest:
            keep = {k: v for k, v in keep.items() if k.lower() != "docker-content-digest"}
        if kind == "manifests" and self.profile.rate_limit:
            keep.update(self._rate_limit(h.command == "GET" and status == 200))
        self._send(h, status, data, keep, length=headers.get("Content-Length") if h.command == "HEAD" else None)

    def _rate_limit(self, pulled: bool) -> dict[str, str]:
        with self._lock:
            if pulled:
                self.pulls += 1
            remaining = max(0, self.limit - self.pulls)
        return {
            "ratelimit-limit": f"{self.limit};w=21600",
            "ratelimit-remaining": f"{remaining};w=21600",
            "docker-ratelimit-source": "127.0.0.1",
        }

    def _not_found(self, h: BaseHTTPRequestHandler, name: str, kind: str, reference: str) -> None:
        status, _, _ = self._behind_request("GET", f"/v2/{name}/tags/list", {})
        if status == 404:  # no such repository
            kind_of = self.profile.missing_repository
            headers = self._challenge(f"repository:{name}:pull") if kind_of == "unauthorized" else None
            self._error(h, kind_of, headers, name=name, reference=reference)
        else:
            self._error(h, "blob_unknown" if kind == "blobs" else "manifest_unknown", name=name, reference=reference)

    # -- blobs, from the "CDN" ------------------------------------------------------------------------------------

    def _redirect_blob(self, h: BaseHTTPRequestHandler, name: str, digest: str) -> None:
        signature = secrets.token_hex(16)
        with self._lock:
            self._signed[signature] = f"/v2/{name}/blobs/{digest}"
        path = self.profile.blob_path.format(digest=digest, name=name)
        expires = int(time.time()) + 600
        location = f"{self.cdn_url}{path}?{urlencode({'expires': expires, 'signature': signature})}"
        body = f'<a href="{location}">Temporary Redirect</a>.\n\n'.encode()
        self._send(
            h,
            self.profile.blob_redirect or 307,
            body,
            {"Location": location, "Content-Type": "text/html; charset=utf-8"},
        )

    def _serve_blob(self, h: BaseHTTPRequestHandler) -> None:
        """The CDN: a blob on the URL the registry signed, to anyone holding it, and nothing else. It is another
        host: a client that sent the registry's Authorization header here would leak it (S3 even refuses such a
        request: "Only one auth mechanism allowed")."""
        self._record("cdn", h)
        query = parse_qs(urlsplit(h.path).query)
        with self._lock:
            target = self._signed.get(query.get("signature", [""])[0])
        if target is None or h.command not in ("GET", "HEAD") or int(query.get("expires", ["0"])[0]) < time.time():
            self._send(h, 403, b"<Error><Code>AccessDenied</Code></Error>", {"Content-Type": "application/xml"})
            return
        if h.headers.get("Authorization"):
            self._send(
                h,
                400,
                b"<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>",
                {"Content-Type": "application/xml"},
            )
            return
        status, headers, data = self._behind_request(h.command, target, {})
        self._send(h, status, data, {"Content-Type": headers.get("Content-Type", "application/octet-stream")})

    # -- tag lists ------------------------------------------------------------------------------------------------

    def _tag_page(self, h: BaseHTTPRequestHandler, name: str) -> None:
        status, _, data = self._behind_request("GET", f"/v2/{name}/tags/list", {})
        if status == 404:
            kind_of = self.profile.missing_repository
            headers = self._challenge(f"repository:{name}:pull") if kind_of == "unauthorized" else None
            self._error(h, kind_of, headers, name=name, reference="")
            return
        rules = self.profile.tags
        query = parse_qs(urlsplit(h.path).query)
        tags = sorted(json.loads(data).get("tags") or [])
        if rules.cursor == "next_page":
            with self._lock:
                last = self._cursors.get(query.get("next_page", [""])[0])
        else:
            last = query.get("last", [None])[0]
        after = [t for t in tags if last is None or t > last]
        asked = query.get("n", [None])[0]
        size = int(asked) if asked and rules.honours_n else rules.default
        if size is not None and rules.maximum is not None:
            size = min(size, rules.maximum)
        page = after if size is None else after[:size]
        headers = {"Content-Type": "application/json"}
        if size is not None and len(after) > size and page:
            if rules.cursor == "next_page":
                cursor = secrets.token_urlsafe(12)
                with self._lock:
                    self._cursors[cursor] = page[-1]
                following = {"n": size, "next_page": cursor}
            else:
                following = {"n": size, "last": page[-1]}
            link = f"/v2/{name}/tags/list?{urlencode(following)}"
            headers["Link"] = f'<{self.url + link if rules.absolute_link else link}>; rel="next"'
        body: dict[str, Any] = {"name": name, "tags": page}
        if rules.extra is not None:
            body.update(rules.extra(page))
        self._send(h, 200, json.dumps(body).encode(), headers)


def _api_path(path: str) -> tuple[str | None, str, str]:
    """(repository, manifests|blobs|tags, reference) of a `/v2/` API path; (None, "", "") for any other."""
    rest = unquote(path).removeprefix("/v2/")
    if rest.endswith("/tags/list"):
        return rest[: -len("/tags/list")] or None, "tags", "list"
    for kind in ("manifests", "blobs"):
        name, found, reference = rest.rpartition(f"/{kind}/")
        if found and name and reference and "/" not in reference:
            return name, kind, reference
    return None, "", ""
