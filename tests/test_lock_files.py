"""The lock files (issue 21, point 6): requirements.lock and requirements-dev.lock pin every
package the runtime and the tests install, with hashes, and agree with their inputs.

bin/setup installs them with ``pip install --require-hashes``; bin/lock rewrites them from
requirements.txt and requirements-dev.txt. What is checked here: every package in a lock
has its hashes; every pin of the requirements files is in its lock at the same version
(an edited pin without a new lock fails); the runtime lock is the dev lock's runtime part,
same versions and hashes; and every third-party module the product, the tests and the
benchmarks import comes from a package of the right lock (the product's from the runtime
lock), so nothing the suite needs is installed only by hand.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from importlib.metadata import packages_distributions

import pytest

from tests.processes import ROOT

PRODUCT = ("collabadmin", "common", "failover", "sessions", "console", "configsync")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", re.MULTILINE)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def lock(name: str) -> dict[str, tuple[str, frozenset[str]]]:
    """``{package: (version, hashes)}`` of a lock file."""
    text = (ROOT / name).read_text()
    entries = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = PIN.match(block)
        if match:
            hashes = frozenset(re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
            entries[canonical(match.group(1))] = (match.group(2), hashes)
    return entries


def pins(name: str) -> dict[str, str]:
    """The pins of a requirements file and of the files it includes with ``-r``."""
    text = (ROOT / name).read_text()
    found = {canonical(package): version for package, version in PIN.findall(text)}
    for included in re.findall(r"^-r\s+(\S+)", text, re.MULTILINE):
        found |= pins(included)
    return found


@pytest.mark.parametrize("name", ["requirements.lock", "requirements-dev.lock"])
def test_every_locked_package_has_its_hashes(name):
    entries = lock(name)
    assert len(entries) > 40  # the parse found the packages
    assert [package for package, (_, hashes) in entries.items() if not hashes] == []


@pytest.mark.parametrize(
    ("source", "locked"), [("requirements.txt", "requirements.lock"), ("requirements-dev.txt", "requirements-dev.lock")]
)
def test_every_pin_is_in_its_lock_at_the_same_version(source, locked):
    entries = lock(locked)
    wanted = pins(source)
    assert "django" in wanted
    assert {package: entries.get(package, ("missing",))[0] for package in wanted} == wanted


def test_the_runtime_lock_is_the_dev_locks_runtime_part():
    runtime, dev = lock("requirements.lock"), lock("requirements-dev.lock")
    assert {package: dev.get(package) for package in runtime} == runtime


def imported_modules(folders: tuple[str, ...]) -> set[str]:
    """Top-level names of every module imported by the Python files under ``folders``."""
    names = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names


def unlocked(folders: tuple[str, ...], locked: str) -> dict[str, list[str]]:
    """Imported modules whose installed package is not in the lock file."""
    installed = packages_distributions()
    entries = lock(locked)
    missing = {}
    for module in sorted(imported_modules(folders)):
        distributions = [canonical(d) for d in installed.get(module, [])]
        if distributions and not any(d in entries for d in distributions):
            missing[module] = distributions
    return missing


def test_every_package_the_product_imports_is_in_the_runtime_lock():
    # The check can fail: the tests' own tools are not in the runtime lock.
    assert "pytest" in unlocked(("tests",), "requirements.lock")
    assert unlocked(PRODUCT, "requirements.lock") == {}


def test_every_package_the_tests_and_benchmarks_import_is_in_the_dev_lock():
    assert "celery" in imported_modules(("tests",))  # the scan sees third-party imports
    assert unlocked((*PRODUCT, "tests", "bench"), "requirements-dev.lock") == {}
