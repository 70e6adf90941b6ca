"""Every SMTP reply mailmgr sends: codes (RFC 5321), enhanced codes (RFC 3463) and texts.

The only module with reply codes or texts. Replies never carry exception text, paths or config;
`for_exception` is the one place where errors become replies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Why a reply refuses (`Reply.reason`, the `reason` label of mailmgr_messages_rejected_total):
TRAFFIC_POLICY = "traffic_policy"  # a traffic policy refused the recipient
SIZE = "size"  # the message is larger than the ingress point takes
AUTH = "auth"  # SMTP AUTH failed or is required
TLS = "tls"  # TLS (or a client certificate) is required or refused
LIMITS = "limits"  # a Server.Limits cap, rate or timeout
PROTOCOL = "protocol"  # bad syntax or a command out of sequence
OTHER = "other"  # anything else: a local failure, a CLOSED ingress point, shutdown
REASONS = (TRAFFIC_POLICY, SIZE, AUTH, TLS, LIMITS, PROTOCOL, OTHER)


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply. `enhanced` is "" where RFC 2034 leaves it out (greeting, EHLO/HELO).
    `reason` (one of REASONS) is set on every refusing reply (4xx/5xx), None on the others;
    it is not part of the wire form or of equality."""

    code: int
    enhanced: str
    text: str
    reason: str | None = field(default=None, compare=False)

    @property
    def positive(self) -> bool:
        return self.code < 400

    @property
    def closes(self) -> bool:
        """421 means the server closes the connection after sending it (RFC 5321 §3.8)."""
        return self.code == 421

    def line(self) -> bytes:
        if self.enhanced:
            return f"{self.code} {self.enhanced} {self.text}\r\n".encode()
        return f"{self.code} {self.text}\r\n".encode()


# ---------------------------------------------------------------- session

CLOSED = Reply(421, "4.3.2", "Service not available", OTHER)
SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, closing connection", OTHER)
TIMEOUT = Reply(421, "4.4.2", "Timeout, closing connection", LIMITS)
TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors, closing connection", LIMITS)
BYE = Reply(221, "2.0.0", "Bye")
OK = Reply(250, "2.0.0", "Ok")
HELP = Reply(214, "2.0.0", "Supported commands: DATA EHLO HELO MAIL NOOP QUIT RCPT RSET VRFY")
VRFY = Reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")
EXPN = Reply(502, "5.5.1", "EXPN not implemented", PROTOCOL)
AUTH_NOT_ENABLED = Reply(503, "5.5.1", "Authentication not enabled", PROTOCOL)

# ---------------------------------------------------------------- AUTH (RFC 4954)

AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid", AUTH)
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required", AUTH)
AUTH_ENCRYPTION_REQUIRED = Reply(
    538, "5.7.11", "Encryption required for requested authentication mechanism", TLS
)
AUTH_TEMPORARY_FAILURE = Reply(454, "4.7.0", "Temporary authentication failure", AUTH)
AUTH_TOO_MANY_FAILURES = Reply(
    421, "4.7.0", "Too many authentication failures, closing connection", AUTH
)
AUTH_CANCELLED = Reply(501, "5.0.0", "Authentication cancelled", AUTH)
AUTH_UNDECODABLE = Reply(501, "5.5.2", "Cannot decode response", AUTH)
AUTH_MALFORMED = Reply(501, "5.5.2", "Malformed authentication response", AUTH)
AUTH_LINE_TOO_LONG = Reply(500, "5.5.6", "Authentication exchange line is too long", AUTH)
AUTH_ALREADY = Reply(503, "5.5.1", "Already authenticated", PROTOCOL)
AUTH_IN_TRANSACTION = Reply(503, "5.5.1", "AUTH not permitted during a mail transaction", PROTOCOL)
AUTH_SYNTAX = Reply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]", PROTOCOL)
AUTH_UNKNOWN_MECHANISM = Reply(504, "5.5.4", "Unrecognized authentication type", AUTH)
NEED_EHLO = Reply(503, "5.5.1", "Send EHLO first", PROTOCOL)

