"""Our asyncio SMTP client (outbound relaying): wire format, one connection, a per-server pool.

Knows nothing about rules, recipients' fates or the spool; actions/relay.py decides those.
"""

from mailmgr.smtpclient.client import (
    RFC5321_TIMEOUTS,
    SmtpConnection,
    SmtpTimeouts,
    Transaction,
    tls_context,
)
from mailmgr.smtpclient.pool import ConnectionPool, Lease
from mailmgr.smtpclient.wire import (
    Reply,
    SmtpError,
    SmtpProtocolError,
    SmtpReplyError,
    TlsUnavailable,
    has_8bit,
    to_wire,
)

__all__ = [
    "RFC5321_TIMEOUTS",
    "ConnectionPool",
    "Lease",
    "Reply",
    "SmtpConnection",
    "SmtpError",
    "SmtpProtocolError",
    "SmtpReplyError",
    "SmtpTimeouts",
    "TlsUnavailable",
    "Transaction",
    "has_8bit",
    "tls_context",
    "to_wire",
]
