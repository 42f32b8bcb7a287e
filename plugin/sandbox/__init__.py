"""Simulators used by the tests and by `switchboard run` when no real server is configured.

`plugin.sandbox.mattermost` holds the Mattermost 5.36 simulator; its wire shapes are checked against
traffic recorded on a real server (see `tests/sandbox/test_conformance.py`).
"""
