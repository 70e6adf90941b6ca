"""The pipeline computes verdicts once, checkpoints them with the stamp, and reuses them."""

from __future__ import annotations

from pathlib import Path

from mailmgr.actions.base import Resources
from mailmgr.config import load
from mailmgr.message import ProcessingState, Verdict
from mailmgr.pipeline import Pipeline, compile_rule_sets
from mailmgr.spool.store import SpoolEntry
from mailmgr.verdicts.auth_results import STAMP_KEY
from mailmgr.verdicts.dns import DnsResolver
from mailmgr.verdicts.service import VerdictsService
from tests.support import basic_config, write_config
from tests.verdicts.dns_server import DnsServer, Zone
from tests.verdicts.test_verdicts_service import inbound
from tests.verdicts.verdicts_samples import message


async def test_verdicts_once_then_reused(tmp_path: Path, dns_server: DnsServer,
                                         zone: Zone) -> None:
    zone.txt("example.com", "v=spf1 ip4:192.0.2.0/24 -all")
    raw = basic_config(tmp_path, Hostname="mx.test")
    raw["RuleSets"][0]["Rules"][0]["Actions"] = [
        {"AddHeader": {"HeaderName": "X-Seen", "HeaderValue": "yes"}}]
    config = load(write_config(tmp_path / "m.yaml", raw))
    resolver = DnsResolver([dns_server.address], 1.0)
    service = VerdictsService(resolver, timeout=5.0)
    pipeline = Pipeline(config, compile_rule_sets(config, Resources(config=config)),
                        verdicts=service)
    point = config.ingress_points[0]
    msg = inbound(message())
    msg = type(msg)(msg.id, msg.received_at, msg.envelope,
                    type(msg.session)(point.id, point.name, "192.0.2.10", helo="h.example"),
                    msg.content)
    checkpoints: list[ProcessingState] = []

    async def checkpoint(state: ProcessingState) -> None:
        checkpoints.append(state)

    try:
        final = await pipeline(SpoolEntry(msg, ProcessingState()), checkpoint)
        assert final.done and final.verdicts is not None
        assert final.verdicts.spf is Verdict.PASS
        first = checkpoints[0]
        assert first.verdicts == final.verdicts and first.rule_index == 0
        assert any(key == STAMP_KEY for key, _ in first.action_data)
        queries = len(zone.queries)
        resolver.cache.clear()  # so a recomputation would have to ask the server again
        again = await pipeline(SpoolEntry(msg, first), checkpoint)  # a retry from the checkpoint
        assert again.verdicts == final.verdicts and len(zone.queries) == queries
    finally:
        service.close()
