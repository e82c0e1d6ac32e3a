"""Extract the gateway's texts, merge them into the catalogues and compile them (Babel).

``python scripts/translations.py`` (or ``make translations``): writes ``edge/locale/nbedge.pot``,
updates ``edge/locale/<language>/LC_MESSAGES/nbedge.po`` (new texts arrive untranslated, so a
test fails until someone translates them) and compiles ``nbedge.mo`` beside it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCALE = ROOT / "edge" / "locale"
LANGUAGES = ("zh_Hans",)


def main() -> int:
    pybabel = [sys.executable, "-m", "babel.messages.frontend"]
    template = LOCALE / "nbedge.pot"
    run = subprocess.run
    run(
        [*pybabel, "extract", "-F", str(ROOT / "babel.cfg"), "-k", "N_", "--no-location",
         "--sort-output", "--omit-header", "--project", "nbedge", "-o", str(template), str(ROOT)],
        check=True,
    )  # fmt: skip
    for language in LANGUAGES:
        catalogue = LOCALE / language / "LC_MESSAGES" / "nbedge.po"
        action = "update" if catalogue.exists() else "init"
        strict = ["--no-fuzzy-matching", "--ignore-obsolete"] if action == "update" else []
        run(
            [*pybabel, action, "-D", "nbedge", "-i", str(template), "-d", str(LOCALE), "-l",
             language, *strict],
            check=True,
        )  # fmt: skip
    run([*pybabel, "compile", "-D", "nbedge", "-d", str(LOCALE), "--statistics"], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
