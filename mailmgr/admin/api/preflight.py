"""Checks a change must pass beyond the config loader's, because the API applies it to a running
server: listen addresses it can bind, certificate files that exist. A config file gets neither
check (`serve` reports a busy port at start, and creates development certificates for missing
files); a request must not be able to make the server write files where it says, or persist a
point that cannot listen and then stop every later reload."""

from __future__ import annotations

import socket
from pathlib import Path

from mailmgr.config.models import Config, IngressPoint, ListenAddress


def _addresses(point: IngressPoint) -> list[tuple[str, ListenAddress]]:
    return [*(("Listen", a) for a in point.listen),
            *(("TlsWrappedListen", a) for a in point.tls_wrapped_listen)]


def _bindable(address: ListenAddress) -> str | None:
    """None when a listener could bind `address` now (as mailmgr binds: SO_REUSEADDR), else
    the reason."""
    try:
        infos = socket.getaddrinfo(address.host or None, address.port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        return f"cannot resolve {address.host!r}: {exc}"
    for family, kind, proto, _, sockaddr in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(sockaddr)
            except OSError as exc:
                return exc.strerror or str(exc)
    return None


def problems(new: Config, running: Config, *, fixed_ports: bool = False) -> list[str]:
    """What stops `new` from being applied over `running`, as `Field: reason` lines naming the
    ingress point. Blocking (binds test sockets, stats files): run it in an executor.

    `fixed_ports`: a multi-process server, whose workers each bind a new point's addresses
    (SO_REUSEPORT): port 0 would give every worker another port."""
    found: list[str] = []
    kept = {p.id: {(a.host, a.port) for _, a in _addresses(p)} for p in running.ingress_points}
    for point in new.ingress_points:
        for key, address in _addresses(point):
            if (address.host, address.port) in kept.get(point.id, ()):
                continue  # the point listens there already and keeps it
            if address.port == 0 and fixed_ports:
                found.append(f"ingress point {point.name!r}: {key} {address}: port 0 is not "
                             "allowed on a multi-process server (Server.Processes): every "
                             "worker would listen on another port")
                continue
            # Port 0 too: the host must be one this machine can listen on (a foreign or
            # unresolvable address fails the bind whatever the port).
            reason = _bindable(address)
            if reason is not None:
                found.append(f"ingress point {point.name!r}: {key} {address}: {reason}")
        tls = point.tls_certificate
        if tls is not None:
            for label, file in (("CertificateFile", tls.certificate_file),
                                ("PrivateKeyFile", tls.private_key_file)):
                if not Path(file).is_file():
                    found.append(
                        f"ingress point {point.name!r}: TlsCertificate.{label} {file} does not "
                        "exist: create the certificate and key first (the API never creates "
                        "files; `mailmgr certs dev` makes development ones)")
    return found
