"""What a claim and a complete cost Redis, in instructions: a figure the machine's load does not move.

A script, not a test. It starts its own redis-server under valgrind's callgrind (a free
port, never 6379), fills a board, then runs rounds of ``AGENTS`` claims and their
completes through ``RedisStore.admin.run_scripts`` (the scripts alone, pipelined), and
reads the instructions redis-server executed for each half from callgrind's counters
(``callgrind_control --dump`` zeroes them): instructions per claim, per complete and per
claim+complete cycle, and the same for ``complete_and_claim``'s one call. CPU time on a
shared 2-core machine varies from run to run by a third; instruction counts repeat to
within a percent, so a change to a script shows here first.

    .venv/bin/python bench/script_cost.py             # about 30 s
    .venv/bin/python bench/script_cost.py --cycles 200

Needs valgrind (Debian package valgrind) and redis-server on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis as redis_py
from _harness import header, load_avg, print_table
from _stats import Row

from claimroom.core.local_redis import free_port, redis_binary
from claimroom.core.redis.store import RedisStore, claimed_fields
from claimroom.core.store import TaskSpec

AGENTS = 10  # claims per pipelined round, one per agent
BATCH = 8  # tasks per agent per call in the complete_many row


def _triples(held: list[tuple[str, int]]) -> list[object]:
    """complete_many-1.lua's task arguments: id, token, result (none) of each."""
    return [x for task, token in held for x in (task, token, "")]


def _held_of(reply: list[object]) -> list[tuple[str, int]]:
    """(task, token) of each claim in a claim script's reply."""
    return [(tid, int(f["token"])) for tid, f in claimed_fields(reply) if f is not None]


class Callgrind:
    """A redis-server under callgrind; ``take()`` is the instructions run since the last take.
    With ``simulate``, callgrind also simulates the caches and branch predictors, and
    ``take_events()`` gives every count (Ir instructions, D1mr first-level data read misses,
    Bim indirect branches mispredicted, ...): what instructions alone do not say of the time
    they take."""

    def __init__(self, simulate: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="claimroom-callgrind-"))
        self.port = free_port()
        sim = ["--cache-sim=yes", "--branch-sim=yes"] if simulate else []
        self.proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", *sim, f"--callgrind-out-file={self.dir}/out.%p", redis_binary(),
             "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 60  # valgrind starts slowly
        while True:
            try:
                redis_py.Redis.from_url(self.url).ping()
                return
            except redis_py.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise SystemExit("script_cost: redis-server under valgrind did not start") from None
                time.sleep(0.1)

    def take(self) -> int:
        return self.take_events().get("Ir", 0)

    def take_events(self) -> dict[str, int]:
        """Each event's count since the last take (callgrind_control --dump zeroes them)."""
        subprocess.run(["callgrind_control", "--dump", str(self.proc.pid)], check=True, capture_output=True)
        newest = max(self.dir.glob(f"out.{self.proc.pid}.*"), key=lambda p: p.stat().st_mtime)
        text = newest.read_text()
        names = re.search(r"^events: (.+)$", text, re.M)
        counts = re.search(r"^(?:summary|totals): ([\d ]+)$", text, re.M)
        if not names or not counts:
            return {}
        return dict(zip(names.group(1).split(), map(int, counts.group(1).split()), strict=False))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


async def measure(cg: Callgrind, cycles: int) -> dict[str, float]:
    store = RedisStore(cg.url, "cost")
    try:
        await store.admin.load_scripts()
        await store.add_many([TaskSpec(title=f"t{i}") for i in range(2 * cycles + 4 * AGENTS)])
        agents = [f"agent-{i}" for i in range(AGENTS)]
        for name in agents:
            await store.register(name, max_claims=1)

        async def claims() -> list[tuple[str, int, str]]:
            held = []
            replies = await store.admin.run_scripts("claim", [[a, 60_000, "", 1] for a in agents])
            for name, reply in zip(agents, replies, strict=True):
                held += [(tid, token, name) for tid, token in _held_of(reply)]
            return held

        held = await claims()  # warm-up round, not counted
        await store.admin.run_scripts("complete", [[t, tok, ""] for t, tok, _ in held])
        cg.take()
        claim_i = complete_i = chained_i = batched_i = n = 0
        while n < cycles:
            held = await claims()
            claim_i += cg.take()
            await store.admin.run_scripts("complete", [[t, tok, ""] for t, tok, _ in held])
            complete_i += cg.take()
            n += len(held)
        held = await claims()
        cg.take()
        m = 0
        while m < cycles:  # complete_and_claim: complete-1.lua with its claim of the next
            replies = await store.admin.run_scripts(
                "complete", [[t, tok, "", name, "", "1", 60_000, "", 1] for t, tok, name in held]
            )
            chained_i += cg.take()
            m += len(held)
            names = [name for _, _, name in held]
            held = []
            for name, reply in zip(names, replies, strict=True):  # {0, k, k unblocked, claim reply}
                held += [(tid, token, name) for tid, token in _held_of(reply[2 + int(reply[1]) :])]
        # complete_many: each agent finishes its BATCH tasks and claims its next BATCH, one call.
        await store.admin.run_scripts("complete", [[t, tok, ""] for t, tok, _ in held])
        await store.add_many([TaskSpec(title=f"b{i}") for i in range(2 * BATCH * (cycles + 2 * AGENTS))])
        for name in agents:
            await store.register(name, max_claims=BATCH)
        replies = await store.admin.run_scripts("claim", [[a, 60_000, "", BATCH] for a in agents])
        batches = {a: _held_of(reply) for a, reply in zip(agents, replies, strict=True)}
        cg.take()
        b = 0
        while b < cycles:
            calls = [[a, BATCH, 60_000, "", *_triples(got)] for a, got in batches.items()]
            replies = await store.admin.run_scripts("complete_many", calls)
            batched_i += cg.take()
            b += sum(len(got) for got in batches.values())
            # {0, n, then per task its length and reply (each {0}: 1, 0), the claim's reply}
            after = [reply[2 + 2 * int(reply[1]) :] for reply in replies]
            batches = {a: _held_of(claim) for a, claim in zip(batches, after, strict=True)}
        per = {"claim": claim_i / n, "complete": complete_i / n, "chained": chained_i / m}
        return {**per, "batched": batched_i / b}
    finally:
        await store.close()


