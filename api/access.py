"""Who may call a route. Every route declares one; a test walks the router to prove it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Access:
    """Who may call a route. Every route declares one: a test walks the router to prove it."""

    public: bool = False
    roles: frozenset[str] = frozenset()
    note: str = ""

    def describe(self) -> str:
        if self.public:
            return self.note or "public"
        return "roles: " + ", ".join(sorted(self.roles)) if self.roles else "any authenticated user"


PUBLIC = Access(public=True)


def roles(*names: str) -> Access:
    return Access(roles=frozenset(names))


AUTHENTICATED = Access()


# Not tied to a login: the body carries an operator's Ed25519 signature, verified by the route.
SIGNED = Access(public=True, note="Ed25519-signed operator payload")
