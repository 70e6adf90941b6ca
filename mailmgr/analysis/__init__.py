"""Mail Manager's Email Add-ons, run by local engines (DNSBL, rspamd, ClamAV): facts only.

Analyzers report results; conditions (rules/) decide, and nothing here rejects or drops mail.
"""
