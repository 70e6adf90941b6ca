"""Human-readable summary of a loaded Config for `mailmgr check-config`.

Prints IDs and ARNs so users can refer to resources; it never prints secrets.
"""

from __future__ import annotations

from mailmgr.config.models import (
    Analysis,
    Analyzer,
    BooleanCondition,
    ClamavSettings,
    Config,
    DmarcCondition,
    DnsblSettings,
    IngressBooleanCondition,
    IngressIpCondition,
    IngressStringCondition,
    IngressTlsCondition,
    IpCondition,
    NumberCondition,
    PolicyCondition,
    RspamdSettings,
    RuleAction,
    RuleCondition,
    StringCondition,
    VerdictCondition,
)


def _names(ids: dict[str, str], resource_id: str) -> str:
    return f"{ids.get(resource_id, '?')} [{resource_id}]"


def _analysis(a: Analysis | None) -> str:
    return "" if a is None else f"Analysis {a.analyzer} {a.result_field}"


def _condition(c: RuleCondition | PolicyCondition, lists: dict[str, str]) -> str:
    match c:
        case BooleanCondition() | IngressBooleanCondition():
            if c.address_list_id:
                attribute = getattr(c, "address_list_attribute", None) or "RECIPIENT"
                target = f"{attribute} in address list {_names(lists, c.address_list_id)}"
            else:
                target = getattr(c, "attribute", None) or _analysis(c.analysis)
            return f"{target} {c.operator}"
        case StringCondition():
            target = (c.attribute or (c.mime_header and f"header {c.mime_header}")
                      or (c.client_certificate_attribute
                          and f"certificate {c.client_certificate_attribute}")
                      or _analysis(c.analysis))
            return f"{target} {c.operator} {', '.join(c.values)}"
        case IngressStringCondition():
            return f"{c.attribute or _analysis(c.analysis)} {c.operator} {', '.join(c.values)}"
        case NumberCondition():
            return f"{c.attribute} {c.operator} {c.value:g}"
        case IpCondition():
            return f"{c.attribute} {c.operator} {', '.join(c.values)}"
        case IngressIpCondition():
            return f"{c.attribute} {c.operator} {', '.join(c.cidrs)}"
        case IngressTlsCondition():
            return f"TLS_PROTOCOL {c.operator} {c.value}"
        case VerdictCondition():
            return f"{c.attribute or _analysis(c.analysis)} {c.operator} {', '.join(c.values)}"
        case DmarcCondition():
            return f"DMARC {c.operator} {', '.join(c.values)}"
    return type(c).__name__  # pragma: no cover


def _action(a: RuleAction, config: Config) -> str:
    archives = {x.id: x.name for x in config.archives}
    relays = {x.id: x.name for x in config.relays}
    detail = ""
    match a.aws_name:
        case "Archive":
            detail = f" to {_names(archives, getattr(a, 'archive_id', ''))}"
        case "Relay":
            detail = f" via {_names(relays, getattr(a, 'relay_id', ''))}"
        case "AddHeader":
            detail = f" {getattr(a, 'header_name', '')}: {getattr(a, 'header_value', '')}"
        case "ReplaceRecipient":
            detail = f" with {', '.join(getattr(a, 'replace_with', ())) or '(remove)'}"
        case _:
            detail = "".join(f" {k}={v}" for k, v in a.params.items())
    return f"{a.aws_name}{detail}"


def _analyzer(a: Analyzer) -> list[str]:
    out = [f"  {a.name}  {a.engine}" + (f"  arn {a.arn}" if a.arn else "")]
    match a.settings:
        case DnsblSettings() as d:
            for z in d.zones:
                codes = ", ".join(f"{code}={name}" for code, name in z.codes)
                out.append(f"    zone {z.zone} ({z.type})" + (f" codes {codes}" if codes else ""))
            out.append(f"    timeout {d.timeout:g} s, at most {d.max_body_domains} body domains"
                       + (", private addresses included" if d.include_private else ""))
        case RspamdSettings() as r:
            out.append(f"    {r.url}/checkv2, timeout {r.timeout:g} s, "
                       f"at most {r.max_concurrency} in flight")
        case ClamavSettings() as c:
            where = f"unix:{c.unix_path}" if c.unix_path else str(c.tcp)
            out.append(f"    clamd {where}, timeout {c.timeout:g} s, stream limit "
                       f"{c.max_stream_bytes} bytes, at most {c.max_concurrency} in flight")
    return out


