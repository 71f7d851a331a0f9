"""Signatures and attestations made the way cosign makes them, with a key made here, and the check an admission
controller makes of them (Sigstore's policy-controller, Kyverno `verifyImages`): no cosign binary needed.

A signature (cosign specs/SIGNATURE_SPEC.md): a simple-signing payload naming the signed digest
(`critical.image.docker-manifest-digest`), signed with ECDSA P-256 over SHA-256 (DER, base64 in the layer
annotation `dev.cosignproject.cosign/signature`), one layer per signature in an OCI manifest under the tag
`sha256-<hex>.sig`; a new signature is appended as another layer. An attestation as cosign v3 stores it: an OCI 1.1
referrer (empty config, `artifactType`, `subject`) holding an in-toto statement."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
IN_TOTO = "application/vnd.in-toto+json"
EMPTY = "application/vnd.oci.empty.v1+json"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


@dataclass
class Repo:
    """A repository on a registry's API (`url`: its base), with the headers that let one push there."""

    url: str
    name: str
    headers: dict[str, str]

    def put_blob(self, data: bytes) -> str:
        digest = sha(data)
        started = requests.post(f"{self.url}/v2/{self.name}/blobs/uploads/", headers=self.headers, timeout=10)
        started.raise_for_status()
        location = started.headers["Location"]
        location = location if location.startswith("http") else self.url + location
        done = requests.put(
            f"{location}{'&' if '?' in location else '?'}digest={digest}",
            data=data,
            headers={**self.headers, "Content-Type": "application/octet-stream"},
            timeout=10,
        )
        done.raise_for_status()
        return digest

    def put_manifest(self, reference: str, body: bytes, media_type: str = OCI_MANIFEST) -> str:
        answer = requests.put(
            f"{self.url}/v2/{self.name}/manifests/{reference}",
            data=body,
            headers={**self.headers, "Content-Type": media_type},
            timeout=10,
        )
        answer.raise_for_status()
        return sha(body)

    def get(self, path: str, accept: str = f"{OCI_MANIFEST}, {OCI_INDEX}") -> requests.Response:
        return requests.get(f"{self.url}/v2/{self.name}/{path}", headers={**self.headers, "Accept": accept}, timeout=10)


class Signer:
    """A cosign key pair (ECDSA P-256, as `cosign generate-key-pair` makes)."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())

    @property
    def public_pem(self) -> bytes:
        """The public key as cosign.pub holds it (PEM SubjectPublicKeyInfo)."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def payload(self, repository: str, digest: str, note: str = "") -> bytes:
        """cosign's simple-signing payload for `digest` (sigstore/sigstore pkg/signature/payload)."""
        return _json(
            {
                "critical": {
                    "identity": {"docker-reference": repository},
                    "image": {"docker-manifest-digest": digest},
                    "type": "cosign container image signature",
                },
                "optional": {"note": note} if note else None,
            }
        )

    def sign(self, repo: Repo, digest: str, note: str = "") -> str:
        """Sign `digest` in `repo` as `cosign sign --key` does: the payload pushed as a blob, the signature in its
        layer's annotation, the layer appended to the manifest under `sha256-<hex>.sig` (made when absent).
        Returns the digest of that manifest."""
        payload = self.payload(repo.name, digest, note)
        signature = self._key.sign(payload, ec.ECDSA(hashes.SHA256()))
        layer = {
            "mediaType": SIMPLE_SIGNING,
            "digest": repo.put_blob(payload),
            "size": len(payload),
            "annotations": {SIGNATURE_ANNOTATION: base64.b64encode(signature).decode()},
        }
        tag = digest.replace(":", "-") + ".sig"
        held = repo.get(f"manifests/{tag}")
        layers = json.loads(held.content)["layers"] if held.status_code == 200 else []
        layers.append(layer)
        config = _json(
            {
                "architecture": "",
                "os": "",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [entry["digest"] for entry in layers]},
            }
        )
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": repo.put_blob(config),
                "size": len(config),
            },
            "layers": layers,
        }
        return repo.put_manifest(tag, _json(manifest))


def attestation(repo: Repo, subject: str, subject_type: str, subject_size: int, predicate: str) -> bytes:
    """An in-toto attestation as an OCI 1.1 referrer of `subject` (its blobs pushed to `repo`): the manifest to
    push by digest."""
    statement = _json(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": repo.name, "digest": {"sha256": subject.split(":", 1)[1]}}],
            "predicateType": predicate,
            "predicate": {},
        }
    )
    empty = b"{}"
    return _json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": IN_TOTO,
            "config": {"mediaType": EMPTY, "digest": repo.put_blob(empty), "size": len(empty)},
            "layers": [{"mediaType": IN_TOTO, "digest": repo.put_blob(statement), "size": len(statement)}],
            "subject": {"mediaType": subject_type, "digest": subject, "size": subject_size},
            "annotations": {"org.opencontainers.image.created": "2026-12-01T00:00:00Z"},
        }
    )


class VerificationError(Exception):
    pass


def verify(repo: Repo, digest: str, public_pem: bytes) -> list[dict[str, Any]]:
    """What `cosign verify --key --insecure-ignore-tlog` checks (pkg/cosign/verify.go): the manifest under
    `sha256-<hex>.sig` in `repo`, each simple-signing layer's payload read by its digest, its
    `docker-manifest-digest` equal to `digest`, its signature valid for the key. Returns the verified payloads;
    raises VerificationError when no signature verifies."""
    key = serialization.load_pem_public_key(public_pem)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    held = repo.get(f"manifests/{digest.replace(':', '-')}.sig")
    if held.status_code != 200:
        raise VerificationError(f"no signature manifest: HTTP {held.status_code}")
    verified = []
    for layer in json.loads(held.content)["layers"]:
        if layer["mediaType"] != SIMPLE_SIGNING:
            continue
        blob = repo.get(f"blobs/{layer['digest']}", accept="*/*")
        if blob.status_code != 200 or sha(blob.content) != layer["digest"]:
            raise VerificationError(f"payload {layer['digest']} not served as written")
        payload = json.loads(blob.content)
        if payload["critical"]["image"]["docker-manifest-digest"] != digest:
            raise VerificationError("the payload names another image")
        try:
            key.verify(
                base64.b64decode(layer["annotations"][SIGNATURE_ANNOTATION]),
                blob.content,
                ec.ECDSA(hashes.SHA256()),
            )
        except InvalidSignature:
            raise VerificationError(f"the signature of {layer['digest']} does not verify") from None
        verified.append(payload)
    if not verified:
        raise VerificationError("no simple-signing layer")
    return verified


def referrers_of(repo: Repo, subject: str) -> list[str]:
    """The digests of the referrers a client finds for `subject`: the referrers API where the registry serves it,
    else the index under the fallback tag `sha256-<hex>` (distribution-spec v1.1, as cosign's go-containerregistry
    falls back)."""
    answer = repo.get(f"referrers/{subject}", accept=OCI_INDEX)
    if answer.status_code != 200:
        answer = repo.get(f"manifests/{subject.replace(':', '-')}", accept=OCI_INDEX)
    if answer.status_code != 200:
        return []
    return [m["digest"] for m in json.loads(answer.content)["manifests"]]
