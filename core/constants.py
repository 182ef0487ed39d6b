"""Every key builder and every duration or limit of the engine, in one place.

Durations carry their unit in the name. Key builders take the namespace; every key of
a namespace shares one hash tag so a whole board lives in one Redis Cluster slot.
"""

from __future__ import annotations

# Leases and recovery.
default_lease_ttl_s = 60.0
max_lease_ttl_s = 7 * 24 * 3600.0
late_stage_progress = 0.5  # below: an expired lease goes back to queued; at or above: orphaned
max_lease_expiries = 3  # a task that keeps killing its agents ends dead, reason "lease-expired"
reap_batch = 100  # expired leases handled per script call
# Cascades: a task that ends dead or cancelled cancels what depends on it (and an operator's
# retry may restore them). One script call changes at most this many tasks that way; the
# rest wait in the cascade index for the next call (the reaper's pass, or the next ending).
cascade_batch = 500

# Bounded work (design rule 10): no script call does work that grows with the board.
claim_batch_max = 64  # tasks leased per claim script call; claim_many loops for more
add_chunk = 50  # tasks written per add script call (~1.5 ms on Redis); add_many loops for more
# Distinct capability sets ("signatures") among a board's unfinished tasks: a claim looks at
# each one it could take, so their number is capped; an add that would go past is refused.
# At 64 a claim by an agent that can take every set costs ~0.4 ms of Redis, claim_many(64)
# ~4.5 ms (at 256: 1.3 ms and 13 ms).
max_capsigs = 64
max_claim_queues = 32  # --queue values in one claim

# Fencing tokens across failovers and restarts (lua/lib.lua next_token). Replication and
# AOF everysec are asynchronous, so the process now serving a namespace may never have seen
# the last tokens handed out. When the serving process changes (its run_id), a new epoch
# begins and tokens jump to its floor: ms since epoch_base_ms times epoch_tokens_per_ms. A
# token of an earlier epoch is below every token of a later one while fewer than 64,000
# tokens a second are handed out (one Redis hands out ~10,000 at most) and the masters'
# clocks agree to within the failover time. Tokens stay below 10^14, where Lua still
# prints (%.14g) and cjson encodes them exactly, until about 2074.
epoch_base_ms = 1_735_689_600_000  # 2025-01-01T00:00:00Z
epoch_tokens_per_ms = 64

# Retries.
default_max_attempts = 3
backoff_base_ms = 1000
backoff_max_ms = 5 * 60 * 1000

# Agents and their circuit breaker.
default_max_claims = 1
max_max_claims = 10_000
breaker_threshold = 5  # consecutive failures or lease expiries that open the breaker
breaker_cooldown_ms = 60_000

# Path locks.
default_lock_ttl_s = 300.0

# Input limits.
max_payload_bytes = 256 * 1024
max_title_chars = 500
max_text_chars = 4096  # reasons, stages
max_checkpoint_bytes = 64 * 1024
min_priority = -1000
max_priority = 1000
# A task's ready score, claimed lowest first: (max_priority - priority) * ready_priority_step + seq,
# so priority first, then creation order. seq stays below the step, and every score is a whole
# number a double holds exactly (2001 * 2^42 < 2^53) in Lua, in Python and in SQLite.
ready_priority_step = 2**42
max_batch_add = 10_000
# JSON text read for --payload/--result (argument, @FILE or stdin) is read at most this far:
# room for indentation around a value whose compact form is within max_payload_bytes.
max_json_text_bytes = 4 * max_payload_bytes
max_json_depth = 64  # lists and objects nested deeper than this are refused
max_page = 10_000_000  # tasks or events in one listing (ls --limit, events --limit)
max_offset = 1_000_000_000  # ls --offset
# Tokens and event-id parts: whole numbers exact in Lua's doubles and SQLite's integers.
max_counter = 2**53 - 1

# Bearer tokens (core/tokens.py): "crm_" and 43 URL-safe characters (32 random bytes); the
# board keeps only their sha256, with the agent, the role and the first characters.
token_prefix = "crm_"
token_random_bytes = 32
token_hint_chars = 8
max_tokens = 1_000  # per board: `token ls` and a revoke read them all (rule 10)

