"""The Lambda entry point: parse the event, run one sync, return its report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from mirror.settings import Settings
from mirror.sync import Aws, parse_event, run

logger = Logger()
metrics = Metrics()
tracer = Tracer()
PACKAGE_DIR = Path(__file__).resolve().parent

#: where AWS clients come from; tests swap in a session that records calls
session_factory: Callable[[], boto3.session.Session] = boto3.session.Session


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(raise_on_empty_metrics=False)
def handler(event: dict[str, Any] | None, context: LambdaContext) -> dict[str, Any]:
    request = parse_event(event)
    settings = Settings.from_env()
    aws = Aws.from_session(session_factory())
    return run(
        request,
        settings,
        aws,
        remaining_seconds=lambda: context.get_remaining_time_in_millis() / 1000,
        package_dir=PACKAGE_DIR,
        log=logger,
        metrics=metrics,
        run_id=context.aws_request_id,
    )
