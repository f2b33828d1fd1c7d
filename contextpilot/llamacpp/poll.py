"""``GET /slots`` reconciliation loop for the llama.cpp proxy: every
``slots_poll_interval`` seconds, llama-server's own view of its slots is
compared with the slot model, and requests a foreign task overwrote are
reported evicted. Stops for good when the engine has no ``/slots``
(404/501); other failures are recorded in ``/stats`` and retried."""

from __future__ import annotations

import asyncio
import logging

import httpx

from contextpilot.llamacpp.state import ProxyState

__all__ = ["poll_slots"]

log = logging.getLogger("contextpilot.llamacpp")


async def poll_slots(st: ProxyState) -> None:
    """Reconcile the slot model with ``GET /slots`` every interval (runs until cancelled)."""
    interval = st.config.slots_poll_interval
    while True:
        await asyncio.sleep(interval)
        token = st.tracker.poll_token()
        try:
            r = await st.engine.client.get(
                "/slots", timeout=httpx.Timeout(10.0, connect=st.config.connect_timeout)
            )
        except httpx.HTTPError as e:
            st.poll["last_error"] = st.engine.error_for(e).message
            continue
        if r.status_code in (404, 501):
            st.poll["last_error"] = f"GET /slots answered {r.status_code}: polling stopped"
            log.warning("llama-server has no /slots endpoint (HTTP %d): polling stopped", r.status_code)
            return
        try:
            slots = r.json()
        except ValueError:
            slots = None
        if r.status_code != 200 or not isinstance(slots, list):
            st.poll["last_error"] = f"GET /slots answered {r.status_code}"
            continue
        st.poll["polls"] += 1
        st.poll["last_error"] = None
        st.report(st.tracker.reconcile(token, slots))
