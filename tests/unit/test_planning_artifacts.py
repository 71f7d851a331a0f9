"""An image's signatures, attestations and SBOMs go with it: the plan copies the ones the mirror lacks (riding on a
re-tag for an unchanged image), once per repository, charged to Docker Hub's quota; the report counts them; the
build takes from its caller only artifact tags derived from the image's digest."""

from __future__ import annotations

from typing import Any

import pytest

from copier import copy_images
from mirror.artifacts import REFERRERS, Artifact
from mirror.budget import BUILD_SECONDS, REPOSITORY_SECONDS, Budget
from mirror.imagelist import parse_entries
from mirror.planning import ASSUMED_PULLS, Check, Outcome, Status, admit, plan
from mirror.report import records, summary
from mirror.settings import ConfigurationError, Settings
from mirror.trust import digest_tag

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
S = "sha256:" + "5" * 64  # a signature
T = "sha256:" + "6" * 64  # an attestation
L = "sha256:" + "7" * 64  # an index of referrers under the fallback tag

ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


def signature(of: str = A, digest: str = S, *, mirrored: bool = False) -> Artifact:
    return Artifact("signature", digest, of, f"{digest_tag(of)}.sig", mirrored)


def attestation(of: str = A, digest: str = T, *, mirrored: bool = False) -> Artifact:
    return Artifact("attestation", digest, of, f"{digest_tag(of)}.att", mirrored)


def listing(of: str = A, digest: str = L) -> Artifact:
    return Artifact(REFERRERS, digest, of, digest_tag(of))


# --- the plan ---


def test_an_unchanged_image_with_a_new_signature_gets_a_re_tag_that_copies_only_that_signature() -> None:
    entries = parse_entries(["nginx:1.27"], "mirror")
    held = attestation(mirrored=True)

    result = plan(entries, {0: Check(A, A, artifacts=(signature(), held))})

    (decision,) = result.decisions
    assert decision.status is Status.UNCHANGED
    assert decision.artifacts == (signature(), held)  # the record shows both
    (copy,) = result.copies
    assert (copy.status, copy.retag, copy.pulls, copy.after) == (Status.UNCHANGED, True, 1, None)
    assert copy.artifacts == (signature(),)
    assert copy.digest == A
    assert str(copy.source) == f"docker.io/library/nginx:1.27@{A}"


def test_an_unchanged_image_whose_artifacts_are_all_mirrored_copies_nothing() -> None:
    entries = parse_entries(["nginx:1.27"], "mirror")

    result = plan(entries, {0: Check(A, A, artifacts=(signature(mirrored=True), attestation(mirrored=True)))})

    assert result.copies == ()
    assert result.decisions[0].status is Status.UNCHANGED
    assert result.decisions[0].copy is None


def test_an_unchanged_image_with_a_new_index_of_referrers_costs_what_the_index_and_its_referrers_do() -> None:
    result = plan(parse_entries(["nginx:1.27"], "mirror"), {0: Check(A, A, artifacts=(listing(),))})
    (copy,) = result.copies
    assert (copy.retag, copy.pulls) == (True, 3)


@pytest.mark.parametrize(("counted", "image"), [(4, 4), (None, ASSUMED_PULLS)])
def test_a_missing_images_copy_costs_the_image_and_its_new_artifacts(counted: int | None, image: int) -> None:
    artifacts = (signature(), listing(), attestation(mirrored=True))

    result = plan(parse_entries(["nginx:1.27"], "mirror"), {0: Check(A, None, pulls=counted, artifacts=artifacts)})

    (copy,) = result.copies
    assert (copy.status, copy.retag) == (Status.MISSING, False)
    assert copy.pulls == image + 1 + 3
    assert copy.artifacts == (signature(), listing())


def test_a_changed_tag_whose_digest_the_repository_holds_is_a_re_tag_that_pays_only_for_artifacts() -> None:
    result = plan(
        parse_entries(["nginx:latest"], "mirror"), {0: Check(A, B, pulls=0, mirrored=True, artifacts=(signature(),))}
    )
    (copy,) = result.copies
    assert (copy.status, copy.retag, copy.pulls, copy.artifacts) == (Status.CHANGED, True, 1, (signature(),))


