"""Frozen domain values that cross module boundaries: session facts, envelope, verdicts, message.

Owns no behaviour beyond (de)serialisation to plain JSON for the spool record; must not import
aiosmtpd, botocore or any other package of ours except `errors`.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_TAIL_RANGE = 36**12


def _base36(n: int, width: int) -> str:
    digits = []
    for _ in range(width):
        n, r = divmod(n, 36)
        digits.append(_ALPHABET[r])
    return "".join(reversed(digits))


def new_message_id() -> str:
    """A lower-case alphanumeric, time-ordered, unique message ID (the spool key).

    12 base36 chars of microseconds since the epoch keep IDs sortable by arrival; 12 random
    base36 chars (from one 9-byte os.urandom read, ~60 bits) make collisions across processes
    negligible.
    """
    tail = int.from_bytes(os.urandom(9), "big") % _TAIL_RANGE
    return _base36(time.time_ns() // 1000, 12) + _base36(tail, 12)


def is_message_id(value: str) -> bool:
    return 8 <= len(value) <= 64 and all(c in _ALPHABET for c in value)


class Verdict(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    GRAY = "GRAY"
    PROCESSING_FAILED = "PROCESSING_FAILED"


class DmarcPolicy(StrEnum):
    NONE = "NONE"
    QUARANTINE = "QUARANTINE"
    REJECT = "REJECT"


class AnalysisStatus(StrEnum):
    OK = "OK"  # the engine answered; `fields` hold its results
    FAILED = "FAILED"  # error, refusal or timeout: no fields, verdict PROCESSING_FAILED
    SKIPPED = "SKIPPED"  # nothing to analyse (e.g. a message over clamd's stream limit)


# A result field's value: a boolean (isListed, isPassed) or a string (listedOn, category,
# verdict, score). A string with several values (two lists) joins them with ","; a
# StringExpression tests each of them as a candidate.
ResultValue = bool | str


@dataclass(frozen=True)
class AnalysisResult:
    """One analyzer's result for one message (or, for DNSBL at RCPT, one transaction).

    `analyzer` is the analyzer's Name, `engine` its AnalyzerEngine value (Dnsbl, Rspamd,
    Clamav), `verdict` what it says about spam (Dnsbl, Rspamd) or viruses (Clamav). `detail` is
    short (at most 200 characters), for logs and explain; it never holds message content."""

    analyzer: str
    engine: str
    status: AnalysisStatus
    verdict: Verdict
    fields: tuple[tuple[str, ResultValue], ...] = ()
    detail: str = ""

    def value(self, field_name: str) -> ResultValue | None:
        """The field's value; None when absent or the analysis did not succeed."""
        if self.status is not AnalysisStatus.OK:
            return None
        for name, value in self.fields:
            if name == field_name:
                return value
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "analyzer": self.analyzer,
            "engine": self.engine,
            "status": self.status.value,
            "verdict": self.verdict.value,
            "fields": dict(self.fields),
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AnalysisResult:
        return cls(
            analyzer=str(data["analyzer"]),
            engine=str(data["engine"]),
            status=AnalysisStatus(data["status"]),
            verdict=Verdict(data["verdict"]),
            fields=tuple((str(k), v) for k, v in dict(data.get("fields", {})).items()
                         if isinstance(v, (bool, str))),
            detail=str(data.get("detail", "")),
        )


@dataclass(frozen=True)
class AnalysisResults:
    """Every analyzer's result for one message, at most one per analyzer, in config order."""

    results: tuple[AnalysisResult, ...] = ()

    def get(self, analyzer: str) -> AnalysisResult | None:
        for result in self.results:
            if result.analyzer == analyzer:
                return result
        return None

    def value(self, analyzer: str, field_name: str) -> ResultValue | None:
        result = self.get(analyzer)
        return None if result is None else result.value(field_name)

    def with_result(self, result: AnalysisResult) -> AnalysisResults:
        """These results with `result` in place of the same analyzer's (or appended)."""
        kept = tuple(r for r in self.results if r.analyzer != result.analyzer)
        if len(kept) == len(self.results):
            return AnalysisResults((*self.results, result))
        return AnalysisResults(tuple(
            result if r.analyzer == result.analyzer else r for r in self.results
        ))

    def __bool__(self) -> bool:
        return bool(self.results)

    def to_json(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.results]

    @classmethod
    def from_json(cls, data: list[dict[str, Any]] | None) -> AnalysisResults:
        return cls(tuple(AnalysisResult.from_json(d) for d in data or ()))


