"""`repro-kit deploy` and `repro-kit audit`: the live backend's command-line subcommands.

`register(subparsers)` adds both; each sets `func(args) -> exit code`. The functions
print their own one-line errors (`repro-kit: error: ...`) and return 2 on bad input
(naming the flag), 4 when the job could not be done (a server unreachable, a deployment
that failed, a backup that cannot be written), so they behave the same when called
directly; never 1, which means "nodes were lost". Secrets (API keys, tokens, the URI's
password) never reach the output: the URI is shown masked.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import sys
import time
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from repro_kit import _checks, _errors
from repro_kit._checks import InputError, number_arg
from repro_kit._schema import COLLECTION, DATABASE, parse_bson_type, validate_field_name
from repro_kit.live.appservices_api import (
    DEFAULT_BASE_URL,
    ENV_PRIVATE_KEY,
    ENV_PUBLIC_KEY,
    AdminClient,
    LiveError,
    redact,
)
from repro_kit.live.atlas import mask_uri, open_collection, uri_secrets
from repro_kit.live.audit import AuditResult, RepairResult, find_orphans, repair

# pymongo and bson (0.3 s to import, python -X importtime) are imported where the kit talks to
# MongoDB, not here: the CLI registers the live commands on every start.
__all__ = ["register", "run_deploy", "run_audit"]

PROG = "repro-kit"


def register(subparsers: Any) -> None:
    """Add `deploy` and `audit` to the CLI's subparsers (argparse `add_subparsers()` result)."""
    deploy = _errors.add_command(
        subparsers, "deploy", (0, 2, 4, 130),
        help="add an optional field to the app's schema through the Admin API (the report's deploy)",
        description=f"Deploy an additive schema change to a live App Services app. API key from "
                    f"{ENV_PUBLIC_KEY} / {ENV_PRIVATE_KEY}.",
    )
    deploy.add_argument("--backend", default="live", choices=("live",), help="only 'live' deploys to a real app")
    deploy.add_argument("--app-id", required=True, help="the client App ID (e.g. myapp-abcde)")
    deploy.add_argument("--base-url", default=DEFAULT_BASE_URL,
                        help=f"server root (default {DEFAULT_BASE_URL}; https://realm.mongodb.com also works)")
    deploy.add_argument("--field", required=True, help="name of the new optional field")
    deploy.add_argument("--bson-type", required=True, help="BSON type, or array<NAME> (e.g. array<string>)")
    deploy.add_argument("--database", default=DATABASE, help=f"linked database (default {DATABASE})")
    deploy.add_argument("--collection", default=COLLECTION,
                        help=f"collection whose schema to edit (default {COLLECTION})")
    deploy.add_argument("--deploy-timeout", type=number_arg, default=600.0,
                        help="seconds to wait for a final status (default 600, at most a day)")
    deploy.add_argument("--poll-interval", type=number_arg, default=2.0,
                        help="seconds between deployment status polls (default 2)")
    deploy.add_argument("--existing-draft", choices=("discard", "reuse"), default="discard",
                        help="what to do with a draft this API key left behind (default discard)")
    deploy.set_defaults(func=run_deploy)

    audit = _errors.add_command(
        subparsers, "audit", (0, 2, 4, 130),
        help="list nodes no path from their owner's root reaches; --repair re-attaches them",
        description="Audit a Node collection for orphans (dry run unless --repair; a repair backs the root up first).",
    )
    audit.add_argument("--mongodb-uri", default=None, help="MongoDB connection string (default: $MONGODB_URI)")
    audit.add_argument("--database", default=DATABASE, help=f"database (default {DATABASE})")
    audit.add_argument("--collection", default=COLLECTION, help=f"collection (default {COLLECTION})")
    audit.add_argument("--owner-id", default=None, help="audit one owner (default: every owner)")
    audit.add_argument("--repair", action="store_true", help="re-attach orphans to their root (after a backup)")
    audit.add_argument("--backup-dir", type=Path, default=None,
                       help="where root backups go (default backups/audit-<UTC time>)")
    audit.add_argument("--method", choices=("auto", "aggregate", "traversal"), default="auto",
                       help="server-side $graphLookup, client-side traversal, or auto (default)")
    audit.add_argument("--timeout", type=number_arg, default=10.0, help="seconds to find the server (default 10)")
    audit.add_argument("--json", action="store_true", help="print the result as JSON")
    audit.set_defaults(func=run_audit)


