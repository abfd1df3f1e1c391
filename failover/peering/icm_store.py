"""The ICM configuration the Admin Workstation simulators serve, and where it is kept.

* ``IcmConfig``: agents, skill groups, membership (an agent's ``skill_groups``) and
  ``config_version``; its JSON file format.
* ``PrivateStore``: one AW's own copy, in memory and optionally in a data file only that AW
  writes (``--data``). The simulator's behaviour before both AWs of a pair shared an ICM;
  kept for a single AW and for the scale benchmarks' thousands of independent AWs.
* ``SharedStore``: the one ICM database both AWs of a pair front (``--icm-store PATH``).
  Every AW started with the same PATH reads the file on every request and changes it
  under an exclusive lock, so a change made through one AW is what the other serves next:
  a switchover alone never shows a difference.

Why a JSON file under a lock, and not SQLite or an ICM simulator process of its own:

* it is the data file's format and crash-safe write (temporary file, fsync, rename),
  already proven against SIGKILL, so ``seed_demo`` and ``--data`` files stay one format;
* there is no third process to start, supervise and wait for in the demo and the tests,
  and none that can die on its own: the ICM database outlives its AWs, as a real one does
  (the product handles AW failures, not ICM database failures);
* ``flock`` is released by the kernel when its holder dies, so an AW SIGKILLed in the
  middle of a change never blocks the other one;
* readers need no lock at all: a change replaces the file by ``rename``, so a reader opens
  either the whole old file or the whole new one.

SQLite would do too, at the cost of a second file format and a journal for a configuration
of a few kilobytes that changes a few times a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .simulator import ID_PATTERN, OpError

FILE_FORMAT = 1
VERSION_MISMATCH = "version_mismatch"
STORAGE_ERROR = "storage_error"

# A change: validates and edits the configuration it is given, returns the reply's fields.
Apply = Callable[["IcmConfig"], dict[str, Any]]


class DataFileError(Exception):
    """The data file exists but cannot be read as an AW configuration (never overwritten)."""


@dataclass
class IcmConfig:
    """The configuration an AW serves. Agents' ``skill_groups`` are kept sorted."""

    config_version: int = 0
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)
    skill_groups: dict[str, dict[str, Any]] = field(default_factory=dict)

    def members(self, skill_group_id: str) -> list[str]:
        return sorted(a["agent_id"] for a in self.agents.values() if skill_group_id in a["skill_groups"])

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FILE_FORMAT,
            "config_version": self.config_version,
            "agents": [self.agents[k] for k in sorted(self.agents)],
            "skill_groups": [self.skill_groups[k] for k in sorted(self.skill_groups)],
        }

    @classmethod
    def from_json(cls, data: Any) -> IcmConfig:
        """Build from ``to_json`` output; raises ``ValueError`` naming the first problem."""
        if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
            raise ValueError(f"not an AW configuration of format {FILE_FORMAT}")
        version = data.get("config_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise ValueError("config_version must be a non-negative integer")
        config = cls(config_version=version)
        for group in data.get("skill_groups", []):
            if not isinstance(group, dict) or not _is_id(group.get("skill_group_id")):
                raise ValueError(f"bad skill group {group!r}")
            if not isinstance(group.get("name"), str):
                raise ValueError(f"bad skill group name in {group!r}")
            config.skill_groups[group["skill_group_id"]] = {
                "skill_group_id": group["skill_group_id"],
                "name": group["name"],
            }
        for agent in data.get("agents", []):
            if not isinstance(agent, dict) or not _is_id(agent.get("agent_id")):
                raise ValueError(f"bad agent {agent!r}")
            groups = agent.get("skill_groups")
            if not isinstance(groups, list) or not all(g in config.skill_groups for g in groups):
                raise ValueError(f"agent {agent['agent_id']} refers to unknown skill groups")
            if not isinstance(agent.get("name"), str) or not isinstance(agent.get("enabled"), bool):
                raise ValueError(f"bad name or enabled in agent {agent['agent_id']}")
            config.agents[agent["agent_id"]] = {
                "agent_id": agent["agent_id"],
                "name": agent["name"],
                "enabled": agent["enabled"],
                "skill_groups": sorted(set(groups)),
            }
        return config


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and ID_PATTERN.match(value) is not None


def atomic_write_json(path: Path, data: Any) -> None:
    """Replace ``path`` with ``data`` as JSON so that a crash leaves the old or the new file.

    Temporary file in the same directory (so ``os.replace`` is an atomic rename), fsync of
    the file before the rename, fsync of the directory after it (so the rename itself
    survives a power cut, not only a process kill).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_config(path: Path) -> IcmConfig:
    """Read a data file; a missing file is an empty configuration, a bad one a ``DataFileError``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return IcmConfig()
    except OSError as exc:
        raise DataFileError(f"cannot read {path}: {exc}") from exc
    try:
        return IcmConfig.from_json(json.loads(text))
    except ValueError as exc:
        raise DataFileError(f"{path} is not a valid AW data file ({exc})") from exc


def _check_version(config: IcmConfig, expected: int | None) -> None:
    """``expected_version`` makes a change a compare-and-set: a writer that read version N
    fails instead of overwriting a change made since."""
    if expected is not None and expected != config.config_version:
        raise OpError(VERSION_MISMATCH, f"configuration is at version {config.config_version}, not {expected}")


def _apply(config: IcmConfig, expected: int | None, apply: Apply) -> dict[str, Any]:
    """Check the version, apply the change to ``config`` and bump its version."""
    _check_version(config, expected)
    result = apply(config)
    config.config_version += 1
    return {**result, "config_version": config.config_version}


class PrivateStore:
    """One AW's own configuration: served from memory, written to its data file (if any)
    before every reply. ``path_template`` may contain ``{port}`` (one file per peer)."""

    def __init__(self, path_template: str | None = None) -> None:
        self.path_template = path_template
        self.path: Path | None = None
        self.config = IcmConfig()

    def open(self, port: int) -> None:
        """Load the data file once the port is bound (its name may contain ``{port}``)."""
        if self.path_template is not None:
            self.path = Path(self.path_template.replace("{port}", str(port)))
            self.config = load_config(self.path)
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def read(self) -> IcmConfig:
        return self.config

    async def change(self, expected: int | None, apply: Apply) -> dict[str, Any]:
        """Apply to a copy, persist, then publish the copy.

        Working on a copy means a validation error or a failed write leaves the served
        configuration untouched, and reads during the write still see the previous
        (acknowledged) version. The write runs in a thread: one AW's fsync never stalls
        the other peers served by the same event loop.
        """
        draft = copy.deepcopy(self.config)
        reply = _apply(draft, expected, apply)
        if self.path is not None:
            try:
                await asyncio.to_thread(atomic_write_json, self.path, draft.to_json())
            except OSError as exc:
                raise OpError(STORAGE_ERROR, f"cannot write {self.path}: {exc}") from exc
        self.config = draft
        return reply


class SharedStore:
    """The ICM database both AWs of a pair front: one file, read on every request, changed
    under an exclusive ``flock`` of ``PATH.lock`` (not of the file itself, which every
    change replaces by a new one)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def open(self, port: int) -> None:
        """Refuse to start on a file that is not an ICM configuration (``DataFileError``)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        load_config(self.path)

    def read(self) -> IcmConfig:
        """What the ICM holds now, whichever AW changed it last."""
        try:
            return load_config(self.path)
        except DataFileError as exc:
            raise OpError(STORAGE_ERROR, str(exc)) from exc

    async def change(self, expected: int | None, apply: Apply) -> dict[str, Any]:
        # In a thread: waiting for the other AW's lock or for the fsync must not stall the
        # event loop (heartbeats, probes).
        return await asyncio.to_thread(self._change_locked, expected, apply)

    def _change_locked(self, expected: int | None, apply: Apply) -> dict[str, Any]:
        with self._exclusive():
            # Read under the lock: the version checked and bumped is the latest, so two
            # AWs' changes never overwrite each other.
            config = self.read()
            reply = _apply(config, expected, apply)
            try:
                atomic_write_json(self.path, config.to_json())
            except OSError as exc:
                raise OpError(STORAGE_ERROR, f"cannot write {self.path}: {exc}") from exc
        return reply

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OpError(STORAGE_ERROR, f"cannot open {self.lock_path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock (so does the kernel if this process dies)


IcmStore = PrivateStore | SharedStore