def test_two_unchanged_tags_of_one_digest_copy_its_artifact_once_and_the_second_copies_nothing() -> None:
    entries = parse_entries(["nginx:1.27", "nginx:latest"], "mirror")
    checks = {0: Check(A, A, artifacts=(signature(),)), 1: Check(A, A, artifacts=(signature(),))}

    result = plan(entries, checks)

    (copy,) = result.copies
    assert (copy.index, copy.pulls, copy.artifacts) == (0, 1, (signature(),))
    assert result.decisions[1].copy is None
    assert result.decisions[1].status is Status.UNCHANGED
    assert result.decisions[1].artifacts == (signature(),)  # still reported


def test_a_changed_tag_whose_artifact_an_earlier_copy_carries_is_still_re_tagged_without_it() -> None:
    entries = parse_entries(["nginx:1.27", "nginx:latest"], "mirror")
    checks = {
        0: Check(A, A, artifacts=(signature(), attestation())),
        1: Check(A, B, pulls=0, mirrored=True, artifacts=(signature(),)),
    }

    result = plan(entries, checks)

    first, moved = result.copies
    assert (first.pulls, first.artifacts) == (2, (signature(), attestation()))
    assert (moved.status, moved.retag, moved.pulls, moved.artifacts) == (Status.CHANGED, True, 0, ())


def test_a_new_digest_under_two_tags_is_copied_with_its_artifacts_once() -> None:
    entries = parse_entries(["node:26.7.0", "node:26"], "mirror")
    checks = {
        0: Check(A, None, pulls=1, artifacts=(signature(),)),
        1: Check(A, B, pulls=1, artifacts=(signature(),)),
    }

    result = plan(entries, checks)

    first, second = result.copies
    assert (first.retag, first.pulls, first.artifacts) == (False, 2, (signature(),))
    assert (second.retag, second.pulls, second.after, second.artifacts) == (True, 0, 0, ())


def test_one_artifact_is_copied_into_each_repository_that_holds_its_image() -> None:
    entries = parse_entries(
        [{"source": "nginx:1", "target": "mirror/web:1"}, {"source": "nginx:1", "target": "mirror/www:1"}], "mirror"
    )
    checks = {0: Check(A, A, artifacts=(signature(),)), 1: Check(A, A, artifacts=(signature(),))}

    result = plan(entries, checks)

    assert [(str(c.target), c.artifacts) for c in result.copies] == [
        ("mirror/web:1", (signature(),)),
        ("mirror/www:1", (signature(),)),
    ]


def test_a_duplicate_entry_shares_the_re_tag_that_carries_the_artifacts() -> None:
    entries = parse_entries(["nginx:1.27", "docker.io/library/nginx:1.27"], "mirror")
    assert entries[1].duplicate_of == 0

    result = plan(entries, {0: Check(A, A, artifacts=(signature(),))})

    assert len(result.copies) == 1
    assert result.decisions[1].copy == result.decisions[0].copy
    assert result.decisions[1].copy is not None


# --- admission ---


def test_a_docker_hub_re_tag_whose_artifacts_do_not_fit_the_quota_is_deferred() -> None:
    entries = parse_entries(["nginx:1.27"], "mirror")
    result = plan(entries, {0: Check(A, A, artifacts=(signature(), listing()))})

    waiting, ready = admit(result.copies, {}, pulls_left=3, reserve=10)

    assert ready == []
    assert waiting[0].deferred
    assert waiting[0].error == "deferred: 4 pulls needed, 3 left above the reserve of 10 until the window resets"


def test_a_re_tag_without_artifacts_to_fetch_starts_with_no_pulls_left() -> None:
    entries = parse_entries(["nginx:1.27", "nginx:latest"], "mirror")
    checks = {0: Check(A, A, artifacts=(signature(),)), 1: Check(A, B, pulls=0, mirrored=True)}
    result = plan(entries, checks)

    waiting, ready = admit(result.copies, {}, pulls_left=0, reserve=10)

    assert [c.index for c in ready] == [1]
    assert waiting[0].deferred


