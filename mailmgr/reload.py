"""SIGHUP reload support: what changed between two configs, what needs a restart, the logs, and the
switch that hands the spool worker a new Pipeline. Builds and binds nothing itself; app.py
applies the reload.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from mailmgr import logs
from mailmgr.admin.metrics import METRICS
from mailmgr.analysis.service import AnalysisService
from mailmgr.archive import LocalArchive
from mailmgr.config.models import Config, IngressPoint, ServerConfig
from mailmgr.errors import ConfigProblem
from mailmgr.message import ProcessingState
from mailmgr.spool.store import SpoolEntry
from mailmgr.spool.worker import Checkpoint, Processor
from mailmgr.verdicts.service import VerdictsService

# Server settings the running process cannot change: the spool and archives live under the data
# directory, the worker pool and the log handler are built once, and the AWS clients are kept
# (with their settings) across reloads so open connections and cached credentials survive.
_RESTART_KEYS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("DataDirectory", ("data_directory",)),
    ("Workers", ("workers",)),
    ("Log", ("log_format", "log_level")),
    ("Region", ("region",)),
    ("AccountId", ("account_id",)),
    ("Aws", ("endpoint_url", "endpoint_urls")),
    ("Admin", ("admin",)),
    ("Processes", ("processes",)),
    ("SharedState", ("shared_state",)),
)
# What a reload retires once in-flight work is done.
Closable = LocalArchive | VerdictsService | AnalysisService
_VERDICT_FIELDS = ("dns_nameservers", "dns_timeout", "verdict_timeout")


def restart_needed(running: ServerConfig, loaded: ServerConfig) -> tuple[str, ...]:
    """The `Server` keys whose new values only take effect after a restart."""
    return tuple(
        key
        for key, fields in _RESTART_KEYS
        if any(getattr(running, f) != getattr(loaded, f) for f in fields)
    )


def effective_config(loaded: Config, running: ServerConfig) -> Config:
    """`loaded` with the restart-only server settings kept as they run, so everything built from
    it (archive folders, summaries) matches the live process."""
    kept = {f: getattr(running, f) for _, fields in _RESTART_KEYS for f in fields}
    return replace(loaded, server=replace(loaded.server, **kept))


def verdicts_changed(running: ServerConfig, loaded: ServerConfig) -> bool:
    return any(getattr(running, f) != getattr(loaded, f) for f in _VERDICT_FIELDS)


def _addresses(point: IngressPoint) -> tuple[object, ...]:
    return (point.listen, point.tls_wrapped_listen)


@dataclass(frozen=True)
class IngressDiff:
    """Ingress point IDs by what a reload does to them. `rebound`: same ID, new listen
    addresses (the old listeners stop, new ones start)."""

    updated: tuple[str, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]
    rebound: tuple[str, ...]

    @classmethod
    def between(
        cls, running: Sequence[IngressPoint], loaded: Sequence[IngressPoint]
    ) -> IngressDiff:
        old = {p.id: p for p in running}
        new = {p.id: p for p in loaded}
        same = [i for i in new if i in old]
        return cls(
            updated=tuple(i for i in same if _addresses(old[i]) == _addresses(new[i])),
            added=tuple(i for i in new if i not in old),
            removed=tuple(i for i in old if i not in new),
            rebound=tuple(i for i in same if _addresses(old[i]) != _addresses(new[i])),
        )


class PipelineSwitch:
    """The spool worker's processor. Each message runs on the pipeline that was current when it
    was picked up; `swap` makes a new one current for every later pick-up (retries included)."""

    def __init__(self, pipeline: Processor) -> None:
        self._current = pipeline
        self._generation = 0
        self._active: dict[int, int] = {}  # generation -> messages running on it
        self._changed = asyncio.Condition()

    async def __call__(self, entry: SpoolEntry, checkpoint: Checkpoint) -> ProcessingState:
        generation, pipeline = self._generation, self._current
        self._active[generation] = self._active.get(generation, 0) + 1
        try:
            return await pipeline(entry, checkpoint)
        finally:
            left = self._active[generation] - 1
            if left:
                self._active[generation] = left
            else:
                del self._active[generation]
                async with self._changed:
                    self._changed.notify_all()

    def swap(self, pipeline: Processor) -> int:
        """Make `pipeline` current; returns the generation that was retired."""
        retired = self._generation
        self._current, self._generation = pipeline, retired + 1
        return retired

    async def drained(self, generation: int) -> None:
        """Return once no message is running on `generation` or an older pipeline."""
        async with self._changed:
            await self._changed.wait_for(
                lambda: not any(g <= generation for g in self._active)
            )


def _canonical(value: object) -> object:
    """`value` as plain JSON data that is the same for equal configs in every process: field
    names kept, sets sorted, enums by value, anything else by str()."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return _canonical(value.value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        items = [_canonical(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return str(value)


def config_hash(config: Config) -> str:
    """The config's identity: the first 16 hex digits of the SHA-256 of the resolved config
    (every resource and setting as loaded, as canonical JSON, without the file's own path);
    equal for equal configs however and wherever the files are written, different when
    anything that was loaded differs."""
    data = json.dumps(_canonical(replace(config, source=Path())), sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def record_loaded(config: Config) -> str:
    """Publish `config` as the running one (`mailmgr_config_info{hash}`: only its label set);
    returns the hash. Called at start and after every successful reload."""
    digest = config_hash(config)
    METRICS.config.info({"hash": digest})
    return digest


def log_failed(problems: Sequence[ConfigProblem]) -> None:
    """The reload was refused: every problem, worded as `mailmgr check-config` prints it;
    counted as mailmgr_config_reloads_total{result="failure"}."""
    METRICS.config_reloads.labels("failure").inc()
    logs.error(
        "config.reload_failed",
        count=len(problems),
        problems=[str(p) for p in problems],
        note="the running configuration is unchanged",
    )


def log_reloaded(
    running: Config, config: Config, diff: IngressDiff, failed: Sequence[str]
) -> None:
    """`running`: the config before the reload (for the removed points' names). Counts
    mailmgr_config_reloads_total{result="success"} and publishes the new config's hash."""
    METRICS.config_reloads.labels("success").inc()
    digest = record_loaded(config)
    names = {p.id: p.name for p in (*running.ingress_points, *config.ingress_points)}

    def named(ids: Sequence[str]) -> list[str]:
        return [names.get(i, i) for i in ids]

    logs.event(
        "config.reloaded",
        source=str(config.source),
        ingress_points=len(config.ingress_points),
        rule_sets=len(config.rule_sets),
        traffic_policies=len(config.traffic_policies),
        address_lists=len(config.address_lists),
        archives=len(config.archives),
        updated=named([i for i in diff.updated if i not in failed]),
        added=named([i for i in diff.added if i not in failed]),
        rebound=named([i for i in diff.rebound if i not in failed]),
        removed=named(diff.removed),
        failed=named(failed),
        config_hash=digest,
    )


async def close_all(items: Sequence[Closable]) -> None:
    for item in items:
        if isinstance(item, VerdictsService):
            item.close()
        else:
            await item.close()
