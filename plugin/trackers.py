"""Builds the configured ticket trackers (bridge/) from settings."""

from __future__ import annotations

from bridge.tickets import TLSOptions, Tracker
from bridge.transport import PooledTransport

from .config import GLPISettings, RedmineSettings, Settings, TLSSettings
from .metrics import watch_upstream


def _tls(t: TLSSettings) -> TLSOptions:
    return TLSOptions(verify=not t.insecure and t.verify, ca_bundle=t.ca_bundle,
                      server_name=t.server_name)


def tls_transport(t: TLSSettings, limit: int = 8) -> PooledTransport:
    """The HTTPS transport for an outside system's `tls` settings (trackers and monitoring
    sources alike): the one place certificate checks, CA bundle and server name are applied.
    Its pool holds `limit` connections: give it the client's ceiling of requests in flight."""
    return _tls(t).transport(limit)


def build_trackers(settings: Settings) -> dict[str, Tracker]:
    """Every tracker whose settings are complete, by its configured name."""
    out: dict[str, Tracker] = {}
    for name, t in settings.trackers.items():
        if not t.configured:
            continue
        if isinstance(t, GLPISettings):
            from bridge.glpi import GLPITracker
            glpi = GLPITracker(
                url=t.url, user_token=t.user_token.get_secret_value(),
                app_token=t.app_token.get_secret_value(), web_url=t.web_url,
                ticket_type=t.ticket_type, requesttypes_id=t.requesttypes_id,
                itilcategories_id=t.itilcategories_id, entities_id=t.entities_id,
                tls=_tls(t.tls), timeout=t.timeout, max_in_flight=t.max_in_flight, name=name,
                transport=tls_transport(t.tls, t.max_in_flight))
            watch_upstream("tracker", name, glpi.limiter)
            out[name] = glpi
        elif isinstance(t, RedmineSettings):
            from bridge.redmine import RedmineTracker
            redmine = RedmineTracker(
                url=t.url, api_key=t.api_key.get_secret_value(), project=t.project,
                tracker_id=t.tracker_id, priority_ids=dict(t.priority_ids) or None,
                switch_user=t.switch_user, web_url=t.web_url, tls=_tls(t.tls),
                timeout=t.timeout, max_in_flight=t.max_in_flight, name=name,
                transport=tls_transport(t.tls, t.max_in_flight))
            watch_upstream("tracker", name, redmine.limiter)
            out[name] = redmine
    return out