def test_a_re_tag_with_artifacts_waits_while_a_build_copies_its_digest_and_a_bare_one_does_not() -> None:
    # Given nginx:1.27 unchanged with a new signature, and nginx:latest a re-tag without artifacts, while a queued
    # build copies that digest (and so its artifacts) into the repository under another tag
    entries = parse_entries(["nginx:1.27", "nginx:latest"], "mirror")
    checks = {0: Check(A, A, artifacts=(signature(),)), 1: Check(A, B, pulls=0, mirrored=True)}
    result = plan(entries, checks)
    in_flight = {"mirror/library/nginx:1.26": (A, "build-1")}

    waiting, ready = admit(result.copies, in_flight, pulls_left=None, reserve=10)

    # Then the one that would fetch the signature again waits; the free re-tag starts
    assert [c.index for c in ready] == [1]
    assert waiting[0].inflight
    assert waiting[0].build == "build-1"


def test_docker_hub_re_tags_with_artifacts_spend_the_quota_in_list_order() -> None:
    entries = parse_entries(["nginx:1", "httpd:1", "redis:1"], "mirror")
    checks = {i: Check(d, d, artifacts=(signature(d),)) for i, d in enumerate((A, B, "sha256:" + "c" * 64))}
    result = plan(entries, checks)

    waiting, ready = admit(result.copies, {}, pulls_left=2, reserve=10)

    assert [c.index for c in ready] == [0, 1]
    assert list(waiting) == [2]
    assert waiting[2].error == "deferred: 1 pulls needed, 0 left above the reserve of 10 until the window resets"


def test_a_re_tag_with_artifacts_from_a_registry_that_counts_no_pulls_starts_whatever_the_quota() -> None:
    entries = parse_entries(["ghcr.io/org/app:1"], "mirror")
    result = plan(entries, {0: Check(A, A, artifacts=(signature(), listing()))})

    waiting, ready = admit(result.copies, {}, pulls_left=0, reserve=10)

    assert waiting == {}
    assert [c.pulls for c in ready] == [4]


# --- the report ---


def test_a_record_lists_the_images_artifacts_and_what_could_not_be_looked_at() -> None:
    entries = parse_entries(["nginx:1.27", "nginx:1.26"], "mirror")
    checks = {
        0: Check(A, A, artifacts=(signature(), attestation(mirrored=True)), warnings=("referrers of x not read",)),
        1: Check(B, B),
    }
    result = plan(entries, checks)

    first, plain = records(entries, result, {0: Outcome(build="b-1")}, ECR)

    assert first["artifacts"] == [
        {"kind": "signature", "tag": f"{digest_tag(A)}.sig", "digest": S, "subject": A, "mirrored": False},
        {"kind": "attestation", "tag": f"{digest_tag(A)}.att", "digest": T, "subject": A, "mirrored": True},
    ]
    assert first["warnings"] == ["referrers of x not read"]
    assert (first["status"], first["build"], first["retag"], first["pulls"]) == ("unchanged", "b-1", True, 1)
    assert "artifacts" not in plain
    assert "warnings" not in plain


def test_the_summary_counts_each_artifact_once_per_repository_found_mirrored_and_being_copied() -> None:
    def art(digest: str, mirrored: bool, tag: str | None = None) -> dict[str, Any]:
        return {"kind": "signature", "tag": tag, "digest": digest, "subject": A, "mirrored": mirrored}

    s1, s2, s3, s4 = (f"sha256:{n * 64}" for n in "1234")
    images: list[dict[str, Any]] = [
        {"status": "unchanged", "target": "ecr/mirror/a:1", "build": "b-1", "artifacts": [art(s1, False)]},
        # the same image under another tag shares its artifacts: counted once
        {"status": "unchanged", "target": "ecr/mirror/a:latest", "build": "b-1", "artifacts": [art(s1, False)]},
        {"status": "unchanged", "target": "ecr/mirror/e:1", "build": None, "artifacts": [art(s2, True)]},
        {"status": "deferred", "target": "ecr/mirror/b:1", "build": None, "artifacts": [art(s3, False)]},
        {"status": "missing", "target": "ecr/mirror/c:1", "build": "b-1", "artifacts": [art(s4, False, "t.sig")]},
        {"status": "unchanged", "target": "ecr/mirror/d:1", "build": None},
    ]

    counts = summary(images, builds=1)

    assert (counts["artifactsFound"], counts["artifactsMirrored"], counts["artifactsCopying"]) == (4, 1, 2)
    assert (counts["total"], counts["unchanged"], counts["deferred"], counts["missing"]) == (6, 4, 1, 1)


