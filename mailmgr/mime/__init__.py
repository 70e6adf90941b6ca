"""RFC 5322 message syntax: the one header reader, address lists and RFC 2047 decoding."""