def summary(config: Config) -> str:
    s = config.server
    rule_sets = {r.id: r.name for r in config.rule_sets}
    policies = {p.id: p.name for p in config.traffic_policies}
    lists = {a.id: a.name for a in config.address_lists}
    out = [
        f"Config {config.source}",
        f"Server: hostname {s.hostname}, region {s.region}, account {s.account_id}, "
        f"data directory {s.data_directory}, {s.workers} workers",
        f"Ingress points ({len(config.ingress_points)}):",
    ]
    for ip in config.ingress_points:
        listen = ", ".join(str(a) for a in ip.listen) or "none"
        wrapped = ", ".join(str(a) for a in ip.tls_wrapped_listen) or "none"
        out += [
            f"  {ip.name}  id {ip.id}  arn {ip.arn}",
            f"    type {ip.type}, TLS policy {ip.tls_policy}, status {ip.status}",
            f"    listen {listen}; TLS-wrapped listen {wrapped}",
            f"    rule set {_names(rule_sets, ip.rule_set_id)}, "
            f"traffic policy {_names(policies, ip.traffic_policy_id)}",
        ]
        tls = ip.tls_certificate
        if tls is not None:
            # The loader accepts a pair of which neither file exists (files.py): say why.
            created = not tls.certificate_file.exists() and not tls.private_key_file.exists()
            out.append(f"    certificate {tls.certificate_file}, key {tls.private_key_file}"
                       + (" (neither exists yet: serve creates a self-signed development "
                          "certificate there)" if created else ""))
    out.append(f"Traffic policies ({len(config.traffic_policies)}):")
    for tp in config.traffic_policies:
        size = "default" if tp.max_message_size is None else f"{tp.max_message_size} bytes"
        out += [
            f"  {tp.name}  id {tp.id}  arn {tp.arn}",
            f"    default action {tp.default_action}, max message size {size}, "
            f"{len(tp.statements)} statement(s)",
        ]
        for i, st in enumerate(tp.statements, start=1):
            conditions = "; ".join(_condition(c, lists) for c in st.conditions)
            out.append(f"    statement {i}: {st.action} when {conditions}")
    out.append(f"Rule sets ({len(config.rule_sets)}):")
    for rs in config.rule_sets:
        out.append(f"  {rs.name}  id {rs.id}  arn {rs.arn}  ({len(rs.rules)} rule(s))")
        for n, rule in enumerate(rs.rules, start=1):
            out.append(f"    rule {n} {rule.name}")
            if rule.conditions:
                out.append("      when " + "; ".join(_condition(c, lists) for c in rule.conditions))
            if rule.unless:
                out.append("      unless " + "; ".join(_condition(c, lists) for c in rule.unless))
            for action in rule.actions:
                out.append(f"      -> {_action(action, config)}")
    out.append(f"Relays ({len(config.relays)}):")
    for r in config.relays:
        auth = "secret " + r.secret_arn if r.secret_arn else "no authentication"
        out.append(f"  {r.name}  id {r.id}  arn {r.arn}  {r.server_name}:{r.server_port}, {auth}")
    out.append(f"Address lists ({len(config.address_lists)}):")
    for al in config.address_lists:
        out.append(f"  {al.name}  id {al.id}  arn {al.arn}  {len(al.members)} member(s)")
    out.append(f"Archives ({len(config.archives)}):")
    for ar in config.archives:
        days = "forever" if ar.retention_days is None else f"{ar.retention_days} days"
        where = "local" if type(ar.storage).__name__ == "LocalStorage" else "S3"
        out.append(f"  {ar.name}  id {ar.id}  arn {ar.arn}  retention {ar.retention} ({days}), "
                   f"storage {where}")
    out.append(f"Mailboxes ({len(config.mailboxes)}):")
    for mb in config.mailboxes:
        target = f"LMTP {mb.lmtp}" if mb.lmtp else f"Maildir {mb.maildir}"
        out.append(f"  {mb.arn} -> {target}")
    analysis = s.analysis
    out.append(f"Analyzers ({len(config.analyzers)}): message timeout {analysis.timeout:g} s, "
               f"X-Mailmgr-Spam/-Virus headers {'on' if analysis.add_headers else 'off'}")
    for a in config.analyzers:
        out += _analyzer(a)
    return "\n".join(out) + "\n"
