"""The `flwr` CLI's JSON answers, as `fedrad server status` and run control ask for them
against the aggregator's own connection."""

from __future__ import annotations

import json
import subprocess


class StatusUnavailable(Exception):
    """The aggregator did not answer; the message says why in one sentence."""


def ask(command: list[str], env: dict[str, str]) -> dict:
    """A `flwr` command's JSON answer; StatusUnavailable (a sentence) when it fails."""
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, encoding="utf-8", errors="replace", timeout=60
        )
        answer = json.loads(done.stdout)
    except FileNotFoundError as exc:
        raise StatusUnavailable("the `flwr` command is missing; install FedRad.") from exc
    except (subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
        raise StatusUnavailable("the aggregator did not answer in time.") from exc
    if not answer.get("success"):
        reason = " ".join(str(answer.get("error-message", done.stderr)).split())[-300:]
        raise StatusUnavailable(f"the aggregator refused the query: {reason}")
    return answer
