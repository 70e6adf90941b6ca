"""The Mail Manager API on the admin listener (AWS JSON 1.0 and smithy RPC v2 CBOR)."""
