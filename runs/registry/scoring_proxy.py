"""The web side of scoring: hand a request to the deployment's scorer process and log it.

Scoring never runs in the web process: the deployer (runs/registry/deployer.py) keeps a scorer
per deployment, and this reads the deployment's `address` for each request. During a swap the
old scorer stops accepting DRAIN_S after the address moved; a request that read the old address
just before then gets "connection refused" and reads the address again, so none fails.
"""

from __future__ import annotations

import http.client
import json
import time

from runs.registry import scorer_client
from runs.registry.models import Deployment, ModelVersion, ScoringRequest

ATTEMPTS = 4
TIMEOUT_S = 30.0


class ScorerUnavailable(Exception):
    pass


def _post(address: str, body: bytes) -> tuple[int, dict]:
    conn = scorer_client.connection(address, timeout=TIMEOUT_S)
    try:
        conn.request("POST", "/score", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def score(*, deployment: Deployment, payload: object) -> tuple[int, dict]:
    """(status, body) from the deployment's scorer, logged as a ScoringRequest."""
    body = json.dumps(payload).encode()
    started = time.perf_counter()
    status, answer = 503, {"detail": "the deployment's scorer is not running yet: try again in a few seconds"}
    for attempt in range(ATTEMPTS):
        address = Deployment.objects.filter(pk=deployment.pk).values_list("address", flat=True).first()
        if not address:
            break
        try:
            status, answer = _post(address, body)
            break
        except (ConnectionRefusedError, ConnectionResetError, FileNotFoundError, http.client.RemoteDisconnected):
            # The scorer this address named has drained (a swap) or died: the address moves on.
            time.sleep(0.05 * (attempt + 1))
        except (OSError, ValueError, RecursionError, http.client.HTTPException) as exc:
            status, answer = 502, {"detail": f"the scorer did not answer: {type(exc).__name__}"}
            break
    else:
        status, answer = 503, {"detail": "the deployment's scorer is restarting: try again in a few seconds"}
    latency_ms = (time.perf_counter() - started) * 1000
    rows = payload.get("rows") or payload.get("inputs") if isinstance(payload, dict) else None
    answered_by = answer.get("version_id") if status == 200 else None
    if not (isinstance(answered_by, int) and ModelVersion.objects.filter(pk=answered_by).exists()):
        answered_by = None
    ScoringRequest.objects.create(
        deployment=deployment,
        model_version_id=answered_by,
        status=status,
        rows=len(rows) if isinstance(rows, list) else 0,
        latency_ms=latency_ms,
        error="" if status == 200 else str(answer.get("detail", ""))[:500],
    )
    return status, answer