# Audit trail: a capped stream (approximate trimming keeps XADD O(1)).
audit_max_len = 200_000
# Upkeep the Lua scripts do on one call in this many per board and Redis process rather than
# on each (lib.lua every_nth): the audit trail's cap (XADD MAXLEN ~) and deadlines_keep's ZADD,
# each ~2k of the instructions a claim or a completion costs Redis. So the trail may run this
# many events past audit_max_len (and ~ trims whole stream nodes, 100 entries, anyway).
upkeep_every = 64
# Small integer arguments (lease lengths, claim counts, capacities) whose number and text a
# Redis process remembers (lib.lua small_int): past this many texts it forgets them all.
small_ints_kept = 256

# Retention (core/redis/lua/retain-1.lua, core/file/retention.py): what the reaper pass removes.
# Finished tasks are kept for a time and a count per queue, whichever removes first, like
# BullMQ's removeOnComplete / removeOnFail {age, count}; each queue may override the
# board's settings (Store.set_retention). Done work is kept a day; failures (dead and
# cancelled) a week, since people come back to look at them.
retention_done_s = 24 * 3600.0
retention_done_count = 10_000  # per queue: the newest this many done tasks are kept
retention_failed_s = 7 * 24 * 3600.0
retention_failed_count = 10_000  # per queue, dead and cancelled together
# The whole board: the audit trail's own horizon and its size (on top of audit_max_len),
# and agents registered implicitly by a claim, idle (holding nothing) this long.
retention_events_s = 7 * 24 * 3600.0
retention_events_bytes = 64 * 1024 * 1024
retention_agents_s = 7 * 24 * 3600.0
max_retention_s = 100 * 365 * 24 * 3600.0  # longer is "forever": give None
max_retention_count = 1_000_000_000
# Bounded work per retention script call (rule 10); Store.reap loops while more is due.
retention_batch = 100  # finished tasks looked at per call (~1.5 ms of Redis: what a claim may wait)
retention_queues_batch = 50  # queues whose finished tasks are looked at per call
retention_agents_batch = 100  # agents looked at per call (SSCAN COUNT on Redis)
retention_events_batch = 10_000  # audit events trimmed per call at most
retention_recheck_s = 60.0  # a queue with finished tasks is looked at again at least this often
retention_calls_per_reap = 10  # Store.reap runs up to this many retention calls while more is due
# A finished index is in the order its tasks finished (scored by the ms they finished in and
# their rank in it: lib.lua finish_order; an older board's from 1 by ``seq:finished``).
# Tasks indexed other than as they finished come first, scored below all of those: an older
# board's, found by a walk in creation order, at seq - finished_backfill_offset; an import's,
# in the order they finished, at updated_ms - finished_import_offset.
finished_backfill_offset = 2**50
finished_import_offset = 2**51
events_bytes_samples = 5  # stream nodes (~100 events each) MEMORY USAGE samples for its size
task_events_max = 10_000  # audit event ids indexed per task (the newest; the trail keeps all)
# A task's index of its events beyond its list `taskevents:<id>`: the ids of the events of
# the lean claim and the lean completion, written into its hash with its state (lib.lua
# index_event: a field costs Redis less than an RPUSH). An earlier claim's id moves to the
# list when the task is claimed again.
task_event_fields = ("claim_eid", "done_eid")

# Blocking claim: a waiter re-checks at least this often even without any hint, so a lost
# hint costs at most this much delay.
wait_recheck_s = 1.0

# Reaper loop and its leader lease. Every long-lived claimroom process (the control room,
# claim --wait, reap --loop) runs the loop; one at a time leads it and reaps.
reap_interval_s = 0.5
min_reap_interval_s = 0.05  # reap --loop --interval: shorter would only burn the store's CPU
max_reap_interval_s = 60.0
demo_min_s, demo_max_s = 1.0, 3600.0  # demo --seconds
reaper_lease_ms = 5_000
reaper_backoff_first_s = 0.25  # after a failed pass (store down): 0.25 s, 0.5 s, ... up to the max
reaper_backoff_max_s = 5.0
# Doctor: live claims and no reaper pass within this many of the last reaper's intervals,
# nor within this long (two leader leases: a crashed leader's lease must run out before
# another process may lead), means recovery waits for someone to call claim.
reaper_stale_intervals = 3
reaper_stale_min_s = 10.0

# Store connection.
connect_timeout_s = 3.0

