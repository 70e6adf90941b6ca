"""mailmgr configuration: `load(path)` validates a YAML/JSON file into typed models; `summary`.

Problems are raised together as `mailmgr.errors.ConfigError`; see loader.py and models.py.
"""

from mailmgr.config.loader import load
from mailmgr.config.summary import summary

__all__ = ["load", "summary"]
