"""The Docker Hub proxy (`registries.HubProxy`, keeping connections alive) in a process of its own, for figures.

In the benchmark's process the proxy's threads would take the GIL from the handler they are measured against, as
no real registry does: the floor comparison sends its traffic here instead. `python -m devtools.proxyprocess PORT`
serves in front of the registry on loopback port PORT and prints its URL."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class _Behind:
    """What the proxy needs of the registry it stands in front of."""

    port: int

    @property
    def location(self) -> str:
        return f"127.0.0.1:{self.port}"


class ProxyProcess:
    """A keep-alive Docker Hub proxy in a child process, in front of the registry on `upstream_port`."""

    def __init__(self, upstream_port: int) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "devtools.proxyprocess", str(upstream_port)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self.url = self._process.stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            self.close()
            raise RuntimeError(f"the proxy process did not start (it said {self.url!r})")
        self.delay = 0.0

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()  # the child serves until its stdin closes
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def main() -> None:
    from devtools.registries import HubProxy

    proxy = HubProxy(_Behind(int(sys.argv[1])), limit=1_000_000_000, keep_alive=True)  # type: ignore[arg-type]
    proxy.requests = _Discard()  # nothing reads them back here: keep memory flat over a long benchmark
    print(proxy.url, flush=True)
    sys.stdin.read()  # serve (on the proxy's threads) until the parent closes our stdin
    proxy.close()


class _Discard(list):  # type: ignore[type-arg]
    def append(self, item: object) -> None:
        pass


if __name__ == "__main__":
    main()
