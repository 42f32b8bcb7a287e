"""Helpdesk figures: a burst of 1,000 `112 ...` messages through a Mattermost simulator that costs
what a real server costs, for Switchboard and for a bare reference bot, run in turn.

Each run gets a fresh tracker (the GLPI simulator in a process of its own: 50 ms a request, 16 at
a time), a fresh Mattermost simulator with the cost model on (its cost workers may use every
core, as the real server and its database did) and one bot, pinned where the other bot is. The
figure of a run is the time from the first message to the last reply; the bot's CPU time is what
it spent in that span, its memory the peak of its resident set (VmHWM). Runs alternate
(Switchboard, reference, Switchboard, reference, ...) and each figure is the median of its bot's
runs, so that the two bots meet the same machine.

On a real 5.36 server with PostgreSQL on 2 cores, a bare bot doing the same takes 2.4–2.9 times
the floor; the reference's ratio is checked against that (±15 %), which is what says the
simulator's costs are right. Each run also counts the link previews the server fetched for the
bot's replies: a bare ticket URL costs a page of the tracker's web UI per ticket, a markdown link
none.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.procfs import cpu_seconds, memory_mib
from bench.targets import Scorecard
from plugin.sandbox.costs import CostModel
from plugin.sandbox.mattermost import MattermostSimulator, SimulatorThread
from tests.e2e.harness import BOT_TOKEN, ROOT, BotProcess, wait_until

TICKETS = int(os.environ.get("BENCH_TICKETS", "1000"))
#: Runs of each bot (they alternate).
RUNS = int(os.environ.get("BENCH_HELPDESK_RUNS", "3"))
TRACKER_LATENCY = 0.05
TRACKER_CONCURRENCY = 16
GLPI_TOKEN = "bench-glpi-token"
#: The bare bot's ratio on a real server, and how far from it the reference may land.
REAL_RATIO = (2.4, 2.9)
REAL_TOLERANCE = 0.15
BOTS = ("switchboard", "reference")


@dataclass(frozen=True)
class Run:
    """One bot's run: seconds for the burst, CPU seconds it spent, peak RSS in MiB."""

    bot: str
    elapsed: float
    cpu_s: float
    peak_mib: float
    #: CPU seconds of the simulated server: its cost workers, and the simulator's own process
    #: (its event loop; the tracker's and the bot's CPU are elsewhere).
    workers_cpu_s: float = 0.0
    simulator_cpu_s: float = 0.0
    #: Link previews the simulated server fetched for the bot's replies (tracker pages: a bot
    #: whose replies carry a bare ticket URL pays a page render per ticket; markdown links, none).
    previews: int = 0


def floor_s() -> float:
    return TICKETS * TRACKER_LATENCY / TRACKER_CONCURRENCY


def _start_tracker(sim_cpu: set[int]) -> tuple[subprocess.Popen[str], str]:
    tracker = subprocess.Popen(
        [sys.executable, "-m", "plugin.sandbox.glpi", "--port", "0", "--user-token", GLPI_TOKEN,
         "--latency", str(TRACKER_LATENCY), "--max-concurrency", str(TRACKER_CONCURRENCY)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, sim_cpu))
    assert tracker.stdout is not None
    return tracker, tracker.stdout.readline().split()[-1]


def _start_reference(sim: MattermostSimulator, api_url: str, bot_cpu: set[int],
                     ) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.reference", "--mm-url", sim.url, "--token", BOT_TOKEN,
         "--glpi-url", api_url, "--glpi-token", GLPI_TOKEN],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        stdin=subprocess.DEVNULL, preexec_fn=lambda: os.sched_setaffinity(0, bot_cpu))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise AssertionError(f"the reference bot did not start: {line}{proc.stdout.read()}")
    return proc


def _burst(st: SimulatorThread, sim: MattermostSimulator, pid: int, bot: str) -> Run:
    """Post the burst and wait for every reply; the run's figures."""
    channel = sim.channel_id("helpdesk")
    numbers: set[str] = set()
    position = 0

    def answered() -> bool:
        nonlocal position
        rows, position = st.call(lambda: sim.messages(channel, position))
        for user_id, _root, message in rows:
            if user_id == sim.bot_id and "opened in GLPI" in message:
                found = re.search(r"#(\d+)", message)
                if found:
                    numbers.add(found.group(1))
        return len(numbers) >= TICKETS

    assert sim.cpu is not None
    cpu_before = cpu_seconds(pid)
    workers_before, own_before = sim.cpu.worker_cpu_seconds(), cpu_seconds(os.getpid())
    previews_before = len(sim.preview_fetches)
    started = time.perf_counter()
    st.call(sim.flood("helpdesk", "alice", [f"112 bench problem {i}" for i in range(TICKETS)]))
    wait_until(answered, 600, f"every reply of {bot}", interval=0.02)
    elapsed = time.perf_counter() - started
    return Run(bot, elapsed, cpu_seconds(pid) - cpu_before, memory_mib(pid, "VmHWM"),
               sim.cpu.worker_cpu_seconds() - workers_before,
               cpu_seconds(os.getpid()) - own_before,
               len(sim.preview_fetches) - previews_before)