# ---------------------------------------------------------------- TLS

READY_TLS = Reply(220, "2.0.0", "Ready to start TLS")
TLS_NOT_AVAILABLE = Reply(454, "4.7.0", "TLS not available", TLS)
TLS_ALREADY_ACTIVE = Reply(503, "5.5.1", "TLS already active", PROTOCOL)
STARTTLS_FIRST = Reply(530, "5.7.0", "Must issue a STARTTLS command first", TLS)
CERTIFICATE_REQUIRED = Reply(530, "5.7.0", "Valid client certificate required", TLS)
TLS_CIPHER_REFUSED = Reply(421, "4.7.0", "TLS cipher suite not allowed, closing connection", TLS)

# ---------------------------------------------------------------- transaction

SENDER_OK = Reply(250, "2.1.0", "Ok")
RECIPIENT_OK = Reply(250, "2.1.5", "Ok")
START_DATA = Reply(354, "", "End data with <CR><LF>.<CR><LF>")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients", LIMITS)
TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size", SIZE)
POLICY_REJECTED = Reply(550, "5.7.1", "Recipient rejected by policy", TRAFFIC_POLICY)
NO_VALID_RECIPIENTS = Reply(554, "5.5.1", "No valid recipients", PROTOCOL)
TEMPORARY_FAILURE = Reply(451, "4.3.0", "Temporary local problem, try again later", OTHER)

# ---------------------------------------------------------------- syntax and sequence

BAD_SYNTAX = Reply(500, "5.5.2", "Syntax error", PROTOCOL)
LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long", PROTOCOL)
UNKNOWN_COMMAND = Reply(500, "5.5.1", "Command not recognized", PROTOCOL)
NOT_ASCII = Reply(500, "5.5.2", "Command must be ASCII", PROTOCOL)
NOT_UTF8 = Reply(501, "5.5.2", "Arguments must be UTF-8", PROTOCOL)
HELO_SYNTAX = Reply(501, "5.5.4", "Syntax: HELO hostname", PROTOCOL)
EHLO_SYNTAX = Reply(501, "5.5.4", "Syntax: EHLO hostname", PROTOCOL)
MAIL_SYNTAX = Reply(501, "5.5.4", "Syntax: MAIL FROM:<address> [SP <mail-parameters>]", PROTOCOL)
RCPT_SYNTAX = Reply(501, "5.5.4", "Syntax: RCPT TO:<address>", PROTOCOL)
NO_ARGUMENTS = Reply(501, "5.5.4", "Syntax error: this command takes no arguments", PROTOCOL)
VRFY_SYNTAX = Reply(501, "5.5.4", "Syntax: VRFY <address>", PROTOCOL)
BAD_SENDER = Reply(501, "5.1.7", "Bad sender address syntax", PROTOCOL)
BAD_RECIPIENT = Reply(501, "5.1.3", "Bad recipient address syntax", PROTOCOL)
BAD_BODY = Reply(501, "5.5.4", "BODY must be 7BIT or 8BITMIME", PROTOCOL)
BAD_SMTPUTF8 = Reply(501, "5.5.4", "SMTPUTF8 takes no value", PROTOCOL)
BAD_SIZE = Reply(501, "5.5.4", "SIZE must be a number", PROTOCOL)
UNKNOWN_PARAMETER = Reply(555, "5.5.4", "Parameter not recognized or not implemented", PROTOCOL)
BAD_PARAMETER = Reply(501, "5.5.4", "Invalid parameter syntax", PROTOCOL)
DUPLICATE_PARAMETER = Reply(501, "5.5.4", "Duplicate parameter", PROTOCOL)
BAD_AUTH_PARAMETER = Reply(501, "5.5.4", "AUTH= must be <> or xtext (RFC 4954)", PROTOCOL)
BAD_HELO = Reply(501, "5.5.2", "Invalid domain name", PROTOCOL)
UTF8_NEEDS_SMTPUTF8 = Reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8", PROTOCOL)
NEED_HELO = Reply(503, "5.5.1", "Send HELO or EHLO first", PROTOCOL)
NESTED_MAIL = Reply(503, "5.5.1", "Sender already specified", PROTOCOL)
NEED_MAIL = Reply(503, "5.5.1", "Need MAIL command", PROTOCOL)
NEED_RCPT = Reply(503, "5.5.1", "Need RCPT command", PROTOCOL)


