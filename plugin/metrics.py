"""The bot's Prometheus metrics, on a registry of its own (served at /metrics)."""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from bridge.limiter import Limiter

from .store import Store

#: The name of the gauge holding each outside system's limit of requests in flight.
UPSTREAM_LIMIT = "switchboard_upstream_limit"

#: The limiters of the trackers and monitoring sources built in this process, by (kind, name),
#: kind "tracker" or "source". Held weakly: a client closed and dropped leaves the metrics.
_upstreams: weakref.WeakValueDictionary[tuple[str, str], Limiter] = (
    weakref.WeakValueDictionary())


def watch_upstream(kind: str, name: str, limiter: Limiter) -> None:
    """Show `limiter`'s state on /metrics as the system `name` (a tracker or a source)."""
    _upstreams[(kind, name)] = limiter


class _Upstreams:
    """Each watched limiter's limit, ceiling and requests in flight, read when scraped."""

    _GAUGES = ((UPSTREAM_LIMIT, "Requests an outside system may have in flight now, as "
                                "learnt from its latency and refusals"),
               ("switchboard_upstream_limit_max", "The most requests in flight an outside "
                                                  "system may ever have (max_in_flight)"),
               ("switchboard_upstream_in_flight", "Requests to an outside system on the wire"),
               ("switchboard_upstream_waiting", "Requests waiting for a slot to an outside "
                                                "system"))

    def _families(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily(name, text, labels=["system", "kind"])
                for name, text in self._GAUGES]

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        limit, ceiling, in_flight, waiting = families = self._families()
        for (kind, name), limiter in sorted(_upstreams.items()):
            labels = [name, kind]
            limit.add_metric(labels, limiter.limit)
            ceiling.add_metric(labels, limiter.ceiling)
            in_flight.add_metric(labels, limiter.in_flight)
            waiting.add_metric(labels, limiter.waiting)
        return families


class Metrics:
    """Counters and histograms the runtime updates; one instance per bot."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_received = Counter(
            "switchboard_events_received", "Websocket events received", ["event"], registry=r)
        self.messages_backfilled = Counter(
            "switchboard_messages_backfilled", "Posts recovered over REST after a gap", registry=r)
        self.handled = Counter(
            "switchboard_handled", "Handler runs that finished", ["kind"], registry=r)
        self.handler_errors = Counter(
            "switchboard_handler_errors", "Handler runs that raised", ["kind"], registry=r)
        self.duplicates = Counter(
            "switchboard_duplicates_skipped", "Deliveries skipped as already handled", registry=r)
        self.reconnects = Counter(
            "switchboard_reconnects", "Websocket reconnections", ["reason"], registry=r)
        self.connected = Gauge(
            "switchboard_websocket_connected", "1 while the event stream is up", registry=r)
        self.last_event = Gauge(
            "switchboard_last_event_timestamp_seconds", "Unix time of the last event", registry=r)
        self.in_flight = Gauge(
            "switchboard_handlers_in_flight", "Handler runs queued or running", registry=r)
        self.latency = Histogram(
            "switchboard_handler_latency_seconds", "From receiving an event to its handler's end",
            ["kind"], registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.listener_requests = Counter(
            "switchboard_listener_requests", "Requests to the HTTP listener", ["route", "status"],
            registry=r)
        self.alerts_received = Counter(
            "switchboard_alerts_received", "Alerts accepted from monitoring systems, by source "
            "and status (firing, resolved)", ["source", "status"], registry=r)
        self.alert_actions = Counter(
            "switchboard_alert_actions", "Decisions carried back to monitoring systems, by "
            "source, action (ack, unack, silence, unsilence, resolve) and outcome (done, "
            "failed, retried)", ["source", "action", "outcome"], registry=r)
        self.tickets = Counter(
            "switchboard_tickets", "Ticket requests by tracker and outcome (filed, failed)",
            ["tracker", "outcome"], registry=r)
        # Read from the store when /metrics is asked for (`refresh`): what is, not what was.
        self.alerts_kept = Gauge(
            "switchboard_alerts", "Incidents kept, by source and state (firing, acknowledged, "
            "silenced, resolved)", ["source", "state"], registry=r)
        self.outbox_entries = Gauge(
            "switchboard_outbox_entries", "Unfinished requests to outside systems, by kind and "
            "state (queued, filed)", ["kind", "state"], registry=r)
        self.outbox_oldest = Gauge(
            "switchboard_outbox_oldest_seconds", "Age of the oldest unfinished request, by kind",
            ["kind"], registry=r)
        r.register(_Upstreams())

    async def refresh(self, store: Store) -> None:
        """Set the gauges read from the store (those of kinds and sources now gone drop)."""
        now = time.time()
        alerts = await store.alerts.by_state(now)
        backlog = await store.outbox.backlog()
        self.alerts_kept.clear()
        for source, state, count in alerts:
            self.alerts_kept.labels(source, state).set(count)
        self.outbox_entries.clear()
        self.outbox_oldest.clear()
        oldest: dict[str, float] = {}
        for kind, state, count, queued_at in backlog:
            self.outbox_entries.labels(kind, state).set(count)
            oldest[kind] = min(queued_at, oldest.get(kind, queued_at))
        for kind, queued_at in oldest.items():
            self.outbox_oldest.labels(kind).set(max(0.0, now - queued_at))
