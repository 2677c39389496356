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
import math
import os
import re
import sys
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, TextIO

from repro_kit import _errors
from repro_kit._schema import COLLECTION, DATABASE, parse_bson_type, validate_field_name
from repro_kit.live.appservices_api import DEFAULT_BASE_URL, ENV_PRIVATE_KEY, ENV_PUBLIC_KEY, AdminClient, LiveError, redact
from repro_kit.live.atlas import mask_uri, open_collection, uri_secrets
from repro_kit.live.audit import find_orphans, repair

__all__ = ["register", "run_deploy", "run_audit"]

PROG = "repro-kit"


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def register(subparsers: Any) -> None:
    """Add `deploy` and `audit` to the CLI's subparsers (argparse `add_subparsers()` result)."""
    deploy = subparsers.add_parser(
        "deploy",
        help="add an optional field to the app's schema through the Admin API (the report's deploy)",
        description=f"Deploy an additive schema change to a live App Services app. API key from "
                    f"{ENV_PUBLIC_KEY} / {ENV_PRIVATE_KEY}.",
        epilog=_errors.exit_codes_epilog(0, 2, 4, 130),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    deploy.add_argument("--backend", default="live", choices=("live",), help="only 'live' deploys to a real app")
    deploy.add_argument("--app-id", required=True, help="the client App ID (e.g. myapp-abcde)")
    deploy.add_argument("--base-url", default=DEFAULT_BASE_URL,
                        help=f"server root (default {DEFAULT_BASE_URL}; https://realm.mongodb.com also works)")
    deploy.add_argument("--field", required=True, help="name of the new optional field")
    deploy.add_argument("--bson-type", required=True, help="BSON type, or array<NAME> (e.g. array<string>)")
    deploy.add_argument("--database", default=DATABASE, help=f"linked database (default {DATABASE})")
    deploy.add_argument("--collection", default=COLLECTION, help=f"collection whose schema to edit (default {COLLECTION})")
    deploy.add_argument("--deploy-timeout", type=_float, default=600.0,
                        help="seconds to wait for a final status (default 600, at most a day)")
    deploy.add_argument("--poll-interval", type=_float, default=2.0,
                        help="seconds between deployment status polls (default 2)")
    deploy.add_argument("--existing-draft", choices=("discard", "reuse"), default="discard",
                        help="what to do with a draft this API key left behind (default discard)")
    deploy.set_defaults(func=run_deploy)

    audit = subparsers.add_parser(
        "audit",
        help="list nodes no path from their owner's root reaches; --repair re-attaches them",
        description="Audit a Node collection for orphans (dry run unless --repair; a repair backs the root up first).",
        epilog=_errors.exit_codes_epilog(0, 2, 4, 130),
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    audit.add_argument("--timeout", type=_float, default=10.0, help="seconds to find the server (default 10)")
    audit.add_argument("--json", action="store_true", help="print the result as JSON")
    audit.set_defaults(func=run_audit)


_APP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_DB_FORBIDDEN = set('/\\. "$*<>:|?\0')


def _seconds(flag: str, value: Any, *, most: float) -> float:
    """A finite, positive number of seconds, at most `most`; ValueError names the flag."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{flag}: must be a finite number of seconds, got {value!r}")
    if not 0 < value <= most:
        raise ValueError(f"{flag}: must be > 0 and at most {most:g} s, got {value!r}")
    return float(value)


def _check_names(database: str, collection: str) -> None:
    """MongoDB's naming rules, checked here so a bad name is bad input (exit 2), not a driver error."""
    if not database or len(database.encode()) > 63 or set(database) & _DB_FORBIDDEN:
        raise ValueError(f"--database: {database!r} is not a MongoDB database name (1-63 bytes, none of "
                         "/\\. \"$*<>:|? or spaces)")
    if not collection or "$" in collection or "\0" in collection or collection.startswith("system."):
        raise ValueError(f"--collection: {collection!r} is not a MongoDB collection name (non-empty, no $ or NUL, "
                         "not system.*)")


def _check_deploy(args: argparse.Namespace, env: Mapping[str, str]) -> None:
    """Every deploy argument, and the API key's presence, before the first request."""
    if getattr(args, "backend", "live") != "live":
        raise ValueError(f"--backend: deploy needs 'live', got {args.backend!r}")
    if not isinstance(args.app_id, str) or not _APP_ID.match(args.app_id):
        raise ValueError(f"--app-id: {args.app_id!r} is not an App Services client App ID (like myapp-abcde)")
    url = urllib.parse.urlsplit(str(args.base_url))
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ValueError(f"--base-url: must be an http(s) URL of the server root, got {args.base_url!r}")
    for flag, check in (("--field", validate_field_name), ("--bson-type", parse_bson_type)):
        try:
            check(args.field if flag == "--field" else args.bson_type)
        except ValueError as exc:
            raise ValueError(f"{flag}: {str(exc).split(': ', 1)[-1]}") from None
    _check_names(getattr(args, "database", DATABASE), getattr(args, "collection", COLLECTION))
    timeout = _seconds("--deploy-timeout", getattr(args, "deploy_timeout", 600.0), most=86_400.0)
    _seconds("--poll-interval", getattr(args, "poll_interval", 2.0), most=min(3_600.0, timeout))
    missing = [name for name in (ENV_PUBLIC_KEY, ENV_PRIVATE_KEY) if not env.get(name)]
    if missing:
        raise ValueError(f"{' and '.join(missing)}: not set; the Admin API key (a programmatic API key of the "
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
                                              getattr(args, "collection", COLLECTION), getattr(args, "database", DATABASE))
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
        raise ValueError(f"{flag}: must start with mongodb:// or mongodb+srv://, got {shown}")
    hosts = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
    if not hosts:
        raise ValueError(f"{flag}: {mask_uri(uri)} names no host")
    if scheme == "mongodb+srv":
        if "," in hosts:
            raise ValueError(f"{flag}: a mongodb+srv:// URI names exactly one host (DNS gives the rest), "
                             f"got {mask_uri(uri)}")
        if hosts.startswith("[") or re.search(r":\d*$", hosts):
            raise ValueError(f"{flag}: a mongodb+srv:// URI must not include a port (the SRV record gives it), "
                             f"got {mask_uri(uri)}")
        if "." not in hosts.strip("."):
            raise ValueError(f"{flag}: a mongodb+srv:// host must be a domain name with a dot "
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
    import pymongo.errors

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


def run_audit(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None,
              env: dict[str, str] | None = None) -> int:
    """`repro-kit audit`: 0 when the audit (and any repair) completed, 2 on bad input, 4 when the
    server cannot be reached or the job cannot be done. Every message about the server names
    `--mongodb-uri`; the URI's password never shows."""
    import pymongo.errors

    out, err = out or sys.stdout, err or sys.stderr
    uri = args.mongodb_uri or (os.environ if env is None else env).get("MONGODB_URI")
    flag = "--mongodb-uri" if args.mongodb_uri else "--mongodb-uri (from $MONGODB_URI)"
    if not uri:
        return _error("--mongodb-uri: required (or set MONGODB_URI)", _errors.BAD_INPUT, err)
    secrets = uri_secrets(uri)
    try:
        timeout = _seconds("--timeout", getattr(args, "timeout", 10.0), most=3_600.0)
        _check_names(args.database, args.collection)
        _check_uri(uri, flag)
    except ValueError as exc:
        return _error(redact(str(exc), secrets), _errors.BAD_INPUT, err)
    try:
        client, collection = _open_collection(uri, args.database, args.collection,
                                              server_selection_timeout_ms=max(1, int(timeout * 1000)))
    except ValueError as exc:  # the driver refused the URI's text: bad input
        return _error(redact(f"{flag}: {_driver_words(str(exc).removeprefix('mongodb_uri: '))}", secrets),
                      _errors.BAD_INPUT, err)
    except LiveError as exc:  # an SRV record that does not resolve: the network's answer
        text = str(exc).removeprefix(f"MongoDB URI {mask_uri(uri)}: ")
        return _error(redact(f"{flag}: cannot find the servers of {mask_uri(uri)}: {_driver_words(text)}", secrets),
                      _errors.CANNOT, err)
    try:
        result = find_orphans(collection, args.owner_id, method=args.method)
        repairs = []
        if args.repair:
            backup_dir = args.backup_dir or Path("backups") / (
                "audit-" + _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
            for owner in result.owners:
                if owner.orphans:
                    repairs.append(repair(collection, owner.owner_id, backup_dir, apply=True, method=args.method))
    except ValueError as exc:
        return _error(redact(str(exc), secrets), _errors.BAD_INPUT, err)
    except LiveError as exc:
        return _error(redact(str(exc), secrets), _errors.CANNOT, err)
    except pymongo.errors.PyMongoError as exc:
        return _error(redact(_mongo_failure(exc, flag, uri, timeout), secrets), _errors.CANNOT, err)
    except OSError as exc:  # the root's backup could not be written: nothing was repaired after it
        return _error(redact(f"--backup-dir: {_errors.describe_os_error(exc)}", secrets), _errors.CANNOT, err)
    finally:
        if client is not None:
            client.close()
    if args.json:
        payload = {"database": args.database, "collection": args.collection, **result.to_dict(),
                   "repairs": [r.to_dict() for r in repairs]}
        print(redact(json.dumps(payload, indent=2), secrets) if secrets else json.dumps(payload, indent=2), file=out)
        return 0
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
    print("\n".join(lines), file=out)
    return 0
