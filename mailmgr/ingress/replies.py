"""Every SMTP reply mailmgr sends: codes (RFC 5321), enhanced codes (RFC 3463) and texts.

The only module with reply codes or texts. Replies never carry exception text, paths or config;
`for_exception` is the one place where errors become replies.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply. `enhanced` is "" where RFC 2034 leaves it out (greeting, EHLO/HELO)."""

    code: int
    enhanced: str
    text: str

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

CLOSED = Reply(421, "4.3.2", "Service not available")
SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, closing connection")
TIMEOUT = Reply(421, "4.4.2", "Timeout, closing connection")
TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors, closing connection")
BYE = Reply(221, "2.0.0", "Bye")
OK = Reply(250, "2.0.0", "Ok")
HELP = Reply(214, "2.0.0", "Supported commands: DATA EHLO HELO MAIL NOOP QUIT RCPT RSET VRFY")
VRFY = Reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")
EXPN = Reply(502, "5.5.1", "EXPN not implemented")
AUTH_NOT_ENABLED = Reply(503, "5.5.1", "Authentication not enabled")

# ---------------------------------------------------------------- AUTH (RFC 4954)

AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
AUTH_ENCRYPTION_REQUIRED = Reply(
    538, "5.7.11", "Encryption required for requested authentication mechanism"
)
AUTH_TEMPORARY_FAILURE = Reply(454, "4.7.0", "Temporary authentication failure")
AUTH_TOO_MANY_FAILURES = Reply(421, "4.7.0", "Too many authentication failures, closing connection")
AUTH_CANCELLED = Reply(501, "5.0.0", "Authentication cancelled")
AUTH_UNDECODABLE = Reply(501, "5.5.2", "Cannot decode response")
AUTH_MALFORMED = Reply(501, "5.5.2", "Malformed authentication response")
AUTH_LINE_TOO_LONG = Reply(500, "5.5.6", "Authentication exchange line is too long")
AUTH_ALREADY = Reply(503, "5.5.1", "Already authenticated")
AUTH_IN_TRANSACTION = Reply(503, "5.5.1", "AUTH not permitted during a mail transaction")
AUTH_SYNTAX = Reply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")
AUTH_UNKNOWN_MECHANISM = Reply(504, "5.5.4", "Unrecognized authentication type")
NEED_EHLO = Reply(503, "5.5.1", "Send EHLO first")

# ---------------------------------------------------------------- TLS

READY_TLS = Reply(220, "2.0.0", "Ready to start TLS")
TLS_NOT_AVAILABLE = Reply(454, "4.7.0", "TLS not available")
TLS_ALREADY_ACTIVE = Reply(503, "5.5.1", "TLS already active")
STARTTLS_FIRST = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
CERTIFICATE_REQUIRED = Reply(530, "5.7.0", "Valid client certificate required")
TLS_CIPHER_REFUSED = Reply(421, "4.7.0", "TLS cipher suite not allowed, closing connection")

# ---------------------------------------------------------------- transaction

SENDER_OK = Reply(250, "2.1.0", "Ok")
RECIPIENT_OK = Reply(250, "2.1.5", "Ok")
START_DATA = Reply(354, "", "End data with <CR><LF>.<CR><LF>")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
POLICY_REJECTED = Reply(550, "5.7.1", "Recipient rejected by policy")
NO_VALID_RECIPIENTS = Reply(554, "5.5.1", "No valid recipients")
TEMPORARY_FAILURE = Reply(451, "4.3.0", "Temporary local problem, try again later")

# ---------------------------------------------------------------- syntax and sequence

BAD_SYNTAX = Reply(500, "5.5.2", "Syntax error")
LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long")
UNKNOWN_COMMAND = Reply(500, "5.5.1", "Command not recognized")
NOT_ASCII = Reply(500, "5.5.2", "Command must be ASCII")
NOT_UTF8 = Reply(501, "5.5.2", "Arguments must be UTF-8")
HELO_SYNTAX = Reply(501, "5.5.4", "Syntax: HELO hostname")
EHLO_SYNTAX = Reply(501, "5.5.4", "Syntax: EHLO hostname")
MAIL_SYNTAX = Reply(501, "5.5.4", "Syntax: MAIL FROM:<address> [SP <mail-parameters>]")
RCPT_SYNTAX = Reply(501, "5.5.4", "Syntax: RCPT TO:<address>")
NO_ARGUMENTS = Reply(501, "5.5.4", "Syntax error: this command takes no arguments")
VRFY_SYNTAX = Reply(501, "5.5.4", "Syntax: VRFY <address>")
BAD_SENDER = Reply(501, "5.1.7", "Bad sender address syntax")
BAD_RECIPIENT = Reply(501, "5.1.3", "Bad recipient address syntax")
BAD_BODY = Reply(501, "5.5.4", "BODY must be 7BIT or 8BITMIME")
BAD_SMTPUTF8 = Reply(501, "5.5.4", "SMTPUTF8 takes no value")
BAD_SIZE = Reply(501, "5.5.4", "SIZE must be a number")
UNKNOWN_PARAMETER = Reply(555, "5.5.4", "Parameter not recognized or not implemented")
BAD_PARAMETER = Reply(501, "5.5.4", "Invalid parameter syntax")
DUPLICATE_PARAMETER = Reply(501, "5.5.4", "Duplicate parameter")
BAD_AUTH_PARAMETER = Reply(501, "5.5.4", "AUTH= must be <> or xtext (RFC 4954)")
BAD_HELO = Reply(501, "5.5.2", "Invalid domain name")
UTF8_NEEDS_SMTPUTF8 = Reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
NEED_HELO = Reply(503, "5.5.1", "Send HELO or EHLO first")
NESTED_MAIL = Reply(503, "5.5.1", "Sender already specified")
NEED_MAIL = Reply(503, "5.5.1", "Need MAIL command")
NEED_RCPT = Reply(503, "5.5.1", "Need RCPT command")


# ---------------------------------------------------------------- limits (Server.Limits)

TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections, try again later")
TOO_MANY_CONNECTIONS_FROM_ADDRESS = Reply(
    421, "4.7.0", "Too many connections from your address, try again later"
)
CONNECTION_RATE_EXCEEDED = Reply(
    421, "4.7.0", "Too many connections from your address per minute, try again later"
)
TOO_MANY_MESSAGES = Reply(421, "4.7.0", "Too many messages in this session, closing connection")
TOO_MANY_RECIPIENTS_IN_SESSION = Reply(
    421, "4.7.0", "Too many recipients in this session, closing connection"
)
# Transaction-level limits (`451 4.7.1`, the session stays usable): the sender retries later,
# as it does after Postfix's `450 4.7.1 Error: too much mail from` (smtpd_client_*_rate_limit).
MESSAGE_RATE_EXCEEDED = Reply(
    451, "4.7.1", "Too many messages from your address per minute, try again later"
)
RECIPIENT_RATE_EXCEEDED = Reply(
    451, "4.7.1", "Too many recipients from your address per minute, try again later"
)
SESSION_RECIPIENTS_SPENT = Reply(
    451, "4.7.1", "Too many recipients in this session, try again later"
)
DATA_TIMEOUT = Reply(421, "4.4.2", "Timeout waiting for message data, closing connection")
DATA_TOO_SLOW = Reply(421, "4.4.2", "Message data arriving too slowly, closing connection")
SESSION_TIMEOUT = Reply(421, "4.4.2", "Session time limit reached, closing connection")
AUTH_BAD_IDENTITY = Reply(
    501, "5.5.2", "Control characters not allowed in authentication identity"
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
