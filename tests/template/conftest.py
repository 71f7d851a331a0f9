"""Shared by the template and README tests."""

from __future__ import annotations

from typing import Any

import pytest

from mirror.settings import Settings


@pytest.fixture(scope="session")
def settings_variables() -> set[str]:
    """The environment variables the function reads, learnt by reading settings through a recording mapping."""
    read: set[str] = set()

    class Recorder(dict[str, str]):
        def get(self, key: str, default: Any = None) -> Any:
            read.add(key)
            return super().get(key, default)

    Settings.from_env(Recorder(CODEBUILD_PROJECT="ecr-mirror-copy"))
    return read