@dataclass(frozen=True)
class Verdicts:
    """Authentication verdicts. `dmarc_policy` is set only when DMARC fails (SES semantics).

    `spam` and `virus` come from the configured analyzers (None: no engine of that kind is
    configured, DISABLED in SES events); `analysis` holds every analyzer's result."""

    spf: Verdict = Verdict.PROCESSING_FAILED
    dkim: Verdict = Verdict.PROCESSING_FAILED
    dmarc: Verdict = Verdict.PROCESSING_FAILED
    dmarc_policy: DmarcPolicy | None = None
    spam: Verdict | None = None
    virus: Verdict | None = None
    analysis: AnalysisResults = AnalysisResults()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "spf": self.spf.value,
            "dkim": self.dkim.value,
            "dmarc": self.dmarc.value,
            "dmarc_policy": self.dmarc_policy.value if self.dmarc_policy else None,
        }
        # Written only when set: states from before analyzers existed stay byte-identical.
        if self.spam is not None:
            data["spam"] = self.spam.value
        if self.virus is not None:
            data["virus"] = self.virus.value
        if self.analysis:
            data["analysis"] = self.analysis.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verdicts:
        policy = data.get("dmarc_policy")
        spam, virus = data.get("spam"), data.get("virus")
        return cls(
            spf=Verdict(data["spf"]),
            dkim=Verdict(data["dkim"]),
            dmarc=Verdict(data["dmarc"]),
            dmarc_policy=DmarcPolicy(policy) if policy else None,
            spam=Verdict(spam) if spam else None,
            virus=Verdict(virus) if virus else None,
            analysis=AnalysisResults.from_json(data.get("analysis")),
        )


