"""``.env.example`` lists every setting the product reads from the environment (issue 21, point 5).

The names are read from the product's own source, not from a list kept by hand: every
``env_str/env_bool/env_int/env_list/env_rate("NAME", …)`` of the settings and every
``environ.get("NAME")`` / ``os.getenv("NAME")`` of the product's packages, and every
``${NAME}`` the systemd units substitute. A new setting without a line in .env.example
fails here, so the example stays the complete list an installer copies.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.processes import ROOT

PACKAGES = ("collabadmin", "common", "failover", "sessions", "console", "configsync")
READ = re.compile(r"""(?:env_(?:str|bool|int|list|rate)|environ\.get|getenv)\(\s*["']([A-Z][A-Z0-9_]*)["']""")
UNIT_VARIABLE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
# Set by systemd for the process, not by whoever installs it.
NOT_SETTINGS = {"NOTIFY_SOCKET"}
# "NAME=value" or "#NAME=value" (a commented line keeps the default it shows).
LISTED = re.compile(r"^#?([A-Z][A-Z0-9_]*)=", re.MULTILINE)


def variables_read() -> set[str]:
    names = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts:
                names |= set(READ.findall(path.read_text()))
    for unit in (ROOT / "deploy" / "systemd").glob("*.service"):
        names |= set(UNIT_VARIABLE.findall(unit.read_text()))
    return names - NOT_SETTINGS


def listed() -> set[str]:
    return set(LISTED.findall((ROOT / ".env.example").read_text()))


def test_every_variable_the_product_reads_is_in_env_example():
    read = variables_read()
    # The scan itself works: it finds the settings every installation sets.
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "REDIS_SENTINELS", "COLLABADMIN_SERVER_NAME"} <= read
    assert sorted(read - listed()) == []


def test_env_example_names_nothing_the_product_does_not_read():
    # FORWARDED_ALLOW_IPS is uvicorn's own (the node's unit runs it with --proxy-headers).
    assert sorted(listed() - variables_read() - {"FORWARDED_ALLOW_IPS"}) == []


def test_the_readme_documents_every_setting():
    readme = Path(ROOT / "README.md").read_text()
    undocumented = [name for name in sorted(variables_read()) if f"`{name}`" not in readme]
    assert undocumented == []
