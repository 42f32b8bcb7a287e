"""Clients for the systems around Mattermost: ticket trackers and alert sources.

Nothing in this package knows Mattermost; each system sits behind a small interface.
"""
