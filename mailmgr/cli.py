"""The `mailmgr` command: serve | check-config | explain | archive search/get | queue | certs ....

Parses arguments and turns expected errors (config problems, missing files, bad values) into a
clear message and an exit status; no traceback reaches the terminal for those.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from mailmgr import logs
from mailmgr.config import load, summary
from mailmgr.config.models import Config
from mailmgr.errors import ConfigError, MailmgrError

DEFAULT_CONFIG = Path("config/mailmgr.yaml")


def _config_path(arg: str | None) -> Path:
    return Path(arg or os.environ.get("MAILMGR_CONFIG") or DEFAULT_CONFIG)


def _load(arg: str | None) -> Config:
    """The config file with, when it has no `Server.SharedState`, the Mail Manager API's
    changes on top (DataDirectory/api-state.json): what `serve` runs."""
    path = _config_path(arg)
    if not path.exists():
        raise MissingConfig(path)
    config = load(path)
    if config.server.shared_state is not None:
        return config
    from mailmgr.state.api_store import load_with_overlay, state_path

    return load_with_overlay(path) if state_path(config).exists() else config


def _load_effective(arg: str | None) -> Config:
    """The local file, merged with the fleet's shared document when it has
    `Server.SharedState` (what a replica runs): for commands that read resources."""
    path = _config_path(arg)
    if not path.exists():
        raise MissingConfig(path)
    if load(path).server.shared_state is None:
        return _load(arg)
    from mailmgr.state.config_commands import effective_config

    return effective_config(path)


class MissingConfig(Exception):
    def __init__(self, path: Path) -> None:
        super().__init__(
            f"{path}: config file not found (use --config FILE or MAILMGR_CONFIG)"
        )


def _print_problems(exc: ConfigError) -> None:
    n = len(exc.problems)
    print(f"mailmgr: {n} configuration problem{'s' if n != 1 else ''}:", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)


def _cmd_serve(args: argparse.Namespace) -> int:
    from mailmgr.app import serve  # the server's imports are not needed for other commands

    try:
        config = _load(args.config)
    except ConfigError as exc:
        _print_problems(exc)
        return 2
    server = config.server
    log_format = args.log_format or server.log_format
    logs.setup(log_format, server.log_level)
    if args.worker:  # started by the supervisor of a multi-process server
        from mailmgr import fleet_worker

        spec = fleet_worker.WorkerSpec.from_json(args.worker)
        fleet_worker.prepare(spec)
        return asyncio.run(fleet_worker.run(config, spec))
    if server.processes > 1:
        from mailmgr.supervisor import supervise

        return asyncio.run(supervise(config, log_format))
    return asyncio.run(serve(config))


def _cmd_check(args: argparse.Namespace) -> int:
    try:
        config = _load(args.config)
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    print(f"{config.source}: configuration is valid")
    from mailmgr.state.api_store import state_path

    state = state_path(config)
    if config.server.shared_state is None and state.exists():
        print(f"(with the changes made through the Mail Manager API in {state} on top; "
              "`mailmgr config export` prints the result as one file)")
    print(summary(config))
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from mailmgr.analysis.overrides import apply_overrides, parse_override
    from mailmgr.certinfo import certificate_from_pem
    from mailmgr.explain import (
        ExplainOptions,
        configured_analysis,
        configured_verdicts,
        explain,
        overridden_analyzers,
        render_text,
    )
    from mailmgr.message import AnalysisResults

    config = _load_effective(args.config)
    content = Path(args.eml).read_bytes()
    try:
        cert = certificate_from_pem(Path(args.cert).read_bytes()) if args.cert else None
    except ValueError as exc:  # not a PEM certificate
        print(f"mailmgr explain: --cert {args.cert}: not a PEM certificate ({exc})",
              file=sys.stderr)
        return 2
    try:
        overrides = tuple(parse_override(text) for text in args.analysis or ())
        # An unknown analyzer or field, or a bad value, before any live engine runs.
        apply_overrides(config, AnalysisResults(), overrides)
    except ValueError as exc:
        print(f"mailmgr explain: {exc}", file=sys.stderr)
        return 2
    # An engine explain cannot reach is reported on stderr with its analyzer and reason.
    logs.setup("text", "WARNING")
    options = ExplainOptions(
        mail_from=args.mail_from,
        rcpts=tuple(args.rcpt or ()),
        ip=args.ip,
        helo=args.helo,
        ingress=args.ingress,
        tls=args.tls or args.tls_wrapped,
        tls_wrapped=args.tls_wrapped,
        client_certificate=cert,
        spf=args.spf,
        dkim=args.dkim,
        dmarc_policy=args.dmarc_policy,
        analysis=overrides,
    )
    try:
        live = configured_verdicts(config)
        analysis = configured_analysis(config, skip=overridden_analyzers(config, options))
        result = asyncio.run(explain(config, content, options, live_verdicts=live,
                                     live_analysis=analysis))
    except ValueError as exc:  # unknown ingress point or analyzer, bad verdict value
        print(f"mailmgr explain: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(render_text(result))
    return 0


def _max_results(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 1 to 1000")
    return int(text)


def _cmd_archive(args: argparse.Namespace) -> int:
    from mailmgr.archive.commands import get_command, search_command

    config = _load_effective(args.config)
    if args.archive_command == "search":
        return search_command(
            config,
            archive=args.archive,
            from_=getattr(args, "from"),
            to=args.to,
            subject=args.subject,
            since=args.since,
            until=args.until,
            as_json=args.json,
            out=sys.stdout,
            limit=args.max_results,
        )
    return get_command(config, args.id, archive=args.archive, out=sys.stdout.buffer)


def _cmd_queue(args: argparse.Namespace) -> int:
    from mailmgr.queue.commands import Request, run

    config = _load(args.config)
    logs.setup(config.server.log_format, config.server.log_level)  # queue.deleted, offline
    command = args.queue_command
    if command == "retry":
        if bool(args.id) == bool(args.all):
            print("mailmgr queue retry: give one message ID or --all", file=sys.stderr)
            return 2
        request = Request("retry_all") if args.all else Request("retry", args.id)
    elif command == "list":
        request = Request("list", state=args.state)
    else:
        request = Request(command, args.id)
    return run(config, request, as_json=getattr(args, "json", False))


def _cmd_config(args: argparse.Namespace) -> int:
    """`config push FILE | show | export`: the shared configuration (mailmgr.state);
    `config pull`: a config file from a Mail Manager account (mailmgr.aws.mailmanager_pull)."""
    command = args.config_command
    if command == "pull":
        from mailmgr.aws.mailmanager_pull import PullOptions, pull_config

        options = PullOptions(args.region, args.profile, args.endpoint_url)
        sys.stdout.write(asyncio.run(pull_config(options)))
        return 0
    from mailmgr.state import config_commands

    if command == "push":
        file = Path(args.file)
        if not file.exists():
            raise MissingConfig(file)
        # The store is reached through the local config; without one, FILE's own Server section.
        local = _config_path(args.config)
        if args.config is None and not os.environ.get("MAILMGR_CONFIG") and not local.exists():
            local = file
        if not local.exists():
            raise MissingConfig(local)
        return config_commands.push_command(file, local, as_json=args.json)
    local = _config_path(args.config)
    if not local.exists():
        raise MissingConfig(local)
    if command == "show":
        return config_commands.show_command(local, as_json=args.json)
    return config_commands.export_command(local, as_json=args.json)


def _add_config_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                       common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("config", help="the fleet's shared configuration (Server.SharedState); "
                                      "pull one from Mail Manager")
    csub = p.add_subparsers(dest="config_command", required=True)
    c = csub.add_parser("push", parents=[common],
                        help="validate FILE and store its resources as the fleet's config")
    c.add_argument("file", metavar="FILE", help="config file whose resources are pushed")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c = csub.add_parser("show", parents=[common],
                        help="print the active shared configuration with its version")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c = csub.add_parser("export", parents=[common],
                        help="print this host's effective config (local Server + shared "
                             "resources)")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c = csub.add_parser("pull", help="print a config running a Mail Manager account's "
                                     "resources (placeholders marked for local settings)")
    c.add_argument("--region", help="AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, the "
                                    "profile's, us-east-1)")
    c.add_argument("--profile", help="named AWS profile (credentials and region)")
    c.add_argument("--endpoint-url", help="Mail Manager API endpoint (e.g. a mailmgr admin "
                                          "listener: http://127.0.0.1:9025)")
    p.set_defaults(func=_cmd_config)


def _serial(text: str) -> int:
    """A serial as certificates print it: hex, with or without colons (`0A:DE:EB:89`)."""
    try:
        return int(text.replace(":", "").removeprefix("0x"), 16)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a hex serial number") from None


def _cmd_certs(args: argparse.Namespace) -> int:
    from cryptography import x509

    from mailmgr import certs
    from mailmgr.certinfo import format_serial

    command = args.certs_command
    if command == "truststore":
        print(certs.trust_store_yaml([Path(d) for d in args.dirs]), end="")
        return 0
    directory = Path(args.dir)
    if command == "dev":
        ca = certs.create_dev_server_certificate(
            directory / "server.pem", directory / "server.key", args.hostname
        )
        print(f"wrote {directory / 'server.pem'} and {directory / 'server.key'}; trust {ca}")
    elif command == "ca":
        certs.load_or_create_ca(directory, common_name=args.cn)
        print(f"CA: {directory / 'ca.pem'} (key {directory / 'ca.key'})")
    elif command == "client":
        try:
            sans = [certs.parse_san(text) for text in args.san or ()]
        except ValueError as exc:
            print(f"mailmgr certs client: {exc}", file=sys.stderr)
            return 2
        issued = certs.create_client_certificate(
            directory, args.name, args.cn, sans,
            serial=args.serial, days=args.days, expired=args.expired,
        )
        serial = format_serial(issued.certificate.serial_number)
        print(f"wrote {directory / (args.name + '.pem')} and {directory / (args.name + '.key')}"
              f" (CN={args.cn}, serial {serial})")
    else:  # crl
        serials = list(args.serial or ())
        for file in args.revoke or ():
            serials.append(x509.load_pem_x509_certificate(Path(file).read_bytes()).serial_number)
        path = certs.revoke(directory, serials, days=args.days)
        listed = ", ".join(format_serial(n) for n in serials) or "nothing new"
        print(f"wrote {path} (revoked: {listed})")
    return 0


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="config file (default: $MAILMGR_CONFIG or "
                        "config/mailmgr.yaml)")
    parser = argparse.ArgumentParser(
        prog="mailmgr", description="Run AWS SES Mail Manager configurations locally."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", parents=[common], help="run the ingress points and workers")
    p.add_argument("--log-format", choices=["json", "text"], help="override Server.Log.Format")
    # internal: a worker process of `Processes: N` (mailmgr.fleet_worker.WorkerSpec as JSON)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("check-config", parents=[common], help="validate the configuration")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("explain", parents=[common], help="dry-run a message through the rules")
    p.add_argument("--eml", required=True, help="the message file (RFC 5322)")
    p.add_argument("--mail-from", default="", help="envelope sender (default: null sender)")
    p.add_argument("--rcpt", action="append", help="envelope recipient (repeatable)")
    p.add_argument("--ip", default="127.0.0.1", help="client IP address")
    p.add_argument("--helo", default="", help="HELO/EHLO name")
    p.add_argument("--ingress", help="ingress point name or ID (default: the first)")
    p.add_argument("--tls", action="store_true", help="the session used TLS")
    p.add_argument("--tls-wrapped", action="store_true", help="implicit TLS (implies --tls)")
    p.add_argument("--cert", help="client certificate PEM (for ClientCertificateAttribute)")
    p.add_argument("--spf", choices=["PASS", "FAIL", "GRAY", "PROCESSING_FAILED"])
    p.add_argument("--dkim", choices=["PASS", "FAIL", "GRAY", "PROCESSING_FAILED"])
    p.add_argument("--dmarc-policy", choices=["NONE", "QUARANTINE", "REJECT"])
    p.add_argument("--analysis", action="append", metavar="ANALYZER:FIELD=VALUE",
                   help="an add-on result instead of running that analyzer (repeatable), "
                        "e.g. spamhaus:isListed=true")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_explain)

    p = sub.add_parser("archive", help="search and read local archives")
    asub = p.add_subparsers(dest="archive_command", required=True)
    s = asub.add_parser("search", parents=[common], help="search a local archive")
    s.add_argument("--archive", help="archive name, ID or ARN (default: all)")
    s.add_argument("--from", help="From contains")
    s.add_argument("--to", help="To/Cc/recipient contains")
    s.add_argument("--subject", help="Subject contains")
    s.add_argument("--since", help="received at or after (ISO 8601, or 1h, 2d, …)")
    s.add_argument("--until", help="received before (ISO 8601, or 1h, 2d, …)")
    s.add_argument("--max-results", type=_max_results, default=100, metavar="N",
                   help="rows to print, newest first (AWS MaxResults: 1-1000, default 100)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_cmd_archive)
    g = asub.add_parser("get", parents=[common], help="print one archived message")
    g.add_argument("id", help="archived message ID")
    g.add_argument("--archive", help="archive name, ID or ARN")
    g.set_defaults(func=_cmd_archive)

    p = sub.add_parser("queue", help="list, show, retry or delete messages in the spool")
    qsub = p.add_subparsers(dest="queue_command", required=True)
    q = qsub.add_parser("list", parents=[common], help="unfinished messages, oldest first")
    q.add_argument("--state", choices=["pending", "retrying", "all"], default="all",
                   help="retrying: a temporary failure recorded or the next attempt later; "
                        "pending: the others (default: all)")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q = qsub.add_parser("show", parents=[common],
                        help="envelope, session, verdicts and progress of one message")
    q.add_argument("id", help="message ID (as in `250 ... queued as ID`)")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q = qsub.add_parser("retry", parents=[common], help="make a message (or all) due now")
    q.add_argument("id", nargs="?", help="message ID")
    q.add_argument("--all", action="store_true", help="every message waiting for a retry")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q = qsub.add_parser("delete", parents=[common],
                        help="finish a message unprocessed (it is not delivered)")
    q.add_argument("id", help="message ID")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_queue)

    _add_config_parser(sub, common)

    p = sub.add_parser("certs", help="development certificates for smoke tests")
    csub = p.add_subparsers(dest="certs_command", required=True)
    folder = argparse.ArgumentParser(add_help=False)
    folder.add_argument("--dir", default="certs",
                        help="folder of the CA (ca.pem, ca.key) and outputs (default: certs)")
    d = csub.add_parser("dev", parents=[folder],
                        help="a dev CA and a server certificate signed by it")
    d.add_argument("--hostname", default="localhost", help="server name (default: localhost)")
    d = csub.add_parser("ca", parents=[folder], help="create the folder's CA if missing")
    d.add_argument("--cn", default="mailmgr dev CA", help="the CA's common name")
    d = csub.add_parser("client", parents=[folder],
                        help="a client certificate signed by the folder's CA")
    d.add_argument("--name", required=True, help="output file stem: NAME.pem, NAME.key")
    d.add_argument("--cn", required=True, help="subject common name")
    d.add_argument("--san", action="append", metavar="TYPE:VALUE",
                   help="subject alternative name, repeatable: email:, dns:, uri:, ip:, "
                        "dirname: (RFC 4514), rid: (OID)")
    d.add_argument("--serial", type=_serial, help="serial number in hex (default: random)")
    d.add_argument("--days", type=int, help="validity in days (default: 825)")
    d.add_argument("--expired", action="store_true", help="a certificate that has expired")
    d = csub.add_parser("crl", parents=[folder],
                        help="(re)write the folder's crl.pem, adding revoked certificates")
    d.add_argument("--revoke", action="append", metavar="CERT.pem",
                   help="revoke this certificate (repeatable)")
    d.add_argument("--serial", action="append", type=_serial, help="revoke this hex serial")
    d.add_argument("--days", type=int, default=30, help="CRL validity (default: 30 days)")
    d = csub.add_parser("truststore",
                        help="print a TlsAuthConfiguration YAML block for the folders' CAs")
    d.add_argument("dirs", nargs="+", metavar="DIR", help="CA folders (ca.pem, crl.pem)")
    for name, action in csub.choices.items():
        action.set_defaults(func=_cmd_certs, certs_command=name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        _print_problems(exc)
        return 1 if args.command != "serve" else 2
    except MissingConfig as exc:
        print(f"mailmgr: {exc}", file=sys.stderr)
        return 1 if args.command != "serve" else 2
    except MailmgrError as exc:  # an expected failure (e.g. Server.SharedState unreachable)
        print(f"mailmgr: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `mailmgr archive search | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        print(f"mailmgr: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