_APP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_DB_FORBIDDEN = set('/\\. "$*<>:|?\0')


def _seconds(flag: str, value: Any, *, most: float) -> float:
    """A finite, positive number of seconds, at most `most`; the InputError names the flag."""
    return _checks.number(flag, value, 0, most, above=True)


def _check_names(database: str, collection: str) -> None:
    """MongoDB's naming rules, checked here so a bad name is bad input (exit 2), not a driver error."""
    if not database or len(database.encode()) > 63 or set(database) & _DB_FORBIDDEN:
        raise InputError("--database", f"{database!r} is not a MongoDB database name (1-63 bytes, none of "
                         "/\\. \"$*<>:|? or spaces)")
    if not collection or "$" in collection or "\0" in collection or collection.startswith("system."):
        raise InputError("--collection", f"{collection!r} is not a MongoDB collection name (non-empty, no $ or NUL, "
                         "not system.*)")


def _check_deploy(args: argparse.Namespace, env: Mapping[str, str]) -> None:
    """Every deploy argument, and the API key's presence, before the first request."""
    if getattr(args, "backend", "live") != "live":
        raise InputError("--backend", f"deploy needs 'live', got {args.backend!r}")
    if not isinstance(args.app_id, str) or not _APP_ID.match(args.app_id):
        raise InputError("--app-id", f"{args.app_id!r} is not an App Services client App ID (like myapp-abcde)")
    url = urllib.parse.urlsplit(str(args.base_url))
    if url.scheme not in ("http", "https") or not url.netloc:
        raise InputError("--base-url", f"must be an http(s) URL of the server root, got {args.base_url!r}")
    try:
        validate_field_name(args.field)
        parse_bson_type(args.bson_type)
    except InputError as exc:
        raise exc.renamed({"field": "--field", "bson_type": "--bson-type"}) from None
    _check_names(getattr(args, "database", DATABASE), getattr(args, "collection", COLLECTION))
    timeout = _seconds("--deploy-timeout", getattr(args, "deploy_timeout", 600.0), most=86_400.0)
    _seconds("--poll-interval", getattr(args, "poll_interval", 2.0), most=min(3_600.0, timeout))
    missing = [name for name in (ENV_PUBLIC_KEY, ENV_PRIVATE_KEY) if not env.get(name)]
    if missing:
        raise InputError(" and ".join(missing), "not set; the Admin API key (a programmatic API key of the "
                         "project) comes from the environment")


def _error(message: str, code: int, err: TextIO) -> int:
    line = " ".join(str(message).split()) or "error"
    print(f"{PROG}: error: {line}", file=err)
    return code


def run_deploy(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None,
               env: dict[str, str] | None = None) -> int:
    """`repro-kit deploy`: 0 when the deployment succeeded, 2 on bad input, 4 when it failed or the
    server could not be reached."""
    out, err = out or sys.stdout, err or sys.stderr
    environ = os.environ if env is None else env
    try:
        _check_deploy(args, environ)
        client = AdminClient.from_env(environ, base_url=args.base_url,
                                      deploy_timeout=getattr(args, "deploy_timeout", 600.0),
                                      poll_interval=getattr(args, "poll_interval", 2.0),
                                      existing_draft=getattr(args, "existing_draft", "discard"))
    except ValueError as exc:
        return _error(str(exc), _errors.BAD_INPUT, err)
    except LiveError as exc:
        return _error(str(exc), _errors.CANNOT, err)
    started = time.monotonic()
    try:
        result = client.deploy_optional_field(args.app_id, args.field, args.bson_type,
                                              getattr(args, "collection", COLLECTION),
                                              getattr(args, "database", DATABASE))
    except ValueError as exc:
        return _error(str(exc), _errors.BAD_INPUT, err)
    except LiveError as exc:
        return _error(str(exc), _errors.CANNOT, err)
    finally:
        client.close()
    elapsed = time.monotonic() - started
    print(f"deployment {result.deployment_id} of optional field {result.field!r} ({result.bson_type}) "
          f"to {args.app_id}: {result.status} after {elapsed:.1f} s", file=out)
    if result.status != "successful":
        reason = (client.last_deployment or {}).get("status_error_message") or "no reason given"
        return _error(f"deployment {result.deployment_id} {result.status}: {reason}", _errors.CANNOT, err)
    return 0