# --- File store (core/file/store.py: SQLite in WAL mode, for one machine) ---------------
file_db_name = "claimroom.db"  # one database file per directory; namespaces share it
file_busy_timeout_s = 5.0  # an operation that cannot get the database this long: "store busy"
file_busy_retry_s = 0.002  # upper bound of the random pause between tries for the write lock
# A write waits this long for its turn with the event loop held (cheaper than a thread hop:
# see file/runner.py, TxRunner._write), then without; a GC pause's worth.
file_turn_block_s = 0.02
file_poll_s = 0.025  # how often a waiting claimer or view looks for a change (a cheap pragma)
# A claim or complete changes ~10 pages (the task row, its indexes, counters, the audit
# row, the agent), each written whole to the WAL at commit: smaller pages, less to write
# (bench/claims.py, 8 processes: 4096 -> 1024 bytes ~ +15% cycles/s).
file_page_size = 1024
file_synchronous = "NORMAL"  # WAL + NORMAL: a killed process loses nothing; power loss may drop
# the last commits but never corrupts (FULL would fsync every commit)
file_audit_trim_slack = 10_000  # the reaper trims the audit table once it is this far past its cap
file_audit_trim_batch = 10_000  # events deleted per reaper pass at most (~20 ms here); the next pass goes on
migrate_clock_skew_ms = 1_000  # two stores' clocks further apart than this: shift live deadlines
# --- end of the file store block ------------------------------------------------------

# Values substituted into the Lua scripts at load time (``${name}`` in the source).
LUA_CONSTANTS: dict[str, int | float | str] = {
    "late_stage_progress": late_stage_progress,
    "max_lease_expiries": max_lease_expiries,
    "reap_batch": reap_batch,
    "cascade_batch": cascade_batch,
    "backoff_base_ms": backoff_base_ms,
    "backoff_max_ms": backoff_max_ms,
    "default_max_claims": default_max_claims,
    "breaker_threshold": breaker_threshold,
    "breaker_cooldown_ms": breaker_cooldown_ms,
    "audit_max_len": audit_max_len,
    "upkeep_every": upkeep_every,
    "small_ints_kept": small_ints_kept,
    "max_priority": max_priority,
    "ready_priority_step": ready_priority_step,
    "claim_batch_max": claim_batch_max,
    "add_chunk": add_chunk,
    "max_capsigs": max_capsigs,
    "retention_done_ms": int(retention_done_s * 1000),
    "retention_done_count": retention_done_count,
    "retention_failed_ms": int(retention_failed_s * 1000),
    "retention_failed_count": retention_failed_count,
    "retention_events_ms": int(retention_events_s * 1000),
    "retention_events_bytes": retention_events_bytes,
    "retention_agents_ms": int(retention_agents_s * 1000),
    "retention_batch": retention_batch,
    "retention_queues_batch": retention_queues_batch,
    "retention_agents_batch": retention_agents_batch,
    "retention_events_batch": retention_events_batch,
    "retention_recheck_ms": int(retention_recheck_s * 1000),
    "events_bytes_samples": events_bytes_samples,
    "finished_backfill_offset": finished_backfill_offset,
    "task_events_max": task_events_max,
    "max_tokens": max_tokens,
    "epoch_base_ms": epoch_base_ms,
    "epoch_tokens_per_ms": epoch_tokens_per_ms,
}


def prefix(namespace: str) -> str:
    """The key prefix of a namespace: ``{claimroom:NS}:``."""
    return "{claimroom:" + namespace + "}:"


def events_key(namespace: str) -> str:
    """The audit stream."""
    return prefix(namespace) + "events"


def hints_channel(namespace: str) -> str:
    """The pub/sub channel every change is announced on, for views (a hint, never relied on)."""
    return prefix(namespace) + "hints"


def claimable_channel(namespace: str) -> str:
    """Where waiting claimers hear of work that became claimable: "QUEUE SIG" (SIG the
    capabilities it needs, "*" any; QUEUE "*" any)."""
    return prefix(namespace) + "claimable"


def wake_channel(namespace: str, agent: str) -> str:
    """Where one agent's waiting claims hear of what concerns it alone: a task assigned to
    it, one of its claims ended (capacity freed), its capabilities or breaker changed."""
    return prefix(namespace) + "wake:" + agent


def epoch_key(namespace: str) -> str:
    """The token epoch: a hash of n (epochs begun), run_id (the Redis process serving it)
    and since_ms (when it began), written by lua/lib.lua next_token."""
    return prefix(namespace) + "epoch"


def seq_key(namespace: str, what: str) -> str:
    """A counter: ``task`` numbers tasks, ``token`` hands out fencing tokens."""
    return prefix(namespace) + "seq:" + what


def task_key(namespace: str, task_id: str) -> str:
    return prefix(namespace) + "task:" + task_id