# ---------------------------------------------------------------- limits (Server.Limits)

TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections, try again later", LIMITS)
TOO_MANY_CONNECTIONS_FROM_ADDRESS = Reply(
    421, "4.7.0", "Too many connections from your address, try again later", LIMITS
)
CONNECTION_RATE_EXCEEDED = Reply(
    421, "4.7.0", "Too many connections from your address per minute, try again later", LIMITS
)
TOO_MANY_MESSAGES = Reply(
    421, "4.7.0", "Too many messages in this session, closing connection", LIMITS
)
TOO_MANY_RECIPIENTS_IN_SESSION = Reply(
    421, "4.7.0", "Too many recipients in this session, closing connection", LIMITS
)
# Transaction-level limits (`451 4.7.1`, the session stays usable): the sender retries later,
# as it does after Postfix's `450 4.7.1 Error: too much mail from` (smtpd_client_*_rate_limit).
MESSAGE_RATE_EXCEEDED = Reply(
    451, "4.7.1", "Too many messages from your address per minute, try again later", LIMITS
)
RECIPIENT_RATE_EXCEEDED = Reply(
    451, "4.7.1", "Too many recipients from your address per minute, try again later", LIMITS
)
SESSION_RECIPIENTS_SPENT = Reply(
    451, "4.7.1", "Too many recipients in this session, try again later", LIMITS
)
DATA_TIMEOUT = Reply(421, "4.4.2", "Timeout waiting for message data, closing connection", LIMITS)
DATA_TOO_SLOW = Reply(421, "4.4.2", "Message data arriving too slowly, closing connection", LIMITS)
SESSION_TIMEOUT = Reply(421, "4.4.2", "Session time limit reached, closing connection", LIMITS)
AUTH_BAD_IDENTITY = Reply(
    501, "5.5.2", "Control characters not allowed in authentication identity", AUTH
)


# PROXY protocol: a header from a source outside TrustedSources (Haraka answers the same way).
PROXY_UNTRUSTED = Reply(
    421, "4.7.0", "PROXY header not accepted from this address, closing connection",
    reason=PROTOCOL,
)


def banner(hostname: str) -> Reply:
    """The greeting: the hostname and `ESMTP`, never the software name or version."""
    return Reply(220, "", f"{hostname} ESMTP")


def helo(hostname: str) -> Reply:
    return Reply(250, "", hostname)


def ehlo(hostname: str, keywords: tuple[str, ...]) -> bytes:
    """The multi-line EHLO reply: our hostname, then one keyword per line."""
    lines = [hostname, *keywords]
    last = len(lines) - 1
    return b"".join(
        f"250{' ' if i == last else '-'}{text}\r\n".encode() for i, text in enumerate(lines)
    )


def queued(message_id: str) -> Reply:
    return Reply(250, "2.0.0", f"Ok: queued as {message_id}")


def for_exception(error: BaseException) -> Reply:
    """The reply for an error while handling a command: generic and temporary, whatever it is.

    A SpoolError means the message is not safe yet, so the client must retry (451 4.3.0, RFC
    3463 "other or undefined mail system status"); anything unexpected gets the same reply for
    the same reason. The error itself is for the logs only.
    """
    del error  # deliberately unused: nothing of it may reach the client
    return TEMPORARY_FAILURE


def for_library_reply(status: str | bytes) -> Reply:
    """aiosmtpd's own STARTTLS code pushes a literal `220 Ready to start TLS`; every other
    literal of the library is unreachable from our subclass."""
    code = status[:3]
    if code in ("220", b"220"):
        return READY_TLS
    return TEMPORARY_FAILURE


def challenge(text: str) -> bytes:
    """A SASL challenge (RFC 4954 §4): `334` and base64 text, no enhanced code."""
    return f"334 {text}\r\n".encode()