def _check_uri(uri: str, flag: str) -> None:
    """What the driver would refuse, or look up in DNS, said first and naming the flag: the
    scheme, and for `mongodb+srv://` one host name with a dot in it and no port (SRV gives
    the ports)."""
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme not in ("mongodb", "mongodb+srv"):
        shown = f"{scheme}://..." if sep else "no scheme"  # never the rest: it may hold a password
        raise InputError(flag, f"must start with mongodb:// or mongodb+srv://, got {shown}")
    hosts = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
    if not hosts:
        raise InputError(flag, f"{mask_uri(uri)} names no host")
    if scheme == "mongodb+srv":
        if "," in hosts:
            raise InputError(flag, f"a mongodb+srv:// URI names exactly one host (DNS gives the rest), "
                             f"got {mask_uri(uri)}")
        if hosts.startswith("[") or re.search(r":\d*$", hosts):
            raise InputError(flag, f"a mongodb+srv:// URI must not include a port (the SRV record gives it), "
                             f"got {mask_uri(uri)}")
        if "." not in hosts.strip("."):
            raise InputError(flag, f"a mongodb+srv:// host must be a domain name with a dot "
                             f"(like cluster0.abcde.mongodb.net), got {mask_uri(uri)}")


_ERRNO = re.compile(r"\s*\[Errno -?\d+\]\s*")


def _driver_words(text: str) -> str:
    """A driver's message as one plain line: no "[Errno N]", no timeout or topology dump, no
    Python exception names."""
    first = (text.strip().splitlines() or [""])[0]
    for cut in (" (configured timeouts", ", Timeout:", ", Topology Description", ", full error:"):
        first = first.split(cut)[0]
    first = _ERRNO.sub(" ", first).strip()
    first = re.sub(r"\b[A-Z][A-Za-z]*(Error|Exception)\b:?\s*", "", first).strip()
    return first[:300].rstrip(".") or "no reason given"


def _mongo_failure(exc: Exception, flag: str, uri: str, timeout: float) -> str:
    """A MongoDB failure in words, naming the flag and the (masked) server."""
    import pymongo.errors  # noqa: PLC0415 - lazy pymongo: see the note at the top

    where = mask_uri(uri)
    words = _driver_words(str(exc))
    if isinstance(exc, pymongo.errors.ServerSelectionTimeoutError):
        return f"{flag}: no MongoDB server answered at {where} within {timeout:g} s ({words})"
    if isinstance(exc, (pymongo.errors.AutoReconnect, pymongo.errors.NetworkTimeout, pymongo.errors.ConnectionFailure)):
        return f"{flag}: lost the connection to MongoDB at {where} ({words})"
    if isinstance(exc, pymongo.errors.OperationFailure):
        return f"{flag}: MongoDB at {where} refused the audit ({words})"
    return f"{flag}: MongoDB at {where} failed ({words})"


#: Opens (client, collection) for `run_audit`; tests swap it for a stand-in.
_open_collection: Callable[..., tuple[Any, Any]] = open_collection


class _Refused(Exception):
    """A command that stops with one line and an exit code (its secrets already redacted)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def run_audit(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None,
              env: dict[str, str] | None = None) -> int:
    """`repro-kit audit`: 0 when the audit (and any repair) completed, 2 on bad input, 4 when the
    server cannot be reached or the job cannot be done. Every message about the server names
    `--mongodb-uri`; the URI's password never shows."""
    out, err = out or sys.stdout, err or sys.stderr
    uri = args.mongodb_uri or (os.environ if env is None else env).get("MONGODB_URI")
    flag = "--mongodb-uri" if args.mongodb_uri else "--mongodb-uri (from $MONGODB_URI)"
    if not uri:
        return _error("--mongodb-uri: required (or set MONGODB_URI)", _errors.BAD_INPUT, err)
    secrets = uri_secrets(uri)
    try:
        try:
            timeout = _seconds("--timeout", getattr(args, "timeout", 10.0), most=3_600.0)
            _check_names(args.database, args.collection)
            _check_uri(uri, flag)
        except ValueError as exc:
            raise _Refused(str(exc), _errors.BAD_INPUT) from None
        client, collection = _open_audited(args, uri, flag, timeout)
        try:
            result, repairs = _audit_and_repair(collection, args, flag, uri, timeout)
        finally:
            client.close()
    except _Refused as exc:
        return _error(redact(str(exc), secrets), exc.code, err)
    if args.json:
        payload = {"database": args.database, "collection": args.collection, **result.to_dict(),
                   "repairs": [r.to_dict() for r in repairs]}
        print(redact(json.dumps(payload, indent=2), secrets) if secrets else json.dumps(payload, indent=2), file=out)
        return 0
    print("\n".join(_audit_lines(args, uri, result, repairs)), file=out)
    return 0