def agent_key(namespace: str, agent: str) -> str:
    return prefix(namespace) + "agent:" + agent


def state_key(namespace: str, state: str) -> str:
    """Index of the tasks in one state, scored by creation order."""
    return prefix(namespace) + "state:" + state


def ready_key(namespace: str, queue: str, capsig: str) -> str:
    """Claimable tasks of one queue needing exactly the capabilities ``capsig``."""
    return prefix(namespace) + "ready:" + queue + ":" + capsig


def due_key(namespace: str) -> str:
    """When something on the board next falls due (a string: ms on the store clock, or "inf"):
    lib.lua due_at and sweep_due. Deleting it makes the next claim sweep every index and set
    it anew. (A board written before this kept it in a one-member zset at ``due``.)"""
    return prefix(namespace) + "due:at"


def deadlines_key(namespace: str) -> str:
    """Live claims scored by lease deadline (ms, store clock): what the reaper scans, and the
    index of claimed tasks. Holds ``deadlines_keep`` too (at +inf), never a claim."""
    return prefix(namespace) + "deadlines"


# A member of `deadlines` that is no task (task ids never start with "~"), scored +inf, longer
# than Redis's zset-max-listpack-value (64 bytes by default): a sorted set holding it is kept
# as a skiplist. As a listpack (up to 128 members), each claim's ZADD and each completion's
# ZREM scanned every live claim: ~40k instructions a pair at 80 claims, ~5k as a skiplist
# (bench/script_cost.py). Readers of deadlines read up to "(inf" only (core/redis/reads.py).
# Written with a claim's ZADD on one claim in upkeep_every (lib.lua enter_claimed): once
# there it stays, and Redis never turns a skiplist back into a listpack.
deadlines_keep = "~" + "keeps this index a skiplist, not a claim".replace(" ", "~").ljust(79, "~")


def backoff_key(namespace: str) -> str:
    """Retrying tasks scored by the time their backoff ends."""
    return prefix(namespace) + "backoff"


def queues_key(namespace: str) -> str:
    """The queues holding claimable (queued, unassigned) tasks; empty queues leave it."""
    return prefix(namespace) + "queues"


def capsigs_key(namespace: str, queue: str) -> str:
    """The signatures (``requires``) of a queue's claimable tasks: one ready set each."""
    return prefix(namespace) + "capsigs:" + queue


def heads_key(namespace: str, capsig: str) -> str:
    """Open (not paused) queues with claimable tasks needing ``capsig``, each scored by its
    best task's ready score: a signature's best task anywhere is one ZRANGE away."""
    return prefix(namespace) + "heads:" + capsig


def sigs_key(namespace: str) -> str:
    """Signature -> how many unfinished (not done or cancelled) tasks need it; at most
    ``max_capsigs`` fields, which bounds what a claim looks at."""
    return prefix(namespace) + "sigs"


def paused_key(namespace: str) -> str:
    return prefix(namespace) + "paused"


def tokens_key(namespace: str) -> str:
    """Bearer tokens: a hash of sha256(token) hex -> JSON {agent, role, created_ms, hint}."""
    return prefix(namespace) + "tokens"


def agents_key(namespace: str) -> str:
    return prefix(namespace) + "agents"


def held_key(namespace: str, agent: str) -> str:
    """The tasks an agent currently holds."""
    return prefix(namespace) + "held:" + agent


def locks_key(namespace: str) -> str:
    """Locked paths scored by their latest holder expiry."""
    return prefix(namespace) + "locks"


def lockpaths_key(namespace: str) -> str:
    """Every locked path at score 0, in lexical order: finds locks under a directory."""
    return prefix(namespace) + "lockpaths"


def lock_key(namespace: str, path: str) -> str:
    return prefix(namespace) + "lock:" + path


def tasklocks_key(namespace: str, task_id: str) -> str:
    """The holds tied to a claim of the task, as ``<agent>|<path>``: they end with the claim."""
    return prefix(namespace) + "tasklocks:" + task_id


def assigned_key(namespace: str, agent: str) -> str:
    """Queued tasks an operator reassigned to ``agent``, by ready score: its next claims take them first."""
    return prefix(namespace) + "assigned:" + agent


def dependents_key(namespace: str, task_id: str) -> str:
    """Every task added after ``task_id``, waiting on it or not: what its completion unblocks,
    what its end cancels, and why retention keeps it while they are on the board."""
    return prefix(namespace) + "dependents:" + task_id


