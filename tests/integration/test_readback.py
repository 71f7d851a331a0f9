"""Nothing the function reads back from AWS can stop a run: each source of read-back (CodeBuild's build records and
exported variables, the lease and the check history in S3, repository tags, ECR's token) is fed a malformed value,
and the run still ends with a full report, a warning in the log and a null or a default where the value was. The
lease holds under corruption: it is replaced only by the ETag that was read, whatever its body."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from devtools.context import FakeLambdaContext
from devtools.localaws import PROJECT, answering
from mirror.budget import CLOCK_SLACK_SECONDS, LEASE_MAX_SECONDS
from mirror.ecr import EcrError
from mirror.state import identity, read_history
from tests.integration.conftest import Mirror
from tests.integration.test_in_flight import finished_build, running_build
from tests.integration.test_run_bounds import BUCKET, LEASE
from tests.integration.test_trust import source_tag

Logs = Callable[[], list[dict[str, Any]]]


def warnings(logs: Logs) -> list[str]:
    return [line["message"] for line in logs() if line.get("level") == "WARNING"]


def builds_answer(mirror: Mirror, ids: Sequence[object], records: Sequence[object]) -> None:
    """CodeBuild answers ListBuildsForProject with `ids` and BatchGetBuilds with `records`, whatever they hold."""
    mirror.session.events.register("before-call.codebuild.ListBuildsForProject", answering({"ids": ids}))
    mirror.session.events.register("before-call.codebuild.BatchGetBuilds", answering({"builds": records}))


def with_images(build: dict[str, Any], value: str) -> dict[str, Any]:
    """`build` with its MIRROR_IMAGES variable holding `value` as it is."""
    variables = [
        dict(v, value=value) if v["name"] == "MIRROR_IMAGES" else v
        for v in build["environment"]["environmentVariables"]
    ]
    return dict(build, environment=dict(build["environment"], environmentVariables=variables))


# -- CodeBuild: exported variables and build records ------------------------------------------------------------------


@pytest.mark.parametrize("exported", ["²", "-1", "1e3", "99999999999", " 7", "7\n", ""])
def test_a_malformed_pull_count_is_null_in_the_report_and_every_image_is_recorded(
    mirror: Mirror, function_logs: Logs, exported: str
) -> None:
    mirror.seed("a", "a")
    mirror.seed("b", "b")
    builds_answer(mirror, [f"{PROJECT}:b1"], [finished_build(f"{PROJECT}:b1", "the-previous-run", exported)])

    report = mirror.invoke({"images": [mirror.image("a"), mirror.image("b")]})

    assert report["previousRun"] == {"runId": "the-previous-run", "builds": 1, "dockerHubPulls": None}
    assert [i["status"] for i in report["images"]] == ["missing", "missing"]
    assert all(i["build"] for i in report["images"])
    said = [w for w in warnings(function_logs) if "MIRROR_PULLS_USED" in w]
    if exported:
        assert said == [
            f"build {PROJECT}:b1: MIRROR_PULLS_USED {exported!a} is not a count (1 to 9 ASCII digits); "
            "its Docker Hub pulls are not known"
        ]
    else:  # the buildspec's own word for a build that counted nothing
        assert said == []


def test_the_well_formed_counts_of_a_run_are_still_summed(mirror: Mirror) -> None:
    mirror.seed("a", "a")
    builds = [finished_build(f"{PROJECT}:b{n}", "the-previous-run", v) for n, v in enumerate(["3", "²", "4"])]
    builds_answer(mirror, [b["id"] for b in builds], builds)

    report = mirror.invoke({"images": [mirror.image("a")]})

    assert report["previousRun"] == {"runId": "the-previous-run", "builds": 3, "dockerHubPulls": 7}


def test_malformed_build_records_are_warnings_and_a_well_formed_one_still_holds_its_copy(
    mirror: Mirror, function_logs: Logs
) -> None:
    held = mirror.seed("held", "h")
    mirror.seed("free", "f")

    def target(name: str) -> str:
        return f"{mirror.registries.ecr.location}/mirror/{mirror.image(name)}:latest"

    claims_free = [{"target": target("free"), "digest": held.digest}]  # were any of these read, free would wait
    records: list[object] = [
        running_build(f"{PROJECT}:good", [{"target": target("held"), "digest": held.digest}]),
        "a build record that is a string",
        {"buildStatus": "IN_PROGRESS"},
        running_build(f"{PROJECT}:unasked", claims_free),
        dict(running_build(f"{PROJECT}:odd-status", claims_free), buildStatus="RUNNING"),
        dict(running_build(f"{PROJECT}:env", claims_free), environment="garbage"),
        with_images(running_build(f"{PROJECT}:no-json", []), "not json ["),
        with_images(running_build(f"{PROJECT}:deep", []), "[" * 5000),
        with_images(running_build(f"{PROJECT}:object", []), json.dumps(claims_free[0])),
        running_build(
            f"{PROJECT}:entries",
            [
                {"target": target("free"), "digest": "sha256:short"},
                {"target": 5, "digest": held.digest},
                {"target": target("free") + "x" * 1000, "digest": held.digest},
                "an entry",
            ],
        ),
        finished_build(f"{PROJECT}:bad-run", "a run id ² with spaces", "5"),
    ]
    asked = [r["id"] for r in records if isinstance(r, dict) and "id" in r and r["id"] != f"{PROJECT}:unasked"]
    builds_answer(mirror, [*asked, 42, None, "x" * 1000, "no-colon"], records)

    report = mirror.invoke({"images": [mirror.image("held"), mirror.image("free")]})

    held_record, free_record = report["images"]
    assert held_record["status"] == "inflight"
    assert held_record["build"] == f"{PROJECT}:good"
    assert free_record["status"] == "missing"
    assert free_record["build"] not in (None, f"{PROJECT}:good")
    assert report["previousRun"] is None  # the only finished build names no well-formed run
    said = "\n".join(warnings(function_logs))
    for expected in (
        "4 malformed build ids left out",
        "a build record that is not an object ('a build record that is a string') was ignored",
        "a build record was ignored: id None is not a build id",
        f"build {PROJECT}:unasked was not asked for",
        f"build {PROJECT}:odd-status has buildStatus 'RUNNING'",
        f"build {PROJECT}:env: environment.environmentVariables is not a list; read as none",
        f"build {PROJECT}:no-json: MIRROR_IMAGES is not JSON; it holds no copies in flight",
        f"build {PROJECT}:deep: MIRROR_IMAGES is not JSON",
        f"build {PROJECT}:object: MIRROR_IMAGES is a JSON dict, not a list",
        f"build {PROJECT}:entries: 4 of 4 MIRROR_IMAGES entries malformed (first: digest 'sha256:short' is not",
        f"build {PROJECT}:bad-run: MIRROR_RUN_ID 'a run id \\xb2 with spaces' is malformed; counted in no run",
    ):
        assert expected in said


# -- S3: the check history --------------------------------------------------------------------------------------------

HISTORY = f"reports/state/checked-{hashlib.sha256(b'event').hexdigest()[:16]}.json"


def history_bodies() -> Iterator[Any]:
    """Cases: the history's body (given the keys of a and b, and now), whether a's entry is still read, the warning."""
    for name, body in [
        ("nested too deep", "[" * 5000),
        ("not an object", "[1, 2]"),
        ("checked not an object", '{"checked": "yesterday"}'),
        ("NaN (not JSON)", '{"checked": {"0123456789abcdef0123": NaN}}'),
        ("over 4 MiB", '{"checked": {}, "pad": "' + "x" * (4 * 2**20) + '"}'),
    ]:
        yield pytest.param(lambda a, b, now, body=body: body, False, "check history unreadable (its ", id=name)
    for name, value in [
        ("b in 2100", "4102444800"),
        ("b at 1e300", "1e300"),
        ("b at 1e400 (infinity)", "1e400"),
        ("b at 10**400", "1" + "0" * 400),
        ("b a string", '"yesterday"'),
        ("b true", "true"),
        ("b negative", "-1"),
    ]:
        yield pytest.param(
            lambda a, b, now, value=value: f'{{"checked": {{"{a}": {now - 10}, "{b}": {value}}}}}',
            True,
            "check history: 1 malformed entries left out (first: time of ",
            id=name,
        )
    yield pytest.param(
        lambda a, b, now: json.dumps({"checked": {a: now - 10, "../../lease": now}}),
        True,
        "check history: 1 malformed entries left out (first: key '../../lease' is not 20 hex digits",
        id="a key that is no identity",
    )


@pytest.mark.parametrize(("body", "a_read", "warning"), list(history_bodies()))
def test_a_corrupt_check_history_is_a_warning_and_malformed_entries_are_checked_first(
    mirror: Mirror, function_logs: Logs, body: Callable[[str, str, float], str], a_read: bool, warning: str
) -> None:
    mirror.seed("a", "a")
    mirror.seed("b", "b")
    s3 = mirror.report_bucket(BUCKET)
    mirror.env["MAX_CONCURRENCY"] = "1"  # one check at a time: the order the registry sees is the run's order
    key = {n: identity(f"docker.io/{mirror.image(n)}:latest", f"mirror/{mirror.image(n)}:latest") for n in "ab"}
    s3.put_object(Bucket=BUCKET, Key=HISTORY, Body=body(key["a"], key["b"], time.time()).encode())

    report = mirror.invoke({"images": [mirror.image("a"), mirror.image("b")]})

    assert [i["status"] for i in report["images"]] == ["missing", "missing"]
    asked = [p for _, p in mirror.hub_requests() if "/manifests/" in p]
    order = [n for p in asked for n in "ab" if p.startswith(f"/v2/{mirror.image(n)}/")]
    # b's time was malformed: b counts as never checked, so it goes before a (read as checked); when nothing of the
    # history could be read, the list's order
    assert order[0] == ("b" if a_read else "a")
    assert any(w.startswith(warning) for w in warnings(function_logs)), warnings(function_logs)
    # the run writes a well-formed history back
    checked, bad = read_history(s3.get_object(Bucket=BUCKET, Key=HISTORY)["Body"].read(), now=time.time())
    assert bad == []
    assert set(checked) == set(key.values())


# -- ECR: repository tags and the authorization token -----------------------------------------------------------------


@pytest.mark.parametrize(
    "recorded",
    ["not a repository", "docker.io/" + "a" * 600, "docker.io/NS/x", "docker.io/ns/x\n", "docker.io/ns/ä", ""],
    ids=["words", "over-long", "upper case", "a newline", "non-ASCII", "empty"],
)
def test_a_malformed_source_record_fails_that_entry_and_is_never_overwritten(
    mirror: Mirror, function_logs: Logs, recorded: str
) -> None:
    mirror.seed("kept", "k")
    mirror.seed("other", "o")
    repository = f"mirror/{mirror.image('kept')}"
    mirror.session.client("ecr").create_repository(
        repositoryName=repository, tags=[{"Key": "mirror-source", "Value": recorded}]
    )

    report = mirror.invoke({"images": [mirror.image("kept"), mirror.image("other")]})

    kept, other = report["images"]
    assert kept["status"] == "failed"
    assert kept["build"] is None
    assert kept["error"].startswith(f"repository {repository} has a malformed source record (its mirror-source tag ")
    assert kept["error"].endswith(
        "is not <host>/<path> of at most 511 characters); not written until the tag is fixed or removed"
    )
    assert kept["error"] in warnings(function_logs)
    assert other["status"] == "missing"
    assert [e["target"].split("/", 1)[1] for e in mirror.mirror_images()[0]] == [
        f"mirror/{mirror.image('other')}:latest"
    ]
    assert source_tag(mirror, repository) == recorded  # neither adopted nor overwritten


def test_a_tags_answer_of_the_wrong_shape_fails_that_entry(mirror: Mirror) -> None:
    mirror.seed("kept", "k")
    repository = f"mirror/{mirror.image('kept')}"
    mirror.session.client("ecr").create_repository(repositoryName=repository)
    mirror.session.events.register(
        "before-call.ecr.ListTagsForResource", answering({"tags": "mirror-source=docker.io/x/y"})
    )

    report = mirror.invoke({"images": [mirror.image("kept")]})

    (kept,) = report["images"]
    assert kept["status"] == "failed"
    assert kept["error"] == (
        f"repository {repository} has a malformed source record (its tags are 'mirror-source=docker.io/x/y', not a "
        "list); not written until the tag is fixed or removed"
    )
    assert mirror.builds == []


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


ECR = "https://123456789012.dkr.ecr.us-east-1.amazonaws.com"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"authorizationToken": b64("AWS:pw"), "proxyEndpoint": ECR.replace("https", "http")}, "proxyEndpoint 'http:"),
        ({"authorizationToken": b64("AWS:pw"), "proxyEndpoint": "https://evil.example@" + ECR[8:]}, "proxyEndpoint"),
        ({"authorizationToken": b64("AWS:pw"), "proxyEndpoint": ECR + "/v2/"}, "is not https://<host>"),
        ({"authorizationToken": b64("AWS:pw"), "proxyEndpoint": 5}, "proxyEndpoint 5 is not https://<host>"),
        ({"authorizationToken": "not base64!", "proxyEndpoint": ECR}, "authorizationToken is not base64"),
        ({"authorizationToken": b64("no colon"), "proxyEndpoint": ECR}, "authorizationToken is not base64"),
        ({"authorizationToken": b64("AWS:pw\r\nX-Injected: 1"), "proxyEndpoint": ECR}, "printable user:password"),
        ({"authorizationToken": b64("AWS:pässword"), "proxyEndpoint": ECR}, "printable user:password"),
        ({"proxyEndpoint": ECR}, "authorizationToken is not base64"),
        ("a string", "authorizationData is 'a string'"),
        (["a string"], "authorizationData is a JSON list"),
    ],
    ids=[
        "plain http",
        "userinfo",
        "a path",
        "a number",
        "not base64",
        "no colon",
        "CRLF",
        "non-ASCII",
        "no token",
        "not a list",
        "not an object",
    ],
)
def test_a_malformed_ecr_token_answer_fails_the_run_at_once_with_the_reason(
    mirror: Mirror, data: object, reason: str
) -> None:
    """Without the ECR host and credential no image can be checked, so this is the one read-back that fails the run
    (as a refused GetAuthorizationToken does): typed, with the reason, never the token; nothing is created or
    started, and the next run asks again (nothing of it is kept)."""
    mirror.seed("a", "a")
    mirror.session.events.register(
        "before-call.ecr.GetAuthorizationToken",
        answering({"authorizationData": [data] if isinstance(data, dict) else data}),
    )

    with pytest.raises(EcrError, match="cannot get an ECR authorization token: unexpected answer") as raised:
        mirror.invoke({"images": [mirror.image("a")]})

    assert reason in str(raised.value)
    assert "pw" not in str(raised.value).replace("proxyEndpoint", "")
    assert mirror.builds == []
    assert mirror.hub_requests() == []
    assert mirror.session.client("ecr").describe_repositories()["repositories"] == []


# -- S3: the run lease ------------------------------------------------------------------------------------------------


def lease_puts(mirror: Mirror) -> list[dict[str, Any]]:
    """The parameters of every PutObject of the lease made through the session from now on (less the body)."""
    puts: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") == LEASE:
            puts.append({k: v for k, v in params.items() if k != "Body"})

    mirror.session.events.register("provide-client-params.s3.PutObject", record)
    return puts


CORRUPT_LEASES: dict[str, Callable[[float], bytes]] = {
    "not JSON": lambda now: b"not json {",
    "a list": lambda now: b"[1]",
    "a string": lambda now: b'"until tomorrow"',
    "until missing": lambda now: b'{"runId": "r"}',
    "until a string": lambda now: b'{"until": "soon"}',
    "until true": lambda now: b'{"until": true}',
    "until NaN": lambda now: b'{"until": NaN}',
    "until Infinity": lambda now: b'{"until": Infinity}',
    "until 1e300": lambda now: b'{"until": 1e300}',
    "until 1e400": lambda now: b'{"until": 1e400}',
    "until 10**400": lambda now: b'{"until": 1' + b"0" * 400 + b"}",
    "until negative": lambda now: b'{"until": -5}',
    "until 2100": lambda now: b'{"runId": "squatter", "until": 4102444800}',
    "until past any lease": lambda now: json.dumps(
        {"until": now + LEASE_MAX_SECONDS + CLOCK_SLACK_SECONDS + 5}
    ).encode(),
    "nested too deep": lambda now: b"[" * 4000,
    "over 4 KiB": lambda now: b'{"until": 1, "pad": "' + b"x" * 5000 + b'"}',
    "not UTF-8": lambda now: b'{"until": "\xff\xfe"}',
}


@pytest.mark.parametrize("body", CORRUPT_LEASES.values(), ids=CORRUPT_LEASES.keys())
def test_a_corrupt_lease_is_taken_over_by_its_etag_and_logged(
    mirror: Mirror, function_logs: Logs, body: Callable[[float], bytes]
) -> None:
    mirror.seed("a", "a")
    s3 = mirror.report_bucket(BUCKET)
    s3.put_object(Bucket=BUCKET, Key=LEASE, Body=body(time.time()))
    corrupt_etag = s3.head_object(Bucket=BUCKET, Key=LEASE)["ETag"]
    puts = lease_puts(mirror)

    report = mirror.invoke({"images": [mirror.image("a")]})

    assert "skipped" not in report
    assert report["images"][0]["status"] == "missing"
    assert report["images"][0]["build"]
    # never an unconditional write: created only if absent, replaced only as it was read
    assert [{k: p.get(k) for k in ("IfNoneMatch", "IfMatch")} for p in puts] == [
        {"IfNoneMatch": "*", "IfMatch": None},
        {"IfNoneMatch": None, "IfMatch": corrupt_etag},
    ]
    (said,) = [w for w in warnings(function_logs) if w.startswith("run lease corrupt (")]
    assert said.endswith("); taken over")
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=LEASE)  # released at the end


def test_a_lease_as_long_as_any_run_holds_one_is_respected(mirror: Mirror) -> None:
    mirror.seed("a", "a")
    s3 = mirror.report_bucket(BUCKET)
    until = int(time.time()) + LEASE_MAX_SECONDS
    holder = json.dumps({"runId": "a run id ² with spaces", "until": until}).encode()
    s3.put_object(Bucket=BUCKET, Key=LEASE, Body=holder)

    report = mirror.invoke({"images": [mirror.image("a")]})

    assert report["skipped"] == (
        f"another run is in progress (run unnamed, lease until "
        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(until))}); this invocation started nothing"
    )
    assert mirror.builds == []
    assert s3.get_object(Bucket=BUCKET, Key=LEASE)["Body"].read() == holder


def test_two_invocations_over_a_corrupt_lease_exactly_one_runs(mirror: Mirror, function_logs: Logs) -> None:
    """Both read the corrupt lease before either writes (a barrier holds the first takeover until the second has
    read it too). moto 5.2.5 honours IfMatch and IfNoneMatch on PutObject but checks and writes in two steps without
    a lock; S3 applies a conditional write atomically, so here moto's lease writes are serialised, as S3's are."""
    import app

    mirror.seed("a", "a")
    s3 = mirror.report_bucket(BUCKET)
    s3.put_object(Bucket=BUCKET, Key=LEASE, Body=b"not json {")
    both_read = threading.Barrier(2, timeout=30)
    atomic = threading.Lock()
    writing: set[int] = set()

    def before(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") != LEASE:
            return
        if "IfMatch" in params:
            both_read.wait()
        assert atomic.acquire(timeout=30)
        writing.add(threading.get_ident())

    def after(**_: Any) -> None:
        if threading.get_ident() in writing:
            writing.discard(threading.get_ident())
            atomic.release()

    events = mirror.session.events
    events.register("provide-client-params.s3.PutObject", before)
    events.register("after-call.s3.PutObject", after)
    events.register("after-call-error.s3.PutObject", after)
    reports: list[dict[str, Any]] = []
    event = {"images": [mirror.image("a")]}

    def invoke() -> None:
        reports.append(app.handler(event, FakeLambdaContext(120)))

    with pytest.MonkeyPatch.context() as mp:  # set once for both threads: a context per thread would undo the other's
        for key, value in mirror.env.items():
            mp.setenv(key, value)
        mp.setattr(app, "session_factory", lambda: mirror.session)
        first = threading.Thread(target=invoke)
        first.start()
        end = time.monotonic() + 30
        while both_read.n_waiting == 0 and first.is_alive() and time.monotonic() < end:
            time.sleep(0.01)
        second = threading.Thread(target=invoke)
        second.start()
        first.join(60)
        second.join(60)

    assert len(reports) == 2
    skipped = [r for r in reports if "skipped" in r]
    ran = [r for r in reports if "skipped" not in r]
    assert len(ran) == len(skipped) == 1
    assert skipped[0]["skipped"] == "another run is in progress (it took over the lease first)"
    assert ran[0]["images"][0]["status"] == "missing"
    assert len(mirror.builds) == 1  # one run, one build
    assert len([w for w in warnings(function_logs) if w.startswith("run lease corrupt (")]) == 1
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=LEASE)
