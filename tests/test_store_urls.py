"""Store URLs for Sentinel and Cluster: what they name, and one clear line for every typo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claimroom.core import validate
from claimroom.core.endpoints import endpoint
from claimroom.core.errors import BadInput
from claimroom.core.storeurl import port_of, redacted

HOST = st.sampled_from(["127.0.0.1", "localhost", "redis-a.internal", "[::1]"])
PORT = st.integers(1, 65535)
NAME = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20)


def test_a_sentinel_url_names_sentinels_master_database_and_both_passwords() -> None:
    url = "redis+sentinel://ops:s3cr%40t@10.0.0.1:26379,10.0.0.2/mymaster/3?sentinel_password=sp&wait=1&wait_ms=50"
    e = endpoint(validate.store_url(url))
    assert (e.kind, e.service, e.db) == ("sentinel", "mymaster", 3)
    assert e.hosts == (("10.0.0.1", 26379), ("10.0.0.2", 26379))  # the sentinel port is the default
    assert (e.username, e.password, e.sentinel_password) == ("ops", "s3cr@t", "sp")
    assert (e.wait, e.wait_ms) == (1, 50)
    shown = redacted(url)
    assert "s3cr" not in shown and "sp&" not in shown and "sentinel_password=***" in shown
    assert port_of(url) is None  # many servers: no one port to start a store at


def test_a_cluster_url_names_seed_nodes_and_only_database_0() -> None:
    e = endpoint(validate.store_url("redis+cluster://:pw@127.0.0.1:7000,127.0.0.1:7001/0"))
    assert (e.kind, e.hosts, e.password, e.db) == (
        "cluster",
        (("127.0.0.1", 7000), ("127.0.0.1", 7001)),
        "pw",
        0,
    )
    assert endpoint("redis+cluster://n1").hosts == (("n1", 6379),)


def test_claimroom_parameters_never_reach_the_redis_client_of_a_single_server() -> None:
    e = endpoint("redis://127.0.0.1:6400/2?wait=2&wait_ms=300&health_check_interval=5")
    assert (e.kind, e.wait, e.wait_ms) == ("single", 2, 300)
    assert e.url == "redis://127.0.0.1:6400/2?health_check_interval=5"


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("redis+sentinel://127.0.0.1:26379", "names no master"),
        ("redis+sentinel://127.0.0.1:26379/m/0/extra", "/MASTER[/DB]"),
        ("redis+sentinel://127.0.0.1:26379/m/x", "database must be a number"),
        ("redis+cluster://127.0.0.1:7000/2", "always 0"),
        ("redis+cluster://127.0.0.1:0", "port must be 1-65535"),
        ("redis+cluster://127.0.0.1:7000,:7001", "empty host"),
        ("redis+cluster://127.0.0.1:7000?retries=3", "unknown parameter 'retries'"),
        ("redis://127.0.0.1:6400/0?wait=many", "wait= must be a whole number from 0 to 16"),
        ("redis://127.0.0.1:6400/0?wait=1&wait_ms=0", "wait_ms= must be a whole number from 1 to 60000"),
        ("redis://127.0.0.1:6400/0?sentinel_password=x", "belongs to a redis+sentinel"),
        ("redis+sentinal://127.0.0.1:26379/m", "unsupported store URL scheme 'redis+sentinal'"),
    ],
)
def test_a_malformed_url_is_one_line_naming_the_problem(url: str, said: str) -> None:
    with pytest.raises(BadInput) as got:
        validate.store_url(url)
    assert said in str(got.value) and "\n" not in str(got.value)


def test_the_cli_says_a_malformed_sentinel_url_in_one_line_with_exit_2() -> None:
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "claimroom"),
            "ls",
            "--url",
            "redis+sentinel://:hunter2@127.0.0.1:1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "names no master" in done.stderr and "hunter2" not in done.stderr


@given(
    hosts=st.lists(st.tuples(HOST, PORT), min_size=1, max_size=5),
    service=NAME,
    db=st.integers(0, 15),
    wait=st.integers(0, 16),
)
def test_any_well_formed_sentinel_url_reads_back_what_was_written(
    hosts: list[tuple[str, int]], service: str, db: int, wait: int
) -> None:
    spelled = ",".join(f"{h}:{p}" for h, p in hosts)
    e = endpoint(validate.store_url(f"redis+sentinel://{spelled}/{service}/{db}?wait={wait}"))
    assert e.hosts == tuple((h.strip("[]"), p) for h, p in hosts)
    assert (e.service, e.db, e.wait) == (service, db, wait)


@given(st.text(max_size=60))
def test_hostile_text_after_the_scheme_is_bad_input_or_a_url_never_a_crash(tail: str) -> None:
    for scheme in ("redis+sentinel://", "redis+cluster://", "redis://"):
        try:
            validate.store_url(scheme + tail)
        except BadInput as exc:
            assert "\n" not in str(exc)
