"""A small authoritative DNS server for tests: dnspython, UDP and TCP on one ephemeral loopback
port, served from a thread. Per name: records, NXDOMAIN (unknown names), NODATA, SERVFAIL and
timeouts (no answer at all), for every type or one type."""

from __future__ import annotations

import selectors
import socket
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset

TTL = 300


@dataclass
class Zone:
    """records[name] = [(type, value)]; TXT/SPF values are str, bytes or a tuple of those
    (several character-strings), MX values (preference, exchange), others text."""

    records: dict[str, list[tuple[str, Any]]] = field(default_factory=dict)
    servfail: set[str] = field(default_factory=set)
    timeout: set[str] = field(default_factory=set)  # name, or "name/TYPE"
    no_soa: set[str] = field(default_factory=set)  # negative answers without an SOA record
    queries: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, rdtype: str, value: Any) -> Zone:
        self.records.setdefault(name.lower().rstrip("."), []).append((rdtype.upper(), value))
        return self

    def txt(self, name: str, *values: str | bytes) -> Zone:
        for value in values:
            self.add(name, "TXT", value)
        return self

    def clear(self) -> None:
        self.records.clear()
        self.servfail.clear()
        self.timeout.clear()
        self.no_soa.clear()
        self.queries.clear()


def _rdata(rdtype: str, value: Any) -> dns.rdata.Rdata:
    if rdtype in ("TXT", "SPF"):
        parts = value if isinstance(value, (tuple, list)) else (value,)
        strings = [p.encode("utf-8") if isinstance(p, str) else bytes(p) for p in parts]
        chunks: list[bytes] = []
        for s in strings or [b""]:
            chunks.extend(s[i:i + 255] for i in range(0, max(len(s), 1), 255))
        return dns.rdtypes.ANY.TXT.TXT(
            dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), chunks
        )
    if rdtype == "MX":
        pref, exchange = value
        return dns.rdata.from_text("IN", "MX", f"{pref} {exchange.rstrip('.')}.")
    if rdtype in ("CNAME", "PTR", "NS"):
        return dns.rdata.from_text("IN", rdtype, value.rstrip(".") + ".")
    return dns.rdata.from_text("IN", rdtype, str(value))


class DnsServer:
    def __init__(self, zone: Zone | None = None) -> None:
        self.zone = zone or Zone()
        self._stop = threading.Event()
        for _ in range(20):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                udp.close()
                tcp.close()
                continue
            break
        else:
            raise RuntimeError("no free port for UDP and TCP")
        tcp.listen(16)
        self.udp, self.tcp, self.port = udp, tcp, port
        self.address = f"127.0.0.1:{port}"
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> DnsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.udp.close()
        self.tcp.close()

    # ------------------------------------------------------------------ answering

    def answer(self, wire: bytes, max_size: int) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        question = query.question[0]
        # Raw labels, not to_text(): the SPF suite has names with spaces and '%'.
        name = b".".join(question.name.labels).decode("utf-8", "replace").lower().rstrip(".")
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.zone.queries.append((name, rdtype))
        if name in self.zone.timeout or f"{name}/{rdtype}" in self.zone.timeout:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if name in self.zone.servfail or f"{name}/{rdtype}" in self.zone.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response.to_wire()
        self._fill(response, name, rdtype, set())
        if name in self.zone.no_soa:
            response.authority.clear()
        try:
            return response.to_wire(max_size=max_size)
        except dns.exception.TooBig:
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.AA | dns.flags.TC
            return truncated.to_wire()

    def _fill(self, response: dns.message.Message, name: str, rdtype: str, seen: set[str]
              ) -> None:
        records = self.zone.records.get(name)
        if records is None:
            if not seen:
                response.set_rcode(dns.rcode.NXDOMAIN)
            self._soa(response)
            return
        owner = dns.name.from_text(name + ".")
        matching = [v for t, v in records if t == rdtype]
        cnames = [v for t, v in records if t == "CNAME"]
        if matching:
            self._add(response, owner, rdtype, matching)
        elif cnames and rdtype != "CNAME" and name not in seen and len(seen) < 8:
            self._add(response, owner, "CNAME", cnames[:1])
            self._fill(response, cnames[0].lower().rstrip("."), rdtype, seen | {name})
        else:
            self._soa(response)

    @staticmethod
    def _add(response: dns.message.Message, owner: dns.name.Name, rdtype: str,
             values: Iterable[Any]) -> None:
        rrset = dns.rrset.RRset(owner, dns.rdataclass.IN, dns.rdatatype.from_text(rdtype))
        for value in values:
            rrset.add(_rdata(rdtype, value), TTL)
        response.answer.append(rrset)

    @staticmethod
    def _soa(response: dns.message.Message) -> None:
        soa = dns.rrset.from_text("test.", 60, "IN", "SOA",
                                  "ns.test. admin.test. 1 3600 600 86400 60")
        response.authority.append(soa)

    # ------------------------------------------------------------------ sockets

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.udp, selectors.EVENT_READ, "udp")
        sel.register(self.tcp, selectors.EVENT_READ, "tcp")
        while not self._stop.is_set():
            for key, _ in sel.select(0.1):
                if key.data == "udp":
                    try:
                        wire, peer = self.udp.recvfrom(65535)
                    except OSError:
                        continue
                    reply = self.answer(wire, 512)
                    if reply is not None:
                        self.udp.sendto(reply, peer)
                else:
                    conn, _ = self.tcp.accept()
                    threading.Thread(target=self._tcp, args=(conn,), daemon=True).start()
        sel.close()

    def _tcp(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with conn:
            try:
                while True:
                    head = conn.recv(2)
                    if len(head) < 2:
                        return
                    (length,) = struct.unpack("!H", head)
                    wire = b""
                    while len(wire) < length:
                        chunk = conn.recv(length - len(wire))
                        if not chunk:
                            return
                        wire += chunk
                    reply = self.answer(wire, 65535)
                    if reply is None:
                        self._stop.wait(10)  # a timeout: hold the connection, say nothing
                        return
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
            except OSError:
                return