def peer_cost(tasks: int, simulate: bool = False) -> list[Row]:
    """The whole harness of ``--vs-peers`` (bench/_claims_peers.py) under callgrind: per
    system, a fresh redis-server under callgrind, ``tasks`` jobs enqueued (not counted),
    then the driver's worker with 10 agents until all are done, and every instruction the
    server ran meanwhile (scripts, commands, networking) per cycle. The same figure as
    "Redis CPU per cycle" without the machine's noise, and the ratio to BullMQ's. With
    ``simulate`` (slower), also per cycle the first-level data cache misses and the indirect
    branches mispredicted (each costs the processor ~15-20 cycles: the Lua interpreter
    jumps to every step it runs through one), the ratios to BullMQ's beside them."""
    from _claims_peers import CLAIMROOM, PEERS, peers_dir

    # What each row counts: (event, label, unit, divisor)
    shown = [("Ir", "Redis instructions", "k instr", 1000.0)]
    if simulate:
        shown += [
            ("D1mr", "L1 data read misses", "misses", 1.0),
            ("Bim", "indirect jumps mispredicted", "jumps", 1.0),
        ]
    envs, rows, bull = peers_dir(), [], None
    for peer in [p for p in PEERS if p.name == "bullmq"] + CLAIMROOM:
        cmd = peer.command(envs)
        if cmd is None:
            rows.append(Row(f"{peer.name}: not installed (bench/peers/setup)", "-", "-"))
            continue
        cg = Callgrind(simulate)
        try:
            env = {**os.environ, "CLAIMROOM_PEER_ENV": str(envs / peer.env)}
            args = [*cmd, "throughput", cg.url, "--tasks", str(tasks), "--agents", "10", *peer.args]
            proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
            assert proc.stdin is not None and proc.stdout is not None
            if "ready" not in proc.stdout.readline():
                raise SystemExit(f"script_cost: the {peer.name} driver did not start")
            cg.take()
            proc.stdin.write("go\n")
            proc.stdin.flush()
            proc.stdout.readline()  # its result: every job done
            proc.wait(600)
            per = {event: n / tasks for event, n in cg.take_events().items()}
        finally:
            cg.stop()
        bull = per if peer.name == "bullmq" else bull
        for event, what, unit, div in shown:
            ratio = ""
            if bull is not None and peer.name != "bullmq":
                ratio = f" ({per[event] / bull[event]:.2f}x BullMQ's)"
            rows.append(Row(f"{peer.name}: {what} per cycle{ratio}", f"{per[event] / div:,.0f}", unit))
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--cycles", type=int, default=100, help="cycles counted per figure (default 100)")
    p.add_argument(
        "--vs-bullmq", type=int, metavar="TASKS", nargs="?", const=2000, default=0,
        help="also the --vs-peers harness under callgrind for BullMQ and claimroom (default 2,000 tasks)",
    )  # fmt: skip
    p.add_argument(
        "--simulate", action="store_true",
        help="with --vs-bullmq: also cache and branch misses (callgrind simulates them; slower)",
    )  # fmt: skip
    args = p.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        # Not an error for `./dev bench`, which runs every bench: this one says why it did nothing.
        print("script_cost: valgrind is not installed (apt-get install valgrind); nothing measured")
        return 0
    start, load = time.perf_counter(), load_avg()
    cg = Callgrind()
    try:
        got = asyncio.run(measure(cg, args.cycles))
    finally:
        cg.stop()
    k = 1000.0
    rows = [
        Row("claim (claim-1.lua, one task)", f"{got['claim'] / k:,.0f}", "k instr"),
        Row("complete (complete-1.lua)", f"{got['complete'] / k:,.0f}", "k instr"),
        Row(
            "claim + complete: one cycle in two calls",
            f"{(got['claim'] + got['complete']) / k:,.0f}",
            "k instr",
        ),
        Row("complete_and_claim: one cycle in one call", f"{got['chained'] / k:,.0f}", "k instr"),
        Row(
            f"complete_many({BATCH}) claiming the next {BATCH}: per task",
            f"{got['batched'] / k:,.0f}",
            "k instr",
        ),
    ]
    if args.vs_bullmq:
        rows += peer_cost(args.vs_bullmq, args.simulate)
    print_table(header("script cost", ["redis-server under callgrind", f"{args.cycles} cycles"], load), rows,
                time.perf_counter() - start)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