def children_key(namespace: str, task_id: str, token: str) -> str:
    """The subtasks created under one claim (its fencing token) of ``task_id``: what a rollback
    of that claim cancels. (Boards written before per-claim sets have ``children:<task_id>``.)"""
    return prefix(namespace) + "children:" + task_id + ":" + token


def cascaded_key(namespace: str, task_id: str) -> str:
    """The tasks a cascade from ``task_id`` cancelled: what a retry with restore brings back."""
    return prefix(namespace) + "cascaded:" + task_id


def cascades_cancel_key(namespace: str) -> str:
    """Tasks whose dependents are still to cancel, scored by when they joined: the cascades
    that did not fit in one script call (``cascade_batch``) go on from here."""
    return prefix(namespace) + "cascades:cancel"


def cascades_restore_key(namespace: str) -> str:
    """Tasks whose cascade-cancelled dependents a restore has still to bring back, as above."""
    return prefix(namespace) + "cascades:restore"


def task_events_key(namespace: str, task_id: str) -> str:
    """The ids of a task's audit events, oldest first (a list): its history in one read."""
    return prefix(namespace) + "taskevents:" + task_id


def retention_key(namespace: str) -> str:
    """Retention settings: a hash of scope -> JSON, scope "*" the board, else a queue."""
    return prefix(namespace) + "retention"


def finished_key(namespace: str, kind: str, queue: str) -> str:
    """A queue's finished tasks of one kind ("done", or "failed": dead and cancelled),
    scored by when they finished (lib.lua finish_order): what retention removes."""
    return prefix(namespace) + "finished:" + kind + ":" + queue


def retention_due_key(namespace: str) -> str:
    """Members "<kind>:<queue>" scored by when retention should next look at them (ms)."""
    return prefix(namespace) + "retention:due"


def retention_held_key(namespace: str) -> str:
    """Done tasks kept for a task that depends on them, scored as in their finished set."""
    return prefix(namespace) + "retention:held"


def retention_cursor_key(namespace: str) -> str:
    """Where retention's walks are: ``agents`` (an SSCAN cursor), ``backfill``."""
    return prefix(namespace) + "retention:cursor"


def reaper_key(namespace: str) -> str:
    """The leader lease of the reaper loop."""
    return prefix(namespace) + "reaper"


def reaper_status_key(namespace: str) -> str:
    """The reaper's heartbeat: who ran the last pass, when, and the last pass that recovered
    something (a hash written by reap-1.lua)."""
    return prefix(namespace) + "reaper:status"


# --- Infrastructure: store resolution, auto-start, health (core/infra/) -------------------

env_url = "CLAIMROOM_URL"  # the one store to use, when set
env_token = "CLAIMROOM_TOKEN"  # a bearer token: the CLI acts as its agent (core/acting.py)
env_home = "CLAIMROOM_HOME"  # the project root, when set (else nearest dir with .git, else cwd)
env_redis_image = "CLAIMROOM_REDIS_IMAGE"  # the Docker image to start Redis from
default_redis_port = 6379
default_redis_image = "redis:7"
infra_dirname = ".claimroom"  # per-project: config, start lock, local server data, file board
config_filename = "config.json"
start_lock_filename = "start.lock"
started_filename = "started.json"  # what claimroom started for this project (for down/health)
password_filename = "redis.password"  # the password of the stores claimroom starts (0600)
password_bytes = 32  # of randomness in a generated store password (43 URL-safe characters)
local_server_dirname = "redis"
file_board_dirname = "board"
docker_container_name = "claimroom-redis"  # for the default port; other ports get a -PORT suffix
docker_volume_name = "claimroom-redis-data"
docker_label = "io.claimroom.managed"  # set to "true" on every container/volume claimroom creates
docker_label_port = "io.claimroom.port"
docker_restart_policy = "unless-stopped"
docker_engine_timeout_s = 5.0  # one Docker API call (engine ping, container start)
docker_pull_timeout_s = 300.0
docker_stop_timeout_s = 5
probe_timeout_s = 1.0  # a PING to see whether a store answers
store_start_timeout_s = 20.0  # a started store must answer PING within this
start_lock_timeout_s = 60.0  # wait this long for another process that is starting the store
start_lock_poll_s = 0.05
local_stop_timeout_s = 5.0
# Key-event notifications the control room listens to: generic commands (del, rename,
# expire...) and expiries, i.e. the changes that bypass the scripts (a hand-run redis-cli
# DEL, an expiring leader lease). The scripts announce their own changes on the hints
# channel, so the per-type classes (hash, zset, set, stream) are left off: each would fire
# on every write inside every script, for no listener, and cost Redis ~15% more CPU per
# script call (85 -> 73 us per script call in a claim+complete loop, INFO commandstats).
keyspace_events = "Egx"
keyspace_event_names = ("del", "expired", "rename_from", "rename_to", "expire")


