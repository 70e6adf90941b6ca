"""How many examples the hypothesis tests of tests/mime and tests/hostile run: a few seconds in
CI by default; `MAILMGR_FUZZ_EXAMPLES=100000 pytest tests/mime tests/hostile` for a long run."""

from __future__ import annotations

import os

EXAMPLES = int(os.environ.get("MAILMGR_FUZZ_EXAMPLES", "300"))
