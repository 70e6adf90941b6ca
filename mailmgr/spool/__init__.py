"""Durability: the segment-log spool (store), its record format and the worker that drains it."""

from mailmgr.spool.store import SpoolEntry, SpoolStats, SpoolStore
from mailmgr.spool.worker import Checkpoint, Processor, SpoolWorker

__all__ = ["Checkpoint", "Processor", "SpoolEntry", "SpoolStats", "SpoolStore", "SpoolWorker"]
