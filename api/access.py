"""Who may call a route. Every route declares one; a test walks the router to prove it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Access:
    """Who may call a route. Every route declares one: a test walks the router to prove it."""

    public: bool = False
    roles: frozenset[str] = frozenset()
    note: str = ""
    # A service may sign the raw body instead of logging in: checked before the body is parsed.
    service_signature: bool = False

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


def roles_or_service_signature(*names: str) -> Access:
    """Staff with one of ``names``, or a service that signs the raw body instead of logging in.

    Deposits: external chain watchers have no user. Public to the router, like
    ``SIGNED``: the handler calls ``api.signatures.caller`` before anything else, which
    checks the ``X-Signature: sha256=<hex>`` HMAC of the body when it is sent, the roles otherwise.
    """
    listed = ", ".join(sorted(names))
    return Access(public=True, roles=frozenset(names), service_signature=True,
                  note=f"roles: {listed}; or a service's HMAC-SHA256 body signature (X-Signature: sha256=<hex>)")
