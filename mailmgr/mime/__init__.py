"""RFC 5322 and MIME message syntax: the one header reader, address lists, RFC 2047, RFC 8601,
the one field renderer and a bounded MIME walker. Bounded, linear, no I/O."""
