"""Counts failed AWS calls by service and error code (`mailmgr_aws_errors_total`) and throttled
ones by service (`mailmgr_aws_throttled_total`), with both label sets kept bounded.

Called from `errors.classify`, the one place AWS failures are mapped.
"""

from __future__ import annotations

import re

from mailmgr.admin.metrics import METRICS, Metrics

OTHER = "other"
# The services mailmgr calls; any other name counts as OTHER.
SERVICES = frozenset({"s3", "sns", "lambda", "ses", "sesv2", "qbusiness", "secretsmanager",
                      "sts"})
THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "TooManyRequestsException",
    "TooManyRequests", "RequestLimitExceeded", "RequestThrottled", "RequestThrottledException",
    "ProvisionedThroughputExceededException", "SlowDown", "EC2ThrottledException",
})
# Distinct error codes counted by name, per process; later new codes count as OTHER. AWS
# codes are identifiers from the service's model, but an endpoint (an emulator, a proxy) can
# send anything, so the label set is capped rather than trusted.
MAX_CODES = 64
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class ErrorCounter:
    """The bounded code set and the counters it feeds."""

    def __init__(self, metrics: Metrics, max_codes: int = MAX_CODES) -> None:
        self._metrics = metrics
        self._max_codes = max_codes
        self._codes: set[str] = set()

    def code_label(self, code: str) -> str:
        """`code` itself while it is well-formed and among the first `max_codes` seen."""
        if code in self._codes:
            return code
        if len(self._codes) >= self._max_codes or not _CODE.fullmatch(code):
            return OTHER
        self._codes.add(code)
        return code

    def count(self, service: str, code: str, *, status: int = 0) -> None:
        """One failed call to `service` with AWS error `code` (or the exception's class name);
        `status`: the HTTP status, 0 when no response arrived. 429 counts as throttled too."""
        service = service if service in SERVICES else OTHER
        self._metrics.aws_errors.labels(service, self.code_label(code)).inc()
        if code in THROTTLING_CODES or status == 429:
            self._metrics.aws_throttled.labels(service).inc()


ERRORS = ErrorCounter(METRICS)


def count_error(what: str, code: str, *, status: int = 0) -> None:
    """Count a failure of `what` ("service:Operation", as `errors.classify` names calls)."""
    ERRORS.count(what.partition(":")[0], code, status=status)