def keyspace_events_on(flags: str) -> bool:
    """Whether a server's notify-keyspace-events value includes what keyspace_events asks."""
    have = set(flags.replace("A", "g$lshzxet"))
    return set(keyspace_events) <= have


def keyspace_events_merged(flags: str) -> str:
    """``flags`` plus what claimroom needs, keeping whatever else the server had on."""
    return "".join(sorted(set(flags) | set(keyspace_events)))


# The settings every store claimroom starts runs with: nothing evicted, changes logged to
# disk, the key-event notifications above.
redis_server_settings: tuple[tuple[str, str], ...] = (
    ("appendonly", "yes"),
    ("appendfsync", "everysec"),
    ("maxmemory-policy", "noeviction"),
    ("notify-keyspace-events", keyspace_events),
)

# Health monitor (core/infra/health.py) and doctor.
health_interval_s = 2.0
health_backoff_initial_s = 0.2
health_backoff_max_s = 10.0
health_latency_warn_ms = 50.0
health_memory_warn_ratio = 0.8  # used / maxmemory above this: warn


# --- MCP server (core/mcp/) --------------------------------------------------------------

mcp_path = "/mcp"  # where the Streamable HTTP endpoint is mounted
mcp_default_port = 8765
# A request body past this is refused (413) before it is parsed: room for the largest
# payload or result (max_payload_bytes) even with every character JSON-escaped.
mcp_max_body_bytes = 1024 * 1024
# A token resolved by the board is trusted this long before it is looked up again: a
# revoked token stops working within this time. While the store is down, a token it
# resolved before is still taken (a revocation could not have been written either).
mcp_token_cache_s = 2.0
mcp_token_cache_max = 10_000  # distinct tokens remembered at most
# A claim that waits reports progress (notifications/progress) this often, so an agent sees
# it is alive and waiting for work; between reports it waits like claim --wait.
mcp_claim_progress_s = 2.0
max_mcp_claim_wait_s = 3600.0  # a claim waits at most this long (the client's timeout may be shorter)
# Resource-updated and list-changed notifications: audit events are gathered this long and
# sent as one notification per resource, so a busy board cannot flood a client.
mcp_notify_gap_s = 0.2
mcp_follow_backoff_max_s = 5.0  # re-follow the audit trail after an outage, backing off to this
mcp_inbox_events = 50  # the newest events an agent's inbox resource shows
mcp_list_tasks = 100  # unfinished tasks resources/list names (the board resource has the rest)
# The server record on the board (Store.servers) is refreshed this often and expires after
# server_ttl_s without a refresh: a server that died leaves the list within that time.
server_refresh_s = 2.0
server_ttl_s = 10.0
server_clients_window_s = 60.0  # "clients": distinct agents that made a call this recently
max_servers = 100  # server records read at most (rule 10)
LUA_CONSTANTS["max_servers"] = max_servers
LUA_CONSTANTS["deadlines_keep"] = deadlines_keep
# A task's lease length (ttl_ms) is not stored when it is this: what a claim at the default
# lease writes (lib.lua task_defaults, models.Task.from_fields, core/redis/dump.py export).
# The stored format's default: fixed, whatever default_lease_ttl_s becomes.
stored_ttl_ms = 60_000
LUA_CONSTANTS["stored_ttl_ms"] = str(stored_ttl_ms)

# --- Messages between agents (core/messages.py) ------------------------------------------
# A message's text is at most this many bytes (UTF-8); newline and tab are its only
# control characters. Each agent's inbox and the broadcast log keep their newest this many
# (the oldest go when one more arrives); retention removes those older than the audit
# trail's horizon, at most retention_messages_batch a call.
max_message_bytes = 4096
inbox_max = 1_000
broadcasts_max = 1_000
inbox_default_limit = 100  # messages one inbox read returns unless told
retention_messages_batch = 500
operator_sender_prefix = "operator:"  # a message from an operator: "operator:NAME" (agent names hold no ':')
LUA_CONSTANTS.update(
    inbox_max=inbox_max, broadcasts_max=broadcasts_max, retention_messages_batch=retention_messages_batch
)


