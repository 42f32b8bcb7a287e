"""Shared fixtures: the real Redmine server (installed and started once per test run)."""

pytest_plugins = ["tests.servers.fixtures"]
