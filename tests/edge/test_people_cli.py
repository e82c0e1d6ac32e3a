"""``nbedge users``: add, list, passwd, role, token, remove, as an installer types them."""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
from pathlib import Path

import pytest

from edge.cli import main
from edge.people import PeopleStore, Role
from nbedge.errors import EX_CONFIG

ROOT = Path(__file__).resolve().parents[2]
TOKEN_LINE = re.compile(r"^  (\S{43})$", flags=re.MULTILINE)


class Terminal(io.StringIO):
    """Standard input as a terminal, for the commands that ask only on one."""

    def isatty(self) -> bool:
        return True


def run(
    capsys: pytest.CaptureFixture[str], *argv: str, stdin: str | None = None
) -> tuple[int, str, str]:
    if stdin is not None:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("sys.stdin", io.StringIO(stdin))
            status = main(list(argv))
    else:
        status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_add_list_passwd_token_revoke_role_remove(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = ["--state-dir", str(tmp_path)]
    path = tmp_path / "people.json"

    status, out, _ = run(
        capsys,
        *("users", "add", "wang.fang", "--role", "responder", "--display", "王芳"),
        *("--password-stdin", *state),
        stdin="correct horse\n",
    )
    assert status == 0
    assert out.startswith("added wang.fang (王芳): responder, with a password\n")
    (first,) = TOKEN_LINE.findall(out)
    status, out, _ = run(
        capsys,
        "users",
        "add",
        "door.tablet",
        "--role",
        "viewer",
        "--no-password",
        "--no-token",
        *state,
    )
    assert (status, out) == (0, "added door.tablet: viewer, no password\n")

    store = PeopleStore(path)
    fang = store.authenticate(first)
    assert fang is not None
    assert (fang.name, fang.display, fang.role) == ("wang.fang", "王芳", Role.RESPONDER)
    assert store.verify_password("wang.fang", "correct horse") == fang
    assert store.find("door.tablet") is not None
    assert store.find("door.tablet").tokens == ()  # type: ignore[union-attr]

    status, out, _ = run(capsys, "users", "token", "wang.fang", "--label", "phone", *state)
    assert status == 0
    (phone,) = TOKEN_LINE.findall(out)
    assert "'phone'" in out
    status, out, _ = run(
        capsys, "users", "passwd", "Wang.Fang", "--password-stdin", *state, stdin="battery staple\n"
    )
    assert (status, out) == (0, "wang.fang (王芳) has a new password\n")
    status, out, _ = run(capsys, "users", "role", "door.tablet", "responder", *state)
    assert (status, out) == (0, "door.tablet is now a responder\n")

    status, out, _ = run(capsys, "users", "list", *state)
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["name", "display", "role", "password", "tokens", "from"]
    assert lines[1].split() == [
        "wang.fang",
        "王芳",
        "responder",
        "yes",
        "token-1,",
        "phone",
        "people",
        "file",
    ]
    assert lines[2].split() == ["door.tablet", "-", "responder", "no", "-", "people", "file"]
    assert lines[1].index("responder") == lines[2].index("responder") - 2, (
        "王芳 takes four columns on a terminal, so the columns after it line up"
    )

    status, out, _ = run(capsys, "users", "token", "wang.fang", "--revoke", "token-1", *state)
    assert status == 0
    store = PeopleStore(path)
    assert store.authenticate(first) is None
    assert store.authenticate(phone) is not None
    assert store.verify_password("wang.fang", "correct horse") is None
    assert store.verify_password("wang.fang", "battery staple") is not None

    text = path.read_text(encoding="utf-8")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for secret in (first, phone, "correct horse", "battery staple"):
        assert secret not in text
    assert hashlib.sha256(phone.encode()).hexdigest() in text

    status, out, _ = run(capsys, "users", "remove", "wang.fang", *state)
    assert (status, out) == (
        0,
        "removed wang.fang (王芳); their tokens stop working within a second\n",
    )
    assert PeopleStore(path).authenticate(phone) is None
    assert [p.name for p in PeopleStore(path).load()] == ["door.tablet"]


def test_the_password_is_asked_twice_on_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter(["correct horse", "correct horse", "one thing!", "another thing"])
    asked: list[str] = []

    def getpass(prompt: str) -> str:
        asked.append(prompt)
        return next(answers)

    monkeypatch.setattr("getpass.getpass", getpass)
    monkeypatch.setattr("sys.stdin", Terminal())
    state = ["--state-dir", str(tmp_path)]

    status, _, _ = run(capsys, "users", "add", "li.lei", "--role", "installer", *state)
    assert status == 0
    assert asked == ["password for li.lei: ", "the same again: "]
    assert PeopleStore(tmp_path / "people.json").verify_password("li.lei", "correct horse")

    before = (tmp_path / "people.json").read_bytes()
    status, out, err = run(capsys, "users", "passwd", "li.lei", *state)
    assert (status, out, err) == (1, "", "nbedge: the two passwords differ; nothing changed\n")
    assert (tmp_path / "people.json").read_bytes() == before


def test_refusals_are_one_line_exit_1_and_change_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = ["--state-dir", str(tmp_path)]
    assert (
        run(capsys, "users", "add", "li.lei", "--role", "installer", "--no-password", *state)[0]
        == 0
    )
    path = tmp_path / "people.json"
    before = path.read_bytes()
    cases = [
        (
            ("users", "add", "LI.LEI", "--role", "viewer", "--no-password"),
            None,
            "already a person called 'li.lei'",
        ),
        (("users", "add", "王芳", "--role", "viewer", "--no-password"), None, "not a valid name"),
        (("users", "add", "x", "--role", "admin", "--no-password"), None, "unknown role 'admin'"),
        (
            ("users", "add", "x", "--role", "viewer", "--password-stdin"),
            "\n",
            "the password is empty",
        ),
        (
            ("users", "add", "x", "--role", "viewer", "--password-stdin"),
            "short\n",
            "shorter than 8",
        ),
        (("users", "add", "x", "--role", "viewer"), "", "no terminal to ask for the password"),
        (
            ("users", "add", "x", "--role", "viewer", "--display", "a\tb", "--no-password"),
            None,
            "control",
        ),
        (("users", "passwd", "nobody", "--no-password"), None, "no person called 'nobody'"),
        (("users", "remove", "nobody"), None, "no person called 'nobody'"),
        (("users", "role", "li.lei", "boss"), None, "unknown role 'boss'"),
        (("users", "token", "nobody"), None, "no person called 'nobody'"),
        (("users", "token", "li.lei", "--revoke", "phone"), None, "no token labelled 'phone'"),
        (("users", "token", "li.lei", "--label", "token-1"), None, "already has a token labelled"),
    ]
    for argv, stdin, message in cases:
        status, out, err = run(capsys, *argv, *state, stdin=stdin)
        assert status == 1, argv
        assert out == ""
        assert err.startswith("nbedge: "), err
        assert err.count("\n") == 1, err
        assert message in err, (argv, err)
        assert path.read_bytes() == before, argv

    path.write_text('{"format": 1, "people": [}')
    for argv in (("users", "list"), ("users", "add", "x", "--role", "viewer", "--no-password")):
        status, _, err = run(capsys, *argv, *state)
        assert status == 1
        assert err.startswith(f"nbedge: {path}: not a JSON file")
    assert path.read_text() == '{"format": 1, "people": [}'


def test_the_configuration_gives_the_state_folder_and_its_operators_are_installers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = hashlib.sha256(b"field-crew-token-0123456789").hexdigest()
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[gateway]\nid = "gw"\nsite = "s"\nstate_dir = "{tmp_path / "state"}"\n'
        f'[[local_api.operators]]\nname = "field-crew"\ntoken_sha256 = "{digest}"\n'
    )
    where = ["--config", str(config)]
    assert (
        run(capsys, "users", "add", "li.lei", "--role", "viewer", "--no-password", *where)[0] == 0
    )
    assert (tmp_path / "state" / "people.json").exists()

    status, out, _ = run(capsys, "users", "list", *where)
    assert status == 0
    rows = [line.split() for line in out.splitlines()]
    assert rows[1] == [
        "field-crew",
        "-",
        "installer",
        "no",
        "configuration",
        "the",
        "configuration",
    ]
    assert rows[2][:3] == ["li.lei", "-", "viewer"]
    assert "nbedge users supersedes them" in out

    status, _, err = run(
        capsys, "users", "add", "Field-Crew", "--role", "viewer", "--no-password", *where
    )
    assert status == 1
    assert "operator of the configuration ([[local_api.operators]])" in err
    status, _, err = run(capsys, "users", "remove", "field-crew", *where)
    assert status == 1
    assert "operator of the configuration" in err

    config.write_text('[gateway]\nid = "gw"\n')
    status, _, err = run(capsys, "users", "list", *where)
    assert status == EX_CONFIG
    assert "gateway.site" in err


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_run_as_root_the_file_belongs_to_the_state_folders_owner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, 4242, 4343)
    assert (
        run(
            capsys,
            "users",
            "add",
            "li.lei",
            "--role",
            "viewer",
            "--no-password",
            "--state-dir",
            str(state),
        )[0]
        == 0
    )
    owner = (state / "people.json").stat()
    assert (owner.st_uid, owner.st_gid) == (4242, 4343)


def test_help_and_the_readme_list_the_users_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["users", "--help"])
    out = capsys.readouterr().out
    readme = (ROOT / "README.md").read_text()
    for command in ("add", "list", "passwd", "role", "token", "remove"):
        assert re.search(rf"^\s+{command}\s", out, flags=re.MULTILINE), command
        assert f"`nbedge users {command}" in readme, command


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_state_folder_it_may_not_write_is_one_line_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tmp_path.chmod(0o500)
    try:
        status, _, err = run(
            capsys,
            "users",
            "add",
            "li.lei",
            "--role",
            "viewer",
            "--no-password",
            "--state-dir",
            str(tmp_path),
        )
    finally:
        tmp_path.chmod(0o700)
    assert status == 1
    assert err == f"nbedge: {tmp_path / 'people.json'}: cannot change it: Permission denied\n"