def test_a_run_without_artifacts_counts_none() -> None:
    counts = summary([{"status": "unchanged", "build": None}], builds=0)
    assert (counts["artifactsFound"], counts["artifactsMirrored"], counts["artifactsCopying"]) == (0, 0, 0)


# --- the run's time ---


class Clock:
    def __init__(self, remaining: float) -> None:
        self.remaining = remaining

    def __call__(self) -> float:
        return self.remaining


def test_an_unchanged_image_with_an_artifact_to_copy_is_kept_time_for_as_a_copy() -> None:
    budget = Budget(Clock(100.0), 0, images_per_build=1)
    before = budget.reserve()

    budget.found(Check(A, A, artifacts=(signature(mirrored=True),)), "mirror/a")  # nothing to copy
    budget.found(Check(A, A), "mirror/b")
    assert budget.reserve() == pytest.approx(before)

    budget.found(Check(A, A, artifacts=(signature(), attestation(mirrored=True))), "mirror/c")
    assert budget.reserve() == pytest.approx(before + BUILD_SECONDS)  # a build, but no repository to create

    budget.found(Check(A, None, artifacts=(signature(),)), "mirror/d")
    assert budget.reserve() == pytest.approx(before + 2 * BUILD_SECONDS + REPOSITORY_SECONDS)


# --- the setting ---

BASE = {"CODEBUILD_PROJECT": "ecr-mirror-copy"}


@pytest.mark.parametrize(
    ("raw", "value"), [(None, True), ("", True), ("true", True), ("false", False), (" FALSE ", False), ("True", True)]
)
def test_artifacts_are_copied_unless_copy_artifacts_is_false(raw: str | None, value: bool) -> None:
    env = BASE if raw is None else {**BASE, "COPY_ARTIFACTS": raw}
    assert Settings.from_env(env).copy_artifacts is value


@pytest.mark.parametrize("raw", ["yes", "0", "1", "off", "truee"])
def test_copy_artifacts_that_is_not_true_or_false_fails_fast_naming_it(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="COPY_ARTIFACTS must be true or false"):
        Settings.from_env({**BASE, "COPY_ARTIFACTS": raw})


# --- the build's check of what its caller sends ---

TARGET = copy_images.target_pattern(ECR, "mirror")


def entry(**extra: object) -> dict[str, object]:
    return {
        "source": f"docker.io/library/app@{A}",
        "target": f"{ECR}/mirror/library/app:1",
        "digest": A,
        "registry": "docker.io",
        "pulls": 3,
        **extra,
    }


def sent(a: Artifact) -> dict[str, object]:
    """An artifact as the function sends it in MIRROR_IMAGES."""
    wire: dict[str, object] = {"kind": a.kind, "digest": a.digest, "subject": a.subject}
    if a.tag is not None:
        wire["tag"] = a.tag
    return wire


def checked(raw: dict[str, object]) -> tuple[copy_images.Job | None, str | None]:
    assert TARGET is not None
    return copy_images.check(1, raw, TARGET, {})


def test_the_build_takes_an_entrys_artifacts_with_tags_derived_from_their_subjects() -> None:
    platform = "sha256:" + "1" * 64
    artifacts = [signature(), listing(), attestation(of=platform), Artifact("sbom", B, A)]

    job, reason = checked(entry(artifacts=[sent(a) for a in artifacts]))

    assert reason is None
    assert job is not None
    assert job.artifacts == (
        copy_images.Artifact("signature", S, A, f"{digest_tag(A)}.sig"),
        copy_images.Artifact(REFERRERS, L, A, digest_tag(A)),
        copy_images.Artifact("attestation", T, platform, f"{digest_tag(platform)}.att"),
        copy_images.Artifact("sbom", B, A, None),
    )


