"""`mailmgr queue` on a stopped server that ran with `Processes: 2`: the waiting messages live in
the shards `spool/0/` and `spool/1/`; list, show, retry and delete find them in every shard."""

from __future__ import annotations

import time
from pathlib import Path

from tests.fleet.processes_support import FleetProcess
from tests.queue.queue_support import free_port, queue_cli, relay_config, send, wait_attempts
from tests.support import write_config


def test_queue_commands_cover_every_shard_of_a_stopped_multi_process_server(
    tmp_path: Path,
) -> None:
    config = relay_config(tmp_path, free_port())  # the relay refuses: messages keep waiting
    config["Server"]["Processes"] = 2
    server = FleetProcess(write_config(tmp_path / "mailmgr.yaml", config)).start()
    ids = [send(server.port, f"s{n}@example.org", [f"r{n}@example.net"]) for n in range(12)]
    for mid in ids:
        wait_attempts(server, mid, 1)
    time.sleep(0.3)  # the checkpoints after the failed attempts
    workers = {e.get("worker") for e in server.events
               if e.get("event") == "smtp.accepted" and e.get("message_id") in ids}
    assert server.stop() == 0
    spool = tmp_path / "var" / "spool"
    assert (spool / "0").is_dir() and (spool / "1").is_dir()

    listed = queue_cli(server.config_file, "list", "--json")
    assert listed.status == 0, listed.err
    rows = listed.json()["messages"]
    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert [r["received_at"] for r in rows] == sorted(r["received_at"] for r in rows)
    if workers == {0, 1}:  # both shards held some (the kernel spread the connections)
        assert not (spool / "segments").exists()  # the root was not opened as a spool
    for mid in (ids[0], ids[-1]):
        shown = queue_cli(server.config_file, "show", mid, "--json")
        assert shown.status == 0 and shown.json()["envelope"]["rcpt_to"], shown.err
    deleted = queue_cli(server.config_file, "delete", ids[5])
    assert deleted.status == 0, deleted.err
    missing = queue_cli(server.config_file, "show", "0" * 24)
    assert missing.status == 1 and "no message" in missing.err
    retried = queue_cli(server.config_file, "retry", "--all", "--json")
    assert retried.status == 0 and retried.json()["retried"] == len(ids) - 1
    again = queue_cli(server.config_file, "list", "--json").json()["messages"]
    assert sorted(r["id"] for r in again) == sorted(set(ids) - {ids[5]})
