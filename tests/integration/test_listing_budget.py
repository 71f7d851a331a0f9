"""Tag listings draw on their own share of the run's time: a registry that answers every page slowly and always
links a next page costs its own tag set, never the checks of the other entries."""

from __future__ import annotations

import re
import threading
import time
from http.server import BaseHTTPRequestHandler

from devtools.registries import Fault, answer
from tests.integration.conftest import Mirror

PAGE_SECONDS = 1.0  # each page of the endless listing; the run has 20 s, 100 pages would take 100 s


def endless_pages(seconds: float) -> tuple[Fault, list[int]]:
    """A tag list that answers each page after `seconds` and always links another page (a new one each time, so
    no loop is seen); returns the fault and the count of pages served."""
    served = [0]
    lock = threading.Lock()

    def fault(h: BaseHTTPRequestHandler) -> bool:
        time.sleep(seconds)
        with lock:
            served[0] += 1
            page = served[0]
        path = h.path.split("?", 1)[0]
        link = f'<{path}?n=100&last=p{page}>; rel="next"'
        return answer(200, {"Link": link, "Content-Type": "application/json"}, b'{"tags": ["p%d"]}' % page)(h)

    return fault, served


def test_an_endlessly_paginating_slow_registry_costs_only_its_own_tag_set(mirror: Mirror) -> None:
    mirror.seed_tags("fast", ["1.0.0", "1.1.0", "2.0.0"])
    mirror.seed("plain", "p", tag="1")
    slow, fast, plain = mirror.image("slow"), mirror.image("fast"), mirror.image("plain")
    fault, served = endless_pages(PAGE_SECONDS)
    mirror.registries.hub.faults[f"/{slow}/tags/list"] = fault

    report = mirror.invoke(
        {"images": [{"source": slow, "tags": {"latest": 2}}, {"source": fast, "tags": {"semver": "^1"}}, f"{plain}:1"]},
        timeout=20.0,
    )

    slow_record, *fast_records, plain_record = report["images"]
    assert slow_record["status"] == "failed"
    assert re.fullmatch(r"deadline: tags not listed within the \d+s the run gives tag listings", slow_record["error"])
    assert slow_record["rule"] == f"entry 1: docker.io/{slow} tags latest 2"
    assert 1 < served[0] < 100  # the listing went on page after page, and its share, not the pages, ended it
    # The other entries were checked in the same run: nothing is left `deadline: not checked`.
    assert [(r["target"].rsplit(":", 1)[1], r["status"]) for r in fast_records] == [
        ("1.1.0", "missing"),
        ("1.0.0", "missing"),
    ]
    assert plain_record["status"] == "missing", plain_record
    assert report["summary"]["failed"] == 1