def inbox_key(namespace: str, agent: str) -> str:
    """An agent's direct messages: a sorted set of JSON messages scored by message id."""
    return prefix(namespace) + "inbox:" + agent


def inbox_read_key(namespace: str, agent: str) -> str:
    """The ids of the direct messages ``agent`` has read (score = id), trimmed with its inbox."""
    return prefix(namespace) + "inboxread:" + agent


def broadcasts_key(namespace: str) -> str:
    """Messages to every agent: a sorted set of JSON messages scored by message id."""
    return prefix(namespace) + "broadcasts"


def broadcast_read_key(namespace: str, agent: str) -> str:
    """The ids of the broadcasts ``agent`` has read (score = id); ids below the oldest kept
    broadcast are stale and dropped when the agent reads again."""
    return prefix(namespace) + "broadcastread:" + agent


def message_boxes_key(namespace: str) -> str:
    """Every non-empty inbox (an agent's name, "*" the broadcast log) scored by the time of
    its oldest message (ms): what retention looks at."""
    return prefix(namespace) + "messages:boxes"


# --- Market-based bidding (core/bidding.py, lua/bid-1.lua, file/bidding.py) ------------------

max_bid_window_s = 24 * 3600.0  # add --bid-window: longer is refused
max_bids_per_task = 100  # distinct bidders per window: a close ranks them all (rule 10)
max_bid_cost = 1e15  # a cost above this is refused (exact in both stores' doubles)
auction_batch = 20  # windows closed per script call (claim or reap); the next call goes on
auctions_view_max = 50  # open windows a view reads at most
LUA_CONSTANTS["max_bids_per_task"] = max_bids_per_task
LUA_CONSTANTS["auction_batch"] = auction_batch


def auctions_key(namespace: str) -> str:
    """Open bidding windows: a sorted set of task ids by when each window closes (ms)."""
    return prefix(namespace) + "auctions"


def bids_key(namespace: str, task_id: str) -> str:
    """The bids of one open window: a hash of agent -> "cost|at_ms|ttl_ms"."""
    return prefix(namespace) + "bids:" + task_id


def won_key(namespace: str, agent: str) -> str:
    """Claims an agent won in an auction and was not handed yet (by claim or bid --wait):
    a sorted set of task ids scored by the won claim's token."""
    return prefix(namespace) + "won:" + agent


def servers_key(namespace: str) -> str:
    """MCP servers on this board: a sorted set of server ids by when each record expires."""
    return prefix(namespace) + "servers"


def server_records_key(namespace: str) -> str:
    """The servers' records: a hash of server id -> JSON (see models.ServerInfo)."""
    return prefix(namespace) + "servers:records"


# --- consistent-hash affinity (core/affinity.py; lua/lib.lua's ring_* and route) ---------
# A task with an affinity key waits first for the live, capable agent owning the key on a
# ring of virtual nodes (each agent at affinity_vnodes points, sha1 of "<agent>#<i>"); after
# its steal delay any capable agent may claim it. "Live": seen (register, alive, claim,
# heartbeat) within affinity_live_s; the reaper takes agents not seen that long off the ring.
affinity_vnodes = 64  # ring points per agent: ~1/N of keys move when an agent joins or leaves
affinity_walk_max = 32  # ring points an owner lookup visits at most (the bounded walk, rule 10)
affinity_live_s = 120.0  # two default lease ttls: a working agent heartbeats well within it
# A claim writes its agent's last sighting (and place on the ring) at most once a second of the
# store's clock (lib.lua touch_agent): an agent claiming in a loop would otherwise pay two writes
# a claim to say what a second ago said.
affinity_steal_delay_s = 30.0  # default of add --steal-after
max_steal_after_s = 24 * 3600.0
affinity_scan_max = 16  # entries of its owner index a claim looks at for one in a chosen, open queue
affinity_leave_batch = 8  # agents a pass takes off the ring at most
affinity_move_batch = 50  # waiting tasks of a leaving agent re-routed at once (the rest: their steal time)
LUA_CONSTANTS.update(
    {
        "affinity_vnodes": affinity_vnodes,
        "affinity_walk_max": affinity_walk_max,
        "affinity_live_ms": int(affinity_live_s * 1000),
        "affinity_steal_delay_ms": int(affinity_steal_delay_s * 1000),
        "affinity_scan_max": affinity_scan_max,
        "affinity_leave_batch": affinity_leave_batch,
        "affinity_move_batch": affinity_move_batch,
    }
)


