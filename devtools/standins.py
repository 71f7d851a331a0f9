"""Stand-ins for named public registries: a front end on loopback in front of a real registry (`Registry`, no
auth), answering every request the function and the build's skopeo make as that registry answers it. What each
registry does is data (`Profile`), each behaviour with a comment naming where it is documented; the mechanics
(tokens, challenges, blob redirects to a second "CDN" host, tag-list pages, error bodies) are written once here.

The registries themselves are in `devtools.profiles`."""

from __future__ import annotations

import base64
import http.client
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

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
    #: the next page's Link query, `{n}` and `{last}` filled in (the spec's order; Go's url.Values sorts the keys)
    link: str = "n={n}&last={last}"
    #: whether the Link is an absolute URL (else a path, as the spec's examples and distribution send)
    absolute_link: bool = False
    #: what else the body carries beside `name` and `tags` (gcr.io's `child` and `manifest` maps)
    extra: Callable[[list[str]], dict[str, Any]] | None = None


@dataclass(frozen=True)
class Profile:
    """What a registry answers, as data. Every field is one documented behaviour (see `devtools.profiles`)."""

    #: the name users write (`ghcr.io`)
    name: str
    #: `service` in the Bearer challenge (and the token request)
    service: str = ""
    #: whether the registry asks for a token at all (False: anonymous reads, `GET /v2/` answers 200)
    auth: bool = True
    #: where the token endpoint is on the registry's own host (`/token`), or None for one on a host of its own
    token_path: str | None = "/token"
    #: whether a repository request without any Authorization is served (a public Artifact Registry or gcr.io
    #: repository: `/v2/` still challenges, a bad token is still refused)
    anonymous_reads: bool = False
    #: whether `/v2/`'s challenge names the service (Artifact Registry's names it only on repository requests)
    ping_service: bool = True
    #: the body of `/v2/`'s 401 where it is not the spec's error (Quay's `true`)
    ping_body: bytes | None = None
    #: a scope `/v2/`'s challenge names (public.ecr.aws's `aws`)
    ping_scope: str | None = None
    #: whether a challenge for a repository request names the scope (`repository:<name>:pull`)
    challenge_scope: bool = True
    #: the token endpoint's answer for a token value
    token_body: Callable[[str], dict[str, Any]] = lambda t: {"token": t}
    #: how long a token it hands out is good for, whatever its answer says
    token_lifetime: float = 300.0
    #: what a request with a token it did not hand out (or one expired) gets: `unauthorized` (401 and a challenge)
    #: or another error kind of `errors` (public.ecr.aws: 400 DENIED, no challenge)
    invalid_token: str = "unauthorized"
    #: what a good token without the repository's scope gets: `unauthorized` (401, a challenge saying
    #: `error="insufficient_scope"`, as distribution's token auth answers) or another kind (cgr.dev: 403 denied)
    wrong_scope: str = "unauthorized"
    #: the status a blob GET is redirected with, or None where the registry serves it itself
    blob_redirect: int | None = 307
    #: where it is redirected: `cdn`, a host of its own (absolute Location), or `self`, a download path on the
    #: registry's own host (a relative Location: Artifact Registry's /artifacts-downloads/)
    blob_host: Literal["cdn", "self"] = "cdn"
    #: the path a blob's redirect names (`{digest}`, its `{hex}` and `{name}` filled in), before its signature
    blob_path: str = "/blobs/{digest}"
    #: whether the CDN refuses a request that carries an Authorization header (S3's presigned URLs: "Only one auth
    #: mechanism allowed"); elsewhere a CDN ignores it
    cdn_refuses_authorization: bool = False
    #: what a blob HEAD answers, where not as a GET would (public.ecr.aws: 401 even with a token)
    blob_head_status: int | None = None
    #: Docker Hub's rate-limit headers on manifest answers, only GET counting as a pull
    rate_limit: bool = False
    #: whether it serves OCI 1.1's referrers API (`GET /v2/<name>/referrers/<digest>`); else that path is a 404, as
    #: distribution answers an unknown route, and clients read the fallback tag
    referrers: bool = False
    tags: Tags = field(default_factory=Tags)
    #: per error kind: the status and the `errors[0]` object the registry answers with ({name} and {reference})
    errors: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    #: the answer to a repository that does not exist (Docker Hub: `unauthorized`, as for a private one)
    missing_repository: ErrorKind = "name_unknown"
    #: headers every answer carries
    headers: dict[str, str] = field(default_factory=lambda: {"Docker-Distribution-Api-Version": "registry/2.0"})

    def error(self, kind: str) -> tuple[int, dict[str, Any]]:
        """The status and `errors[0]` object of an error kind, the profile's own or the spec's."""
        return self.errors.get(kind) or SPEC_ERRORS[kind]


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

    def __init__(self, profile: Profile, backend: Registry, *, login: tuple[str, str] | None = None) -> None:
        self.profile = profile
        self.backend = backend
        #: a private registry: tokens only for this Basic login at the token endpoint (else 401)
        self.login = login
        self.requests: list[Seen] = []
        self.pulls = 0
        self.limit = 100
        self._tokens: dict[str, tuple[frozenset[str], float]] = {}
        #: (repository, subject digest) -> descriptors of the manifests pushed with that subject (`add_referrer`)
        self._referrers: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._signed: dict[str, str] = {}  # signature -> the backend path it may read
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
        if self._auth is not None:  # another host name, as auth.docker.io is to registry-1.docker.io
            return f"http://localhost:{self._auth.server_port}/token"
        return f"{self.url}{self.profile.token_path}"

    def add_referrer(self, name: str, manifest: bytes) -> str:
        """Push a manifest that has a `subject` to the backend by its digest, and index it under that subject as
        a registry with the referrers API does on push (distribution-spec v1.1, "Pushing Manifests with Subject":
        its descriptor carries the manifest's `artifactType`, else its config's media type, and its annotations).
        Its blobs must be in the backend already. Returns its digest."""
        import hashlib

        document = json.loads(manifest)
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        media_type = document["mediaType"]
        conn = http.client.HTTPConnection("127.0.0.1", self.backend.port, timeout=30)
        try:
            conn.request("PUT", f"/v2/{name}/manifests/{digest}", body=manifest, headers={"Content-Type": media_type})
            response = conn.getresponse()
            response.read()
            assert response.status == 201, response.status
        finally:
            conn.close()
        descriptor: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": len(manifest)}
        descriptor["artifactType"] = document.get("artifactType") or document["config"]["mediaType"]
        if document.get("annotations"):
            descriptor["annotations"] = document["annotations"]
        with self._lock:
            self._referrers.setdefault((name, document["subject"]["digest"]), []).append(descriptor)
        return digest

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
        """Note the request, and read its body (none is used): on a kept connection it must not be read as the
        next request."""
        length = h.headers.get("Content-Length") or "0"
        if length.isdigit() and int(length):
            h.rfile.read(int(length))
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
        status, error = self.profile.error(kind)
        filled = json.loads(
            json.dumps(error)
            .replace("{name}", names.get("name", ""))
            .replace("{reference}", names.get("reference", ""))
        )
        body = json.dumps({"errors": [filled]}).encode()
        self._send(h, status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})

    def _challenge(self, scope: str | None, *, ping: bool = False) -> dict[str, str]:
        p = self.profile
        params = [f'realm="{self.realm}"']
        if p.ping_service or not ping:
            params.append(f'service="{p.service}"')
        if scope is not None:
            params.append(f'scope="{scope}"')
        return {"WWW-Authenticate": "Bearer " + ",".join(params)}

    def _grant(self, h: BaseHTTPRequestHandler) -> frozenset[str] | None:
        """The scopes of the token the request bears, or None: no token, one not handed out here, or expired."""
        value = (h.headers.get("Authorization") or "").removeprefix("Bearer ")
        with self._lock:
            grant = self._tokens.get(value)
        return grant[0] if grant is not None and grant[1] > time.monotonic() else None

    def _refuse(
        self, h: BaseHTTPRequestHandler, scope: str | None, *, ping: bool = False, scoped: bool = False
    ) -> None:
        """No token: 401 and the challenge. A token that is no good: the profile's `invalid_token` answer; a good
        one without the scope (`scoped`): its `wrong_scope` answer."""
        p = self.profile
        kind = (p.wrong_scope if scoped else p.invalid_token) if h.headers.get("Authorization") else "unauthorized"
        if ping and kind == "unauthorized" and self.profile.ping_body is not None:
            self._send(
                h,
                401,
                self.profile.ping_body,
                {"Content-Type": "application/json", **self._challenge(scope, ping=True)},
            )
            return
        challenge = self._challenge(scope, ping=ping) if kind == "unauthorized" else None
        if challenge is not None and scoped:
            challenge["WWW-Authenticate"] += ',error="insufficient_scope"'
        self._error(h, kind, challenge)

    def _registry(self, h: BaseHTTPRequestHandler) -> None:
        self._record("registry", h)
        path = urlsplit(h.path).path
        p = self.profile
        if p.auth and p.token_path is not None and path == p.token_path:
            self._token_answer(h, record=False)
            return
        if path in ("/v2/", "/v2"):
            if not p.auth or self._grant(h) is not None:
                self._send(h, 200, b"{}", {"Content-Type": "application/json"})
            else:
                self._refuse(h, p.ping_scope, ping=True)
            return
        if p.blob_host == "self" and "signature=" in h.path and not path.startswith("/v2/"):
            self._serve_blob(h, record=False)  # a download URL it signed on its own host
            return
        name, kind, reference = _api_path(path)
        if kind == "referrers" and not p.referrers:
            name = None
        if name is None:
            self._send(h, 404, b"404 page not found\n", {"Content-Type": "text/plain; charset=utf-8"})
            return
        if h.command not in ("GET", "HEAD"):
            self._error(h, "unsupported")
            return
        scope = f"repository:{name}:pull"
        if p.auth and not (p.anonymous_reads and not h.headers.get("Authorization")):
            grant = self._grant(h)
            if grant is None or not (scope in grant or "*" in grant):
                self._refuse(h, scope if p.challenge_scope else None, scoped=grant is not None)
                return
        if kind == "tags":
            self._tag_page(h, name)
        elif kind == "referrers":
            self._referrers_page(h, name, reference)
        elif kind == "blobs" and h.command == "HEAD" and p.blob_head_status is not None:
            self._error(h, "unauthorized" if p.blob_head_status == 401 else "denied")
        elif kind == "blobs" and h.command == "GET" and p.blob_redirect is not None:
            self._redirect_blob(h, name, reference)
        else:
            self._pass(h, name, kind, reference)

    def _token_answer(self, h: BaseHTTPRequestHandler, *, record: bool = True) -> None:
        if record:
            self._record("auth", h)
        if self.login is not None:
            expected = "Basic " + base64.b64encode(":".join(self.login).encode()).decode()
            if h.headers.get("Authorization") != expected:
                self._error(h, "unauthorized")
                return
        query = parse_qs(urlsplit(h.path).query)
        granted = set()
        scopes = [part for value in query.get("scope", []) for part in value.split()]  # repeated, or space-separated
        for scope in scopes:  # `repository:<name>:<actions>`: pull is granted to anyone
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind == "repository" and "pull" in actions.split(","):
                granted.add(f"repository:{name}:pull")
            elif self.profile.ping_scope is not None and scope == self.profile.ping_scope:
                granted.add("*")  # the registry-wide scope its challenge names (public.ecr.aws: `aws`)
        value = secrets.token_urlsafe(32)
        body = self.profile.token_body(value)
        with self._lock:
            self._tokens[value] = (frozenset(granted), time.monotonic() + self.profile.token_lifetime)
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
        if status == 404:
            self._missing_repository(h, name, reference)
        else:
            self._error(h, "blob_unknown" if kind == "blobs" else "manifest_unknown", name=name, reference=reference)

    def _missing_repository(self, h: BaseHTTPRequestHandler, name: str, reference: str) -> None:
        """A repository that does not exist, as the profile answers it: a 401 (with `error="insufficient_scope"`
        for a token that holds no access to it, as distribution's token auth says) or its own error."""
        kind = self.profile.missing_repository
        headers = None
        if kind == "unauthorized":
            headers = self._challenge(f"repository:{name}:pull")
            if h.headers.get("Authorization"):
                headers["WWW-Authenticate"] += ',error="insufficient_scope"'
        self._error(h, kind, headers, name=name, reference=reference)

    # -- blobs, from the "CDN" ------------------------------------------------------------------------------------

    def _redirect_blob(self, h: BaseHTTPRequestHandler, name: str, digest: str) -> None:
        signature = secrets.token_hex(16)
        with self._lock:
            self._signed[signature] = f"/v2/{name}/blobs/{digest}"
        path = self.profile.blob_path.format(digest=digest, hex=digest.partition(":")[2], name=name)
        expires = int(time.time()) + 600
        signed = f"{path}?{urlencode({'expires': expires, 'signature': signature})}"
        location = signed if self.profile.blob_host == "self" else self.cdn_url + signed
        body = f'<a href="{location}">Temporary Redirect</a>.\n\n'.encode()
        self._send(
            h,
            self.profile.blob_redirect or 307,
            body,
            {"Location": location, "Content-Type": "text/html; charset=utf-8"},
        )

    def _serve_blob(self, h: BaseHTTPRequestHandler, *, record: bool = True) -> None:
        """The CDN: a blob on the URL the registry signed, to anyone holding it, and nothing else. It is another
        host: a client that sent the registry's Authorization header here would leak it (`requests` records it)."""
        if record:
            self._record("cdn", h)
        query = parse_qs(urlsplit(h.path).query)
        with self._lock:
            target = self._signed.get(query.get("signature", [""])[0])
        expires = query.get("expires", [""])[0]
        if target is None or h.command not in ("GET", "HEAD") or not expires.isdigit() or int(expires) < time.time():
            self._send(h, 403, b"<Error><Code>AccessDenied</Code></Error>", {"Content-Type": "application/xml"})
            return
        if record and h.headers.get("Authorization") and self.profile.cdn_refuses_authorization:
            self._send(
                h,
                400,
                b"<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>",
                {"Content-Type": "application/xml"},
            )
            return
        status, headers, data = self._behind_request(h.command, target, {})
        self._send(
            h,
            status,
            data,
            {"Content-Type": headers.get("Content-Type", "application/octet-stream")},
            length=headers.get("Content-Length") if h.command == "HEAD" else None,
        )

    def _referrers_page(self, h: BaseHTTPRequestHandler, name: str, digest: str) -> None:
        """The referrers API (distribution-spec v1.1, "Listing Referrers"): an image index of the descriptors of
        every manifest pushed with this subject, an empty one when there is none (never a 404), filtered by
        `artifactType` when asked (and then saying so in `OCI-Filters-Applied`)."""
        with self._lock:
            listed = list(self._referrers.get((name, digest), []))
        wanted = parse_qs(urlsplit(h.path).query).get("artifactType")
        headers = {"Content-Type": "application/vnd.oci.image.index.v1+json"}
        if wanted:
            listed = [d for d in listed if d.get("artifactType") == wanted[0]]
            headers["OCI-Filters-Applied"] = "artifactType"
        body = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": listed}
        self._send(h, 200, json.dumps(body).encode(), headers)

    # -- tag lists ------------------------------------------------------------------------------------------------

    def _tag_page(self, h: BaseHTTPRequestHandler, name: str) -> None:
        status, _, data = self._behind_request("GET", f"/v2/{name}/tags/list", {})
        if status == 404:
            self._missing_repository(h, name, "")
            return
        rules = self.profile.tags
        query = parse_qs(urlsplit(h.path).query)
        tags = sorted(json.loads(data).get("tags") or [])
        last = query.get("last", [None])[0]
        after = [t for t in tags if last is None or t > last]
        asked = query.get("n", [""])[0]
        size = int(asked) if asked.isdigit() and int(asked) > 0 and rules.honours_n else rules.default
        if rules.maximum is not None:
            size = rules.maximum if size is None else min(size, rules.maximum)
        page = after if size is None else after[:size]
        headers = {"Content-Type": "application/json"}
        if size is not None and len(after) > size and page:
            link = f"/v2/{name}/tags/list?" + rules.link.format(n=size, last=quote(page[-1]))
            headers["Link"] = f'<{self.url + link if rules.absolute_link else link}>; rel="next"'
        body: dict[str, Any] = {"name": name, "tags": page}
        if rules.extra is not None:
            body.update(rules.extra(page))
        self._send(h, 200, json.dumps(body).encode(), headers)


def _api_path(path: str) -> tuple[str | None, str, str]:
    """(repository, manifests|blobs|referrers|tags, reference) of a `/v2/` API path; (None, "", "") for any other."""
    rest = unquote(path).removeprefix("/v2/")
    if rest.endswith("/tags/list"):
        return rest[: -len("/tags/list")] or None, "tags", "list"
    for kind in ("manifests", "blobs", "referrers"):
        name, found, reference = rest.rpartition(f"/{kind}/")
        if found and name and reference and "/" not in reference:
            return name, kind, reference
    return None, "", ""
