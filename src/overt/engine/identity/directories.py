"""The engine's authentication profiles by name, with the directory calls off the event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import Callable
from typing import TypeVar

from overt.engine.identity.ldap_directory import DirectoryGroup, DirectoryUser, LdapDirectory
from overt.engine.identity.profiles import INTERNAL, LdapProfile
from overt.engine.model.errors import InvalidInput, NotFound, Unavailable

T = TypeVar("T")
_NAMESPACE = uuid.UUID("6f7665c2-7274-4964-8f6d-61696e730000")


def domain_id(profile: str) -> uuid.UUID:
    """A stable id for a profile's domain (the API's `/domains/{id}`)."""
    return uuid.uuid5(_NAMESPACE, profile)


class UnknownProfile(InvalidInput):
    """A user name or request names a profile the engine does not have."""


# Directory calls waiting for a thread, at most; more are refused at once as busy, so a flood
# of sign-ins against a slow directory cannot pile up without bound.
MAX_WAITING = 32


class Directories:
    """All profiles: `internal` plus the configured LDAP ones. One per API process."""

    def __init__(self, profiles: list[LdapProfile] | None = None) -> None:
        self.ldap: dict[str, LdapDirectory] = {p.name: LdapDirectory(p) for p in profiles or []}
        # Directory calls wait on the network; their own small pool keeps them from
        # occupying the threads password hashing and the database use.
        self._pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="ldap")
        self._outstanding = 0

    @property
    def names(self) -> list[str]:
        return [INTERNAL, *sorted(self.ldap)]

    def by_id(self, ident: uuid.UUID) -> str:
        for name in self.names:
            if domain_id(name) == ident:
                return name
        raise NotFound(f"there is no domain with id {ident}")

    def directory(self, profile: str) -> LdapDirectory:
        found = self.ldap.get(profile)
        if found is None:
            raise UnknownProfile(f"there is no authentication profile {profile!r}; the "
                                 f"profiles are {', '.join(self.names)}")
        return found

    async def run(self, call: Callable[[], T]) -> T:
        """A blocking identity call (directory, Kerberos) on this pool."""
        if self._outstanding >= MAX_WAITING:
            raise Unavailable("the engine is busy with other directory sign-ins; try again "
                              "in a few seconds")
        self._outstanding += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, call)
        finally:
            self._outstanding -= 1

    async def authenticate(self, profile: str, login: str, password: str
                           ) -> DirectoryUser | None:
        directory = self.directory(profile)
        return await self.run(lambda: directory.authenticate(login, password))

    async def find_user(self, profile: str, login: str) -> DirectoryUser | None:
        directory = self.directory(profile)
        return await self.run(lambda: directory.find_user(login))

    async def search_users(self, profile: str, pattern: str) -> list[DirectoryUser]:
        directory = self.directory(profile)
        return await self.run(lambda: directory.search_users(pattern))

    async def search_groups(self, profile: str, pattern: str) -> list[DirectoryGroup]:
        directory = self.directory(profile)
        return await self.run(lambda: directory.search_groups(pattern))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        for directory in self.ldap.values():
            directory.close()
