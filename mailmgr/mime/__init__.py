"""MIME and RFC 5322 message parsing: bounded, linear readers of a message's raw bytes."""
