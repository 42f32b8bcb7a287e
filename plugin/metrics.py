"""The bot's Prometheus metrics, on a registry of its own (served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