def _open_audited(args: argparse.Namespace, uri: str, flag: str, timeout: float) -> tuple[Any, Any]:
    """(client, collection), or the refusal: a URI the driver will not take is bad input, servers
    that DNS cannot find a job that cannot be done."""
    try:
        return _open_collection(uri, args.database, args.collection,
                                server_selection_timeout_ms=max(1, int(timeout * 1000)))
    except ValueError as exc:  # the driver refused the URI's text: bad input
        words = _driver_words(str(exc).removeprefix("mongodb_uri: "))
        raise _Refused(f"{flag}: {words}", _errors.BAD_INPUT) from None
    except LiveError as exc:  # an SRV record that does not resolve: the network's answer
        text = str(exc).removeprefix(f"MongoDB URI {mask_uri(uri)}: ")
        raise _Refused(f"{flag}: cannot find the servers of {mask_uri(uri)}: {_driver_words(text)}",
                       _errors.CANNOT) from None


def _audit_and_repair(collection: Any, args: argparse.Namespace, flag: str, uri: str,
                      timeout: float) -> tuple[AuditResult, list[RepairResult]]:
    """The audit, and with --repair every owner's orphans re-attached; a failure as a refusal."""
    import pymongo.errors  # noqa: PLC0415 - lazy pymongo: see the note at the top

    try:
        result = find_orphans(collection, args.owner_id, method=args.method)
        repairs = []
        if args.repair:
            backup_dir = args.backup_dir or Path("backups") / (
                "audit-" + _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ"))
            repairs = [repair(collection, owner.owner_id, backup_dir, apply=True, method=args.method)
                       for owner in result.owners if owner.orphans]
    except ValueError as exc:
        raise _Refused(str(exc), _errors.BAD_INPUT) from None
    except LiveError as exc:
        raise _Refused(str(exc), _errors.CANNOT) from None
    except pymongo.errors.PyMongoError as exc:
        raise _Refused(_mongo_failure(exc, flag, uri, timeout), _errors.CANNOT) from None
    except OSError as exc:  # the root's backup could not be written: nothing was repaired after it
        raise _Refused(f"--backup-dir: {_errors.describe_os_error(exc)}", _errors.CANNOT) from None
    return result, repairs


def _audit_lines(args: argparse.Namespace, uri: str, result: AuditResult, repairs: list[RepairResult]) -> list[str]:
    """The audit in words: each owner's root, reachable and orphaned nodes, then the repairs."""
    lines = [f"audit of {args.database}.{args.collection} at {mask_uri(uri)} (method {result.method})"]
    for owner in result.owners:
        lines.append(f"owner {owner.owner_id}: root {owner.root_id}, {len(owner.reachable)} reachable, "
                     f"{len(owner.orphans)} orphaned")
        lines += [f"  orphan {node_id}" for node_id in owner.orphans]
        lines += [f"  cycle {' -> '.join([*cycle, cycle[0]])}" for cycle in owner.cycles]
        if owner.dangling:
            lines.append(f"  {len(owner.dangling)} links to documents this owner does not have")
        if owner.other_roots:
            lines.append(f"  {len(owner.other_roots)} more documents marked isRoot: {', '.join(owner.other_roots)}")
    for fix in repairs:
        lines.append(f"repaired owner {fix.owner_id}: attached {len(fix.attached)} subtrees "
                     f"({len(fix.orphans)} orphans) to root {fix.root_id}; root backup {fix.backup_path}")
    if not args.repair:
        lines.append(f"{result.orphan_count} orphaned in {len(result.owners)} owners"
                     + (" (dry run: --repair re-attaches them)" if result.orphan_count else ""))
    return lines
