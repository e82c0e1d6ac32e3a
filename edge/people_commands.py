"""``nbedge users ...``: the people who may use the gateway's local API (docs/people.md).

- ``nbedge users add NAME --role viewer|responder|installer [--display TEXT]``: a new person,
  with a password (asked twice, or ``--password-stdin``, or ``--no-password``) and a first token,
  printed once (``--no-token``: none).
- ``nbedge users list``; ``nbedge users passwd NAME``; ``nbedge users role NAME ROLE``;
  ``nbedge users token NAME [--label L]`` (a new token) or ``--revoke LABEL``;
  ``nbedge users remove NAME``.

Each takes ``--config FILE`` (the state folder and the operators from it) or ``--state-dir DIR``.
A refused change prints one line and exits 1; a configuration error exits 78. Commands import the
people package when they run, so ``nbedge --help`` stays quick.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge.people import PeopleStore, Person


def register(commands: Any) -> None:
    """Add ``users`` and its subcommands to the ``nbedge`` parser's subparsers."""
    from edge.cli import DEFAULT_CONFIG

    where = argparse.ArgumentParser(add_help=False)
    source = where.add_mutually_exclusive_group()
    source.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"the gateway's configuration, for its state folder and operators "
        f"(default {DEFAULT_CONFIG})",
    )
    source.add_argument("--state-dir", type=Path, help="the state folder itself (no configuration)")
    password = argparse.ArgumentParser(add_help=False)
    how = password.add_mutually_exclusive_group()
    how.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin's first line"
    )
    how.add_argument("--no-password", action="store_true", help="no password: tokens only")

    users = commands.add_parser(
        "users",
        help="the people who may use the local API: viewers, responders, installers",
        description="People and their roles, kept in the state folder (people.json, mode 0600; "
        "tokens and passwords only as hashes). The running gateway takes every change within a "
        "second, without a restart. See docs/people.md.",
    )
    sub = users.add_subparsers(title="users commands", metavar="COMMAND")

    add = sub.add_parser(
        "add",
        parents=[where, password],
        help="add a person, with a role, a password and a first token",
        description="Add a person. The password is asked twice on a terminal (or read with "
        "--password-stdin; --no-password for a person with tokens only). A first token is "
        "printed once: hand it over, it is not kept.",
    )
    add.add_argument("name", help="a stable id for logs: letters A-Z, digits, '_', '.', '-'")
    add.add_argument("--role", required=True, help="viewer, responder or installer")
    add.add_argument("--display", help="the name to show, in any script (e.g. 王芳)")
    add.add_argument("--label", default="token-1", help="the first token's label (token-1)")
    add.add_argument("--no-token", action="store_true", help="no first token")
    add.set_defaults(handler=_handled(_add))

    listing = sub.add_parser("list", parents=[where], help="list the people and their roles")
    listing.set_defaults(handler=_handled(_list))

    passwd = sub.add_parser(
        "passwd", parents=[where, password], help="set (or, with --no-password, remove) a password"
    )
    passwd.add_argument("name")
    passwd.set_defaults(handler=_handled(_passwd))

    role = sub.add_parser("role", parents=[where], help="give a person another role")
    role.add_argument("name")
    role.add_argument("role", help="viewer, responder or installer")
    role.set_defaults(handler=_handled(_role))

    token = sub.add_parser(
        "token",
        parents=[where],
        help="give a person a new token (printed once), or revoke one",
        description="Print a new token for NAME (a phone, a tablet: one token each, so that one "
        "can be revoked alone), or with --revoke LABEL make that token stop working.",
    )
    token.add_argument("name")
    which = token.add_mutually_exclusive_group()
    which.add_argument("--label", help="the new token's label (default token-N)")
    which.add_argument("--revoke", metavar="LABEL", help="revoke the token with this label")
    token.set_defaults(handler=_handled(_token))

    remove = sub.add_parser("remove", parents=[where], help="remove a person and their tokens")
    remove.add_argument("name")
    remove.set_defaults(handler=_handled(_remove))


