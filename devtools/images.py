"""Writes small, reproducible OCI image layouts from Python and pushes them with skopeo (no Docker needed)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


@dataclass(frozen=True)
class Layout:
    """An OCI layout on disk holding one image (or index) under one tag; `digest` is its top-level digest."""

    path: Path
    tag: str
    digest: str
    media_type: str

    def manifests(self) -> list[dict[str, object]]:
        """The child manifests of an index or list (empty for a single manifest)."""
        hex_ = self.digest.split(":", 1)[1]
        blob = self.path / "blobs" / "sha256" / hex_
        data = json.loads((blob if blob.exists() else self.path / hex_).read_bytes())
        return list(data.get("manifests", []))


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Writer:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')

    def blob(self, data: bytes) -> tuple[str, int]:
        digest = _sha(data)
        (self.root / "blobs" / "sha256" / digest.split(":", 1)[1]).write_bytes(data)
        return digest, len(data)

    def json_blob(self, obj: object) -> tuple[bytes, str, int]:
        data = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
        digest, size = self.blob(data)
        return data, digest, size


def _layer(content: str, padding: int = 0) -> tuple[bytes, bytes]:
    """Return (gzipped tar, uncompressed tar) holding one file (and `padding` bytes of noise, seeded by `content`,
    that gzip cannot shrink); gzip mtime 0 keeps digests reproducible."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        files = [("hello.txt", content.encode())]
        if padding:
            files.append(("noise.bin", random.Random(content).randbytes(padding)))
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0) as zipped:
        zipped.write(raw.getvalue())
    return gz.getvalue(), raw.getvalue()


def _platform_manifest(w: _Writer, content: str, arch: str, docker: bool, padding: int = 0) -> dict[str, object]:
    """One platform's manifest; `arch` is an architecture, `arch/variant` (arm64/v8) or `os/arch[/variant]`."""
    parts = arch.split("/")
    os_name = parts.pop(0) if len(parts) == 3 or parts[0] in ("linux", "windows") else "linux"
    platform = {"architecture": parts[0], "os": os_name, **({"variant": parts[1]} if len(parts) > 1 else {})}
    layer, raw = _layer(f"{content} {arch}", padding)
    layer_digest, layer_size = w.blob(layer)
    config = {
        **platform,
        "config": {"Cmd": ["/hello.txt"]},
        "rootfs": {"type": "layers", "diff_ids": [_sha(raw)]},
        "history": [{"created_by": f"test image {content}", "created": "2024-01-01T00:00:00Z"}],
        "created": "2024-01-01T00:00:00Z",
    }
    _, config_digest, config_size = w.json_blob(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG if docker else OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": DOCKER_LAYER if docker else OCI_LAYER, "digest": layer_digest, "size": layer_size}],
    }
    _, digest, size = w.json_blob(manifest)
    return {
        "mediaType": manifest["mediaType"],
        "digest": digest,
        "size": size,
        "platform": platform,
    }


#: the attestation manifest BuildKit adds to an index for each platform (docker/buildx
#: docs/reference/attestation-storage.md): an OCI manifest of in-toto layers, platform unknown/unknown, annotated with
#: the digest of the platform manifest it describes
IN_TOTO = "application/vnd.in-toto+json"


def _attestation(w: _Writer, content: str, described: str) -> dict[str, object]:
    statement = json.dumps({"_type": "https://in-toto.io/Statement/v0.1", "subject": content}).encode()
    layer_digest, size = w.blob(statement)
    _, config_digest, config_size = w.json_blob({"architecture": "unknown", "os": "unknown", "config": {}})
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [
            {
                "mediaType": IN_TOTO,
                "digest": layer_digest,
                "size": size,
                "annotations": {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"},
            }
        ],
    }
    _, digest, manifest_size = w.json_blob(manifest)
    return {
        "mediaType": OCI_MANIFEST,
        "digest": digest,
        "size": manifest_size,
        "annotations": {"vnd.docker.reference.digest": described, "vnd.docker.reference.type": "attestation-manifest"},
        "platform": {"architecture": "unknown", "os": "unknown"},
    }


def write_image(
    root: Path,
    content: str,
    *,
    kind: str = "oci-index",
    tag: str = "latest",
    arches: tuple[str, ...] = ("amd64", "arm64"),
    padding: int = 0,
    attestations: bool = False,
) -> Layout:
    """Write an image whose bytes depend only on `content` and `kind`.

    kind: "oci-index" (multi-arch OCI index), "docker-list" (Docker manifest list),
    "oci-manifest" (single-platform OCI manifest) or "docker-manifest" (single-platform Docker v2 manifest).
    `arches`: its platforms (`amd64`, `arm64/v8`, `windows/amd64`); `attestations`: an OCI index with an attestation
    manifest after its platforms for each, as BuildKit writes the Docker official images.
    """
    w = _Writer(root)
    docker = kind.startswith("docker")
    if kind in ("oci-index", "docker-list"):
        children = [_platform_manifest(w, content, arch, docker, padding) for arch in arches]
        if attestations:
            children += [_attestation(w, f"{content} {c['digest']}", str(c["digest"])) for c in children]
        index = {"schemaVersion": 2, "mediaType": DOCKER_LIST if docker else OCI_INDEX, "manifests": children}
        _, digest, size = w.json_blob(index)
        top = {"mediaType": index["mediaType"], "digest": digest, "size": size}
    elif kind in ("oci-manifest", "docker-manifest"):
        top = _platform_manifest(w, content, arches[0], docker, padding)
        top.pop("platform")
    else:
        raise ValueError(f"unknown image kind {kind!r}")
    if docker:
        # skopeo's oci: transport only reads OCI media types; its dir: transport carries Docker ones unchanged.
        _to_dir_layout(root, str(top["digest"]))
    else:
        top["annotations"] = {"org.opencontainers.image.ref.name": tag}
        (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    return Layout(root, tag, str(top["digest"]), str(top["mediaType"]))


def _to_dir_layout(root: Path, top_digest: str) -> None:
    """Rearrange the written blobs as skopeo's dir: transport expects: manifest.json, <hex>.manifest.json, <hex>."""
    blobs = root / "blobs" / "sha256"
    top = (blobs / top_digest.split(":", 1)[1]).read_bytes()
    (root / "manifest.json").write_bytes(top)
    children = json.loads(top).get("manifests", [])
    for child in children:
        hex_ = child["digest"].split(":", 1)[1]
        (root / f"{hex_}.manifest.json").write_bytes((blobs / hex_).read_bytes())
    for blob in blobs.iterdir():
        (root / blob.name).write_bytes(blob.read_bytes())
    (root / "version").write_text("Directory Transport Version: 1.1\n")
    (root / "oci-layout").unlink()


def push(layout: Layout, destination: str, *, creds: str | None = None, authfile: Path | None = None) -> None:
    """Copy the layout to docker://destination (a plain-HTTP loopback registry) keeping its digest."""
    cmd = ["skopeo", "copy", "--all", "--preserve-digests", "--dest-tls-verify=false", "-q"]
    if creds:
        cmd += ["--dest-creds", creds]
    if authfile:
        cmd += ["--dest-authfile", str(authfile)]
    source = (
        f"dir:{layout.path}"
        if layout.media_type.startswith("application/vnd.docker")
        else f"oci:{layout.path}:{layout.tag}"
    )
    cmd += [source, f"docker://{destination}"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
