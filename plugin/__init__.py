"""Switchboard: the Mattermost side — configuration, event stream, router, listener, state."""

__version__ = "0.1.0"