def _handled(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A refused change (``PeopleError``) is one line on stderr and exit status 1."""

    def run(args: argparse.Namespace) -> int:
        from edge.people import PeopleError

        try:
            return command(args)
        except PeopleError as exc:
            print(f"nbedge: {exc}", file=sys.stderr)
            return 1

    return run


def _store(args: argparse.Namespace) -> PeopleStore:
    from edge.people import PEOPLE_FILE, PeopleStore

    if args.state_dir is not None:
        return PeopleStore(args.state_dir / PEOPLE_FILE)
    from edge.config import load_config

    return PeopleStore.for_gateway(load_config(args.config))


def _add(args: argparse.Namespace) -> int:
    from edge.people import Role

    role = Role.parse(args.role)
    password = _password(args, args.name)
    person, token = _store(args).add(
        args.name,
        role,
        display=args.display,
        password=password,
        token_label=None if args.no_token else args.label,
    )
    with_password = "with a password" if person.password is not None else "no password"
    print(f"added {person.shown()}: {person.role}, {with_password}")
    if token is not None:
        _print_token(person, token)
    return 0


def _list(args: argparse.Namespace) -> int:
    store = _store(args)
    everyone = store.load()
    if not everyone:
        print(f"nobody yet ({store.path}); nbedge users add NAME --role ROLE adds someone")
        return 0
    header = ("name", "display", "role", "password", "tokens", "from")
    rows = [header] + [
        (
            p.name,
            p.display or "-",
            str(p.role),
            "yes" if p.password is not None else "no",
            ", ".join(t.label for t in p.tokens) or "-",
            "the configuration" if p.source == "configuration" else "people file",
        )
        for p in everyone
    ]
    widths = [max(_width(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        cells = (_pad(cell, width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
    if store.operators:
        print(
            "\noperators from the configuration ([[local_api.operators]]) are installers; "
            "nbedge users supersedes them (docs/people.md)"
        )
    return 0


def _passwd(args: argparse.Namespace) -> int:
    store = _store(args)
    store.in_file(args.name)  # an unknown name is said before a password is asked for
    person = store.set_password(args.name, _password(args, args.name))
    state = "has a new password" if person.password is not None else "has no password now"
    print(f"{person.shown()} {state}")
    return 0


def _role(args: argparse.Namespace) -> int:
    from edge.people import Role

    person = _store(args).set_role(args.name, Role.parse(args.role))
    print(f"{person.shown()} is now {person.role.a()}")
    return 0


def _token(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.revoke is not None:
        person = store.revoke_token(args.name, args.revoke)
        print(f"token {args.revoke!r} of {person.name} revoked; it stops working within a second")
        return 0
    person, token = store.issue_token(args.name, args.label)
    _print_token(person, token)
    return 0


def _remove(args: argparse.Namespace) -> int:
    person = _store(args).remove(args.name)
    print(f"removed {person.shown()}; their tokens stop working within a second")
    return 0


def _password(args: argparse.Namespace, name: str) -> str | None:
    """The password the user gives (checked), or ``None`` with --no-password."""
    from edge.people import PeopleError
    from edge.people.passwords import check_password

    if args.no_password:
        return None
    if args.password_stdin:
        return check_password(sys.stdin.readline().rstrip("\r\n"))
    if not sys.stdin.isatty():
        raise PeopleError(
            "no terminal to ask for the password: use --password-stdin, or --no-password for "
            "tokens only"
        )
    first = check_password(getpass.getpass(f"password for {name}: "))
    if check_password(getpass.getpass("the same again: ")) != first:
        raise PeopleError("the two passwords differ; nothing changed")
    return first


def _print_token(person: Person, token: str) -> None:
    label = person.tokens[-1].label
    print(f"token {label!r} for {person.name} (hand it over; it is not shown again):\n  {token}")


def _width(text: str) -> int:
    """Columns on a terminal: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))
