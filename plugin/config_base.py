"""The building blocks of the settings models: the base model, URL checks, TLS options and
groups of people, shared by `config.py` and `config_alerts.py`."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator


def http_url(value: str) -> str:
    """An http(s) URL with a host and a valid port, without a trailing slash ("" stays "")."""
    v = value.strip().rstrip("/")
    if v:
        parts = urlsplit(v)
        try:
            parts.port  # noqa: B018 - raises on a port out of range
        except ValueError:
            raise ValueError("has a port that is not a number from 1 to 65535") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
    return v


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TLSSettings(Model):
    """Certificate checks for an outside system's HTTPS."""

    verify: bool = Field(True, description="Verify the server's certificate.")
    ca_bundle: str = Field("", description="CA bundle file for a server signed by a private CA.")
    insecure: bool = Field(False, description="Accept any certificate (self-signed servers); "
                                              "never the default.")
    server_name: str = Field("", description="Name the server's certificate must carry when "
                                             "the URL names it otherwise, e.g. by IP address.")

    @field_validator("server_name")
    @classmethod
    def _bare_name(cls, value: str) -> str:
        value = value.strip()
        # A URL or host:port here would never match a certificate: say so at load time.
        if any(c in value for c in "/@ \t") or value.count(":") == 1:
            raise ValueError("must be a bare host name such as icinga-node (no scheme, port "
                             "or path)")
        return value


class StaffSettings(Model):
    """A group of people: named users, and the members of channels or teams."""

    users: list[str] = Field(default_factory=list,
                             description="Usernames (with or without `@`) or user ids.")
    channels: list[str] = Field(default_factory=list,
                                description="Members of these channels (names or ids of "
                                            "channels the bot is in).")
    teams: list[str] = Field(default_factory=list,
                             description="Members of these teams (names or ids).")
