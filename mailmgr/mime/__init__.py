"""MIME and RFC 5322 message syntax: the one header reader, address lists, RFC 2047, RFC 8601, the field renderer and a bounded MIME walker; bounded, linear, no I/O."""