@dataclass(frozen=True)
class ClientCertificate:
    """Attributes of a verified client certificate, formatted as semantics.md §2 says.

    `attributes` maps a RuleClientCertificateAttribute name (CN, SAN_DNS_NAME, SERIAL_NUMBER, …)
    to every value it has.
    """

    attributes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    issuer: str = ""
    not_before: str = ""
    not_after: str = ""

    def values(self, attribute: str) -> tuple[str, ...]:
        for name, vals in self.attributes:
            if name == attribute:
                return vals
        return ()

    def to_json(self) -> dict[str, Any]:
        return {
            "attributes": {k: list(v) for k, v in self.attributes},
            "issuer": self.issuer,
            "not_before": self.not_before,
            "not_after": self.not_after,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClientCertificate:
        return cls(
            attributes=tuple((k, tuple(v)) for k, v in data.get("attributes", {}).items()),
            issuer=data.get("issuer", ""),
            not_before=data.get("not_before", ""),
            not_after=data.get("not_after", ""),
        )


@dataclass(frozen=True)
class SessionFacts:
    """What the SMTP session established about the client, captured once per transaction."""

    ingress_point_id: str
    ingress_point_name: str
    peer_ip: str
    peer_port: int = 0
    helo: str = ""
    tls: bool = False
    tls_wrapped: bool = False
    tls_protocol: str | None = None  # "TLSv1.2" / "TLSv1.3" as ssl reports it
    tls_cipher: str | None = None
    auth_user: str | None = None
    client_certificate: ClientCertificate | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["client_certificate"] = (
            self.client_certificate.to_json() if self.client_certificate else None
        )
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionFacts:
        values = dict(data)
        cert = values.pop("client_certificate", None)
        return cls(
            **values,
            client_certificate=ClientCertificate.from_json(cert) if cert else None,
        )


@dataclass(frozen=True)
class Envelope:
    """SMTP envelope. `mail_from` is "" for the null reverse-path `<>`."""

    mail_from: str
    rcpt_to: tuple[str, ...]
    smtputf8: bool = False
    body_8bit: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "mail_from": self.mail_from,
            "rcpt_to": list(self.rcpt_to),
            "smtputf8": self.smtputf8,
            "body_8bit": self.body_8bit,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Envelope:
        return cls(
            mail_from=data["mail_from"],
            rcpt_to=tuple(data["rcpt_to"]),
            smtputf8=bool(data.get("smtputf8", False)),
            body_8bit=bool(data.get("body_8bit", False)),
        )


@dataclass(frozen=True)
class InboundMessage:
    """An accepted message: identity, envelope, session and the raw bytes as received.

    `analysis`: results known before the 250 (DNSBL analyzers run at RCPT time), stored with
    the message; the rest run after the 250 (mailmgr.analysis)."""

    id: str
    received_at: float  # epoch seconds, when the 250 was decided
    envelope: Envelope
    session: SessionFacts
    content: bytes = field(repr=False)
    analysis: AnalysisResults = AnalysisResults()

    @property
    def size(self) -> int:
        return len(self.content)


def hostname_default() -> str:
    return os.uname().nodename or "localhost"


@dataclass(frozen=True)
class ProcessingState:
    """Where processing of one message stands; checkpointed in the spool after every action.

    `live` is None until processing starts (then it is the envelope recipients). `matched` is the
    current rule's matched set, fixed when its first action starts so a resumed rule runs its
    remaining actions for the same recipients. `action_data` holds per-action resume data (for
    example recipients a relay already accepted) keyed by "<rule>.<action>" indexes.
    """

    verdicts: Verdicts | None = None
    rule_index: int = 0  # 0-based index of the rule being processed
    action_index: int = 0  # 0-based index of the next action of that rule
    live: tuple[str, ...] | None = None
    matched: tuple[str, ...] | None = None
    added_headers: tuple[tuple[str, str], ...] = ()
    dropped: tuple[str, ...] = ()
    stopped: tuple[str, ...] = ()
    attempts: int = 0  # temporary failures of the current action so far
    first_failure_at: float | None = None
    next_attempt_at: float = 0.0
    last_error: str | None = None  # the latest temporary failure, short (<= 300 chars)
    action_data: tuple[tuple[str, str], ...] = ()  # key -> JSON text
    done: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "verdicts": self.verdicts.to_json() if self.verdicts else None,
            "rule_index": self.rule_index,
            "action_index": self.action_index,
            "live": list(self.live) if self.live is not None else None,
            "matched": list(self.matched) if self.matched is not None else None,
            "added_headers": [list(h) for h in self.added_headers],
            "dropped": list(self.dropped),
            "stopped": list(self.stopped),
            "attempts": self.attempts,
            "first_failure_at": self.first_failure_at,
            "next_attempt_at": self.next_attempt_at,
            "last_error": self.last_error,
            "action_data": [list(d) for d in self.action_data],
            "done": self.done,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProcessingState:
        verdicts = data.get("verdicts")
        live = data.get("live")
        matched = data.get("matched")
        return cls(
            verdicts=Verdicts.from_json(verdicts) if verdicts else None,
            rule_index=int(data.get("rule_index", 0)),
            action_index=int(data.get("action_index", 0)),
            live=tuple(live) if live is not None else None,
            matched=tuple(matched) if matched is not None else None,
            added_headers=tuple((str(h[0]), str(h[1])) for h in data.get("added_headers", [])),
            dropped=tuple(data.get("dropped", [])),
            stopped=tuple(data.get("stopped", [])),
            attempts=int(data.get("attempts", 0)),
            first_failure_at=data.get("first_failure_at"),
            next_attempt_at=float(data.get("next_attempt_at", 0.0)),
            last_error=data.get("last_error"),
            action_data=tuple((str(k), str(v)) for k, v in data.get("action_data", [])),
            done=bool(data.get("done", False)),
        )