def run_one(bot: str, bot_cpu: set[int], sim_cpu: set[int]) -> Run:
    """One burst through a fresh tracker and a cost-faithful simulator, for `bot`."""
    tracker, api_url = _start_tracker(sim_cpu)
    st = SimulatorThread(bot_token=BOT_TOKEN, cost_model=CostModel())
    sim = st.start()
    try:
        if bot == "reference":
            proc = _start_reference(sim, api_url, bot_cpu)
            try:
                return _burst(st, sim, proc.pid, bot)
            finally:
                proc.terminate()
                proc.wait(15)
        with tempfile.TemporaryDirectory() as tmp:
            switchboard = BotProcess(sim, Path(tmp), env={
                "SWITCHBOARD_LOG_LEVEL": "WARNING", "GLPI_URL": api_url,
                "GLPI_USER_TOKEN": GLPI_TOKEN, "HELPDESK_TRACKER": "glpi"})
            # The shipped defaults: the tracker's concurrency is found, not configured.
            switchboard.start(cpus=bot_cpu)
            try:
                switchboard.wait_ready()
                assert switchboard.proc is not None
                return _burst(st, sim, switchboard.proc.pid, bot)
            finally:
                switchboard.stop()
    finally:
        st.stop()
        tracker.terminate()
        tracker.wait()


def compare(bot_cpu: set[int], sim_cpu: set[int],
            progress: Callable[[str], None] = print) -> list[Run]:
    """RUNS runs of each bot, alternating."""
    runs: list[Run] = []
    for _ in range(RUNS):
        for bot in BOTS:
            run = run_one(bot, bot_cpu, sim_cpu)
            progress(f"  helpdesk run: {bot:<11} {run.elapsed:6.2f} s, ratio "
                     f"{run.elapsed / floor_s():.2f}, CPU {run.cpu_s:.2f} s, "
                     f"peak RSS {run.peak_mib:.1f} MiB; server CPU: cost workers "
                     f"{run.workers_cpu_s:.2f} s, simulator {run.simulator_cpu_s:.2f} s; "
                     f"link previews {run.previews}")
            runs.append(run)
    return runs


def report(runs: list[Run], card: Scorecard) -> None:
    """The helpdesk lines, judged."""
    floor = floor_s()
    per_thousand = 1000 / TICKETS

    def median(bot: str, field: str) -> float:
        return float(statistics.median(getattr(r, field) for r in runs if r.bot == bot))

    sb_time, ref_time = median("switchboard", "elapsed"), median("reference", "elapsed")
    low, high = REAL_RATIO
    ref_ratio = card.expect("reference ratio", ref_time / floor, low * (1 - REAL_TOLERANCE),
                            high * (1 + REAL_TOLERANCE), decimals=2)
    relative = card.judge("helpdesk ratio to reference", sb_time / ref_time, "<=", 1.1,
                          decimals=2)
    cpu = card.judge("helpdesk bot CPU", median("switchboard", "cpu_s") * per_thousand, "<=",
                     1.5, decimals=2, unit=" s")
    rss = card.judge("helpdesk peak RSS", median("switchboard", "peak_mib"), "<=", 55,
                     decimals=1, unit=" MiB")
    runs_each = len(runs) // len(BOTS)
    print(f"helpdesk: {TICKETS:,} '112' messages filed and answered through a Mattermost "
          f"simulator with a real server's CPU costs, against a tracker answering in "
          f"{TRACKER_LATENCY * 1000:.0f} ms, {TRACKER_CONCURRENCY} at a time; floor "
          f"{floor:.2f} s; medians of {runs_each} interleaved runs each")
    print(f"  switchboard: {sb_time:.2f} s, ratio {sb_time / floor:.2f} to the floor")
    print(f"  reference bot: {ref_time:.2f} s, ratio {ref_ratio.shown} to the floor "
          f"(a bare bot on a real server: {low:g}–{high:g}, ±{REAL_TOLERANCE:.0%}) "
          f"{ref_ratio.mark}")
    print(f"  switchboard / reference: {relative.shown} {relative.mark}")
    print(f"  bot CPU per 1,000 tickets: switchboard {cpu.shown} s {cpu.mark}, reference "
          f"{median('reference', 'cpu_s') * per_thousand:.2f} s")
    print(f"  peak RSS: switchboard {rss.shown} MiB {rss.mark}, reference "
          f"{median('reference', 'peak_mib'):.1f} MiB")
    previews = {bot: max(r.previews for r in runs if r.bot == bot) for bot in BOTS}
    print(f"  tracker pages fetched for link previews, most in a run: switchboard "
          f"{previews['switchboard']}, reference {previews['reference']}")
