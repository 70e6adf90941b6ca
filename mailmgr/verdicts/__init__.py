"""Facts about a message: SPF, DKIM, DMARC verdicts and the Authentication-Results header."""
