"""The drift test: every operation of the installed botocore `mailmanager` model is implemented
(mailmgr.admin.api.registry.operations) or refused with a reason (REFUSED) that the README lists;
neither table names an operation the model does not have. A botocore upgrade that adds an
operation fails here until it is handled."""

from __future__ import annotations

import re

from mailmgr.admin.api.registry import REFUSED, operations
from mailmgr.config.schema import service_model
from tests.support import ROOT


def test_every_model_operation_is_implemented_or_refused() -> None:
    model = set(service_model().operation_names)
    implemented = set(operations())
    refused = set(REFUSED)
    assert not implemented & refused, f"both implemented and refused: {implemented & refused}"
    unknown = (implemented | refused) - model
    assert not unknown, f"not operations of the installed botocore model: {sorted(unknown)}"
    missing = model - implemented - refused
    assert not missing, f"neither implemented nor refused: {sorted(missing)}"


def test_every_refusal_has_a_reason_and_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for operation, reason in REFUSED.items():
        assert len(reason.strip()) >= 20, f"{operation}: the reason says too little"
        assert re.search(rf"`{operation}`", readme), f"{operation} is refused but the README " \
            "does not list it"


def test_the_readme_lists_every_implemented_operation() -> None:
    readme = (ROOT / "README.md").read_text()
    unlisted = [op for op in sorted(operations()) if f"`{op}`" not in readme]
    assert not unlisted, f"implemented but not in the README's operations list: {unlisted}"