def ring_key(namespace: str) -> str:
    """The hash ring: a sorted set of "<agent>#<i>" scored by the point (first 8 hex digits
    of its sha1 as an integer); a key is owned by the first point at or after its own."""
    return prefix(namespace) + "ring"


def live_key(namespace: str) -> str:
    """Agents on the ring, scored by when each was last seen (ms): the reaper's view of who left."""
    return prefix(namespace) + "live"


def affine_key(namespace: str, agent: str) -> str:
    """Queued tasks waiting for their owner ``agent`` (by ready score): its claims take them
    beside the ready sets; nobody else sees them before their steal time."""
    return prefix(namespace) + "affine:" + agent


def steal_key(namespace: str) -> str:
    """Tasks waiting for their owner, scored by when any capable agent may claim them."""
    return prefix(namespace) + "steal"


# Review (complete --review, then accept or return): the capability an agent needs to review
# others' deliveries, the longest reference (a branch, commit or PR URL: one line) and note.
review_capability = "review"
max_review_ref_chars = 512
max_review_note_bytes = 4096
review_note_prefix = "review: "  # a returned task's checkpoint starts with it, then the note
# --- hierarchical plans (core/plan.py) ---------------------------------------------------------

# A plan (its parent and every subtask) is written by one script call / one transaction, so
# its size is capped: a plan past this is refused whole.
max_plan_tasks = 100
# A subtask may itself be planned under (a planner claims it and adds a plan): a finishing
# subtask rolls up one level per nesting, so nesting is capped (rule 10).
max_plan_depth = 8
max_task_paths = 32  # paths one task may name (informational: agents lock them themselves)
plans_kept = 1000  # the plans index keeps the newest this many plan parents
snapshot_plans = 8  # the control room's plans pane: the newest unfinished plans...
snapshot_plan_subtasks = 40  # ...with up to this many subtasks each
LUA_CONSTANTS["max_plan_tasks"] = max_plan_tasks
LUA_CONSTANTS["max_plan_depth"] = max_plan_depth
LUA_CONSTANTS["plans_kept"] = plans_kept


def plans_key(namespace: str) -> str:
    """Plan parents, newest last: a sorted set of task ids by task seq (trimmed to plans_kept)."""
    return prefix(namespace) + "plans"


def plan_children_key(namespace: str, task_id: str) -> str:
    """The subtasks of one plan parent: a sorted set of ids by task seq (the control room's tree)."""
    return prefix(namespace) + "plankids:" + task_id


max_plan_bytes = 4 * 1024 * 1024  # a plan file past this is refused before it is read whole

# --- local Redis Sentinel and Redis Cluster topologies (core/local_topology.py) ----------------

topology_kinds = ("sentinel", "cluster")  # the kinds of store record a topology has (started.json)
topology_names = {"sentinel": "Redis Sentinel topology", "cluster": "Redis Cluster"}
topology_master_name = "claimroom"  # the master name the sentinels monitor (in the sentinel URL)
# Fast failover for tests and a laptop: a master that misses pings for 1 s is subjectively down,
# two of three sentinels make it objectively down and elect a leader at once. The failover
# timeout also bounds the election: a split vote is retried after 2x this, so it stays small;
# parallel-syncs 1 re-points one replica at a time (the other keeps serving reads meanwhile).
sentinel_down_after_ms = 1000
sentinel_failover_timeout_ms = 3000
sentinel_parallel_syncs = 1
sentinel_quorum = 2
sentinel_count = 3
# A master that misses pings for this long is failed (by the majority of masters), then its
# replica takes over 0.5-1 s later. Shorter failovers faster, but a node stalled by a busy
# 2-core machine would then be failed over without being dead.
cluster_node_timeout_ms = 2000
cluster_slots = 16384
topology_start_timeout_s = 60.0  # a whole topology up: every node answers, replicas synced, agreed
topology_failover_timeout_s = 30.0  # a new master named after a kill
topology_stop_timeout_s = 5.0  # SIGTERM, then SIGKILL after this
topology_poll_s = 0.05

# --- reading a store's topology (Store.topology: claimroom topology, the store pane, doctor) ---
# Each part of the read (the master's facts, one sentinel, one cluster seed) gets this long;
# the parts run side by side, so a dead node costs one of these, not one per node.
topology_read_timeout_s = 2.0
topology_watch_every_s = 1.0  # claimroom topology --watch: how often it reads again
