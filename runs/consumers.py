"""The run page's websocket: the current state first, then every event of the run.

Protocol (server to client, JSON objects with a `type`; see runs.broadcast for the fields):
`run`, `step`, `log` (with `seq`, the number of its first line), `metric`, `param`; `error` answers
anything the client sends except `{"type": "ping"}`, which gets `{"type": "pong"}`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from runs import broadcast, selectors
from runs.models import Run

log = logging.getLogger(__name__)

CLOSE_FORBIDDEN = 4403


def _snapshot(run_id: int) -> list[dict[str, Any]]:
    run = Run.objects.filter(pk=run_id).first()
    if run is None:
        return []
    messages = [broadcast.run_payload(run)]
    steps = run.steps.select_related("reused_from").defer("fingerprint_parts", "reused_from__fingerprint_parts")
    messages.extend(broadcast.step_payload(step) for step in steps.order_by("id"))
    return messages


class RunConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        run_id = self.scope["url_route"]["kwargs"]["run_id"]
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        if not await database_sync_to_async(selectors.run_visible)(user=user, run_id=run_id):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        # Join before reading the snapshot: an event published in between is delivered after
        # the snapshot (the consumer handles one message at a time), never lost. The client
        # ignores events older than what it already shows.
        self.group = broadcast.group_name(run_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        for message in await database_sync_to_async(_snapshot)(run_id):
            await self.send_json(message)

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            content = json.loads(text_data) if text_data is not None else None
        except (ValueError, RecursionError):  # RecursionError: nested too deeply to decode
            content = None
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})
            return
        await self.send_json({"type": "error", "error": "this socket only sends; messages are ignored"})

    async def run_event(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        if isinstance(event, dict):
            await self.send_json(event)

    async def run_events(self, message: dict[str, Any]) -> None:
        """Several events of the run, sent together (runs/broadcast.py): to the client one by one."""
        for event in message.get("events") or []:
            if isinstance(event, dict):
                await self.send_json(event)
