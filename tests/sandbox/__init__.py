"""Tests of the Mattermost simulator: conformance with recorded traffic, and its own behaviour."""
