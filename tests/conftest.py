"""Shared test setup: a Lambda context fake and an environment that keeps every AWS call local."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from devtools.context import FakeLambdaContext

# Before anything imports boto3 or Powertools: no real AWS, no X-Ray daemon.
os.environ.update(
    {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "ecr-mirror",
        "POWERTOOLS_METRICS_NAMESPACE": "EcrMirror",
    }
)
for _name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(_name, None)


# Property tests must not depend on the machine's speed or load: the same examples every run (derandomize), no
# per-example deadline, no health check that times input generation. HYPOTHESIS_PROFILE=explore draws new examples.
settings.register_profile(
    "deterministic",
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=True,
)
settings.register_profile("explore", parent=settings.get_profile("deterministic"), derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture(autouse=True)
def _forget_cached_parameters() -> Iterator[None]:
    # Powertools' Parameters cache lives as long as the process, as it does in a warm Lambda container.
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.base import DEFAULT_PROVIDERS  # type: ignore[attr-defined]

    parameters.clear_caches()  # type: ignore[no-untyped-call]
    DEFAULT_PROVIDERS.clear()  # a provider's client belongs to the AWS endpoint of the test that made it
    yield
    parameters.clear_caches()  # type: ignore[no-untyped-call]
