"""Crash points for fault tests.

`failpoint("relay.after_publish")` kills the process with SIGKILL, exactly as `kill -9`
would, when the environment variable TT_FAILPOINTS names that point. A point may be given
as `name` (crash on the first hit) or `name@N` (crash on the N-th hit), comma-separated.
With TT_FAILPOINTS unset this is a dictionary look-up and nothing else.
"""

from __future__ import annotations

import os
import signal
import sys

_hits: dict[str, int] = {}


def _armed() -> dict[str, int]:
    armed: dict[str, int] = {}
    for item in filter(None, os.environ.get("TT_FAILPOINTS", "").split(",")):
        name, _, nth = item.strip().partition("@")
        armed[name] = int(nth) if nth else 1
    return armed


def failpoint(name: str) -> None:
    """Kill this process here if TT_FAILPOINTS arms `name` and its hit count is reached."""
    armed = _armed()
    if name not in armed:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= armed[name]:
        sys.stderr.write(f"failpoint {name} reached: killing pid {os.getpid()} with SIGKILL\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
