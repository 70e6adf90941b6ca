"""SMTP ingress: TCP accept → durable 250. Only `app` imports this package.

Public face: IngressServer (listener), the Acceptor/RecipientPolicy seams, server_context (TLS).
"""

from mailmgr.ingress.listener import IngressServer
from mailmgr.ingress.seams import Acceptor, RecipientPolicy
from mailmgr.ingress.tls import server_context

__all__ = ["Acceptor", "IngressServer", "RecipientPolicy", "server_context"]
