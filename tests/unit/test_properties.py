"""Properties over any string: what is accepted is a valid reference by the distribution grammar and round-trips,
and whatever reaches MIRROR_IMAGES passes the buildspec's own checks."""

from __future__ import annotations

import json
import re
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from copier import copy_images
from mirror.codebuild import mirror_images
from mirror.imagelist import parse_entries
from mirror.planning import ASSUMED_PULLS, Check, plan
from mirror.references import ReferenceError, parse_reference
from mirror.registry import RegistryClient
from mirror.settings import DEFAULT_SOURCE_REGISTRIES

# github.com/distribution/reference regexp.go, written out independently of the code under test (Go's \w is ASCII).
_ALNUM = r"[a-z0-9]+"
_SEP = r"(?:[._]|__|[-]+)"
_PATH = rf"{_ALNUM}(?:{_SEP}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[(?:[a-fA-F0-9:]+)\])"
_NAME = rf"(?:{_HOST}(?::[0-9]+)?/)?{_PATH}(?:/{_PATH})*"
DISTRIBUTION_REFERENCE = re.compile(
    rf"({_NAME})(?::([\w][\w.-]{{0,127}}))?(?:@([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{{32,}}))?",
    re.ASCII,
)
HOSTILE = ";|&$`\n\r\t <>(){}'\"\\*?!#~"
BUILD_TARGET = copy_images.target_pattern("123456789012.dkr.ecr.us-east-1.amazonaws.com", "mirror")

pieces = st.sampled_from(
    [
        *["nginx", "library/", "ghcr.io/", "localhost:5000/", ":1.27", ":latest", "a", "-", ".", "_", "__", "/"],
        *[":", "@", "Ab", ".."],
        "@sha256:" + "a" * 64,
        "\uff4e",
        "\u00e9",
        *HOSTILE,
    ]
)
near_references = st.lists(pieces, min_size=1, max_size=8).map("".join)
any_text = st.text(alphabet=string.printable + "\uff4e\u00e9\u0131", max_size=80)
component = st.from_regex(re.compile(rf"{_PATH}", re.ASCII), fullmatch=True).filter(lambda c: len(c) <= 30)


@st.composite
def grammar_valid(draw: st.DrawFn) -> str:
    """References valid by the distribution grammar, of realistic size."""
    host = draw(
        st.sampled_from(
            [
                "",
                "docker.io/",
                "ghcr.io/",
                "quay.io:443/",
                "localhost/",
                "127.0.0.1:5000/",
                "[::1]:5000/",
                "Registry.Example.COM/",
                "a-b.c/",
            ]
        )
    )
    components = draw(st.lists(component, min_size=1, max_size=3))
    if not host and len(components) > 1:
        # Docker reads a first component with a dot as a registry host ("0_0.0/x" is host "0_0.0", which is
        # invalid and refused); only unambiguous names are grammar-valid references here.
        components[0] = components[0].replace(".", "-")
    path = "/".join(components)
    tag = draw(st.one_of(st.just(""), st.from_regex(re.compile(r":\w[\w.-]{0,20}", re.ASCII), fullmatch=True)))
    digest = draw(st.sampled_from(["", "@sha256:" + "c" * 64]))
    return f"{host}{path}{tag}{digest}"


def accepted(text: str) -> bool:
    try:
        parse_reference(text)
    except ReferenceError:
        return False
    return True


@settings(max_examples=500)
@given(st.one_of(near_references, any_text, grammar_valid()))
def test_whatever_is_accepted_matches_the_grammar_and_round_trips(text: str) -> None:
    if not accepted(text):
        return
    ref = parse_reference(text)
    assert DISTRIBUTION_REFERENCE.fullmatch(str(ref))
    assert len(ref.name) <= 255
    assert parse_reference(str(ref)) == ref
    assert not any(ch in str(ref) for ch in HOSTILE)


@settings(max_examples=200)
@given(st.text(alphabet=string.ascii_lowercase + "/:.", min_size=1, max_size=30), st.sampled_from(list(HOSTILE)))
def test_no_reference_with_a_shell_or_space_character_is_accepted(text: str, bad: str) -> None:
    for position in (0, len(text) // 2, len(text)):
        assert not accepted(text[:position] + bad + text[position:])


@settings(max_examples=300)
@given(grammar_valid())
def test_grammar_valid_references_are_accepted(text: str) -> None:
    assert accepted(text), text


@settings(max_examples=300)
@given(st.one_of(near_references, grammar_valid()))
def test_whatever_reaches_mirror_images_passes_the_buildspec_checks(text: str) -> None:
    # As a run parses them: only the deployment's source registries (the defaults and the endpoints' hosts).
    endpoints = {"docker.io": "http://127.0.0.1:5000"}
    entries = parse_entries([text], "mirror", set(DEFAULT_SOURCE_REGISTRIES) | set(endpoints))
    if not entries[0].valid:
        return
    digest = "sha256:" + "b" * 64
    copies = plan(entries, {0: Check(digest, None)}).copies
    client = RegistryClient(endpoints=endpoints)
    payload = json.loads(mirror_images(copies, client.location, "123456789012.dkr.ecr.us-east-1.amazonaws.com"))
    for index, entry in enumerate(payload, 1):
        assert BUILD_TARGET is not None
        # The build derives each entry's registry from its source host with the function's endpoints: they agree.
        checked, reason = copy_images.check(index, entry, BUILD_TARGET, endpoints)
        assert reason is None, (entry, reason)
        assert checked is not None
        assert checked.digest == digest
        assert entries[0].source is not None
        assert checked.registry == entries[0].source.registry
        assert checked.pulls == ASSUMED_PULLS


def test_buildspec_turns_tls_off_only_for_loopback() -> None:
    tls = copy_images.tls
    for host in ("127.0.0.1:5000", "127.0.0.1", "localhost:5001", "localhost", "[::1]:5000"):
        assert tls(host) == "false", host
    for host in (
        "docker.io",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "127.0.0.1.evil.com:5000",
        "localhost.evil.com",
        "10.0.0.1:5000",
        "evil.com/127.0.0.1",
        "[::2]:5000",
    ):
        assert tls(host) == "true", host


def test_the_registry_client_always_verifies_tls() -> None:
    client = RegistryClient()
    assert client._transport._session.verify is True
    assert client._transport._session.trust_env is False
    assert client.base_url("docker.io") == "https://registry-1.docker.io"
    assert client.base_url("ghcr.io") == "https://ghcr.io"
