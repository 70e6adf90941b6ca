"""The exception tree of mailmgr. Every error knows whether it is temporary or permanent.

    MailmgrError
    ├── ConfigError             config problems (file, JSON path, rule); never a traceback
    ├── SpoolError              the durable spool could not store or read a record (temporary)
    │   └── CorruptRecord       a record on disk cannot be parsed (quarantined, permanent)
    └── ActionError             an action failed
        ├── TemporaryActionError  retried with backoff from the spool (throttling, timeouts, 4xx)
        └── PermanentActionError  ActionFailurePolicy applies (CONTINUE or DROP)

SMTP replies for these live only in `ingress/replies.py`.
"""

from __future__ import annotations

from dataclasses import dataclass


class MailmgrError(Exception):
    temporary: bool = False


@dataclass(frozen=True)
class ConfigProblem:
    """One config problem: where (file + JSON path like `$.RuleSets[0].Rules[2].Name`) and what."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path}: {self.message}"


class ConfigError(MailmgrError):
    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class SpoolError(MailmgrError):
    temporary = True


class CorruptRecord(SpoolError):
    temporary = False


class ActionError(MailmgrError):
    """Base for action failures. `code` is a short machine-readable reason (an AWS error code,
    an SMTP reply code, `Timeout`, …) for logs; the message is for operators, never for clients."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class TemporaryActionError(ActionError):
    """`resume` is JSON text the action wants back (as ActionInput.resume) on its next attempt,
    e.g. the recipients a relay already accepted, so a retry never repeats finished work."""

    temporary = True

    def __init__(self, message: str, code: str = "", resume: str | None = None) -> None:
        super().__init__(message, code)
        self.resume = resume


class PermanentActionError(ActionError):
    temporary = False
