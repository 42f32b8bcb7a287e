"""Real servers (installed from Debian's packages) that the test suite starts on 127.0.0.1."""
