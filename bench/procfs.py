"""What the kernel says of a process the benchmark watches: CPU time and memory."""

from __future__ import annotations

import os


def cpu_seconds(pid: int) -> float:
    """User and system CPU the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def memory_mib(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of /proc/<pid>/status in MiB: `VmRSS` now, `VmHWM` the peak so far."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0