def test_an_entry_without_artifacts_has_none() -> None:
    job, reason = checked(entry())
    assert reason is None
    assert job is not None
    assert job.artifacts == ()


TAG_REFUSED = "an artifact's tag must be the tag form of its subject (sha256-<hex>, with .sig, .att or .sbom)"


@pytest.mark.parametrize(
    "tag",
    [
        "latest",  # a hostile caller moving the mirror's own tag
        "1",  # the entry's own tag
        f"{digest_tag(B)}.sig",  # derived from another digest
        f"{digest_tag(S)}.sig",  # derived from the artifact's own digest, not its subject
        f"{digest_tag(A)}.exe",
        f"{digest_tag(A)}.sig.latest",
        f"{digest_tag(A)}.SIG",
        digest_tag(A).upper(),
        A,
        "",
        7,
        ["latest"],
    ],
)
def test_an_artifact_tag_that_is_not_derived_from_its_subject_is_refused(tag: object) -> None:
    job, reason = checked(entry(artifacts=[{"kind": "signature", "digest": S, "subject": A, "tag": tag}]))
    assert job is None
    assert reason == TAG_REFUSED


@pytest.mark.parametrize(
    ("artifacts", "reason"),
    [
        ({"kind": "signature", "digest": S, "subject": A}, "artifacts must be a list of at most 50"),
        ("[]", "artifacts must be a list of at most 50"),
        (None, "artifacts must be a list of at most 50"),
        ([sent(signature(digest=f"sha256:{n:064x}")) for n in range(51)], "artifacts must be a list of at most 50"),
        (
            [{**sent(signature()), "mirrored": False}],
            "an artifact must be an object of kind, digest, subject (and tag)",
        ),
        ([{"kind": "signature", "digest": S}], "an artifact must be an object of kind, digest, subject (and tag)"),
        (["signature"], "an artifact must be an object of kind, digest, subject (and tag)"),
        ([{**sent(signature()), "kind": "Sig nature"}], "an artifact's kind, digest and subject must be strings"),
        ([{**sent(signature()), "kind": 1}], "an artifact's kind, digest and subject must be strings"),
        ([{**sent(signature()), "digest": "sha256:abc"}], "an artifact's digest and subject must be sha256 digests"),
        ([{**sent(signature()), "subject": "latest"}], "an artifact's digest and subject must be sha256 digests"),
    ],
)
def test_malformed_artifacts_refuse_the_entry_with_the_reason(artifacts: object, reason: str) -> None:
    job, why = checked(entry(artifacts=artifacts))
    assert job is None
    assert why == reason


def test_an_entry_may_bring_up_to_fifty_artifacts() -> None:
    artifacts = [sent(Artifact("sbom", f"sha256:{n:064x}", A)) for n in range(50)]
    job, reason = checked(entry(artifacts=artifacts))
    assert reason is None
    assert job is not None
    assert len(job.artifacts) == 50


def test_an_entry_with_an_unknown_field_is_refused() -> None:
    job, reason = checked(entry(signatures=[sent(signature())]))
    assert job is None
    assert reason is not None
    assert reason.startswith("entry must be an object of exactly")
    assert "artifacts" in reason


@pytest.mark.parametrize(
    ("pulls", "count", "accepted"), [(0, 2, True), (4, 2, True), (6, 2, True), (7, 2, False), (1, 0, False)]
)
def test_a_re_tags_pulls_are_at_most_what_its_artifacts_may_cost(pulls: int, count: int, accepted: bool) -> None:
    # a re-tag fetches nothing upstream but its artifacts, each estimated at most at REFERRERS_PULLS (3), the figure
    # the function estimates an index under the fallback tag at: one rule, shared (mirror.trust)
    assert Artifact(REFERRERS, A, A, "t").pulls == 3
    artifacts = [sent(signature()), sent(listing())][:count]
    job, reason = checked(entry(retag=True, pulls=pulls, artifacts=artifacts))
    assert (job is not None) is accepted
    if accepted:
        assert job is not None
        assert (job.retag, job.pulls) == (True, pulls)
    else:
        assert reason == "a re-tag fetches nothing upstream but its artifacts: its pulls must be theirs"
