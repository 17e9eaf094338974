"""Starter content for the devnet: legal texts, help articles, a landing page and the email
templates the platform sends. ``seed_content`` is idempotent: a document that exists (in any
state, edited or not) is left alone, so re-running never overwrites an editor's work.

Email template variables (``metadata.variables`` lists them; product emails always also get
``display_name`` and ``email``): ``email.verify`` takes ``verify_url`` (the link, which carries
its token); ``escrow.*`` take ``escrow_title``, ``amount``, ``currency``; ``withdrawal.confirmed``
takes ``amount``, ``currency``, ``chain``, ``tx_hash``; ``address_book.entry_added`` takes ``label``,
``address``, ``chain``, ``asset`` (empty: any asset) and ``usable_at``; ``ticket.reply`` takes
``ticket_subject`` and ``reply``; ``webhook.disabled`` takes ``endpoint_url`` (without its query) and ``failing_since``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from content import service
from content.models import CmsDocument, Kind

ACTOR = "devnet-seed"
NOTE = "devnet starter content"


@dataclass(frozen=True)
class Seed:
    kind: Kind
    slug: str
    title: str
    body: str
    locale: str = "en"
    meta: dict[str, Any] = field(default_factory=dict)


def _email(slug: str, subject: str, body: str, variables: list[str]) -> Seed:
    return Seed("email", slug, subject, body, meta={"subject": subject, "variables": variables})


SEEDS: tuple[Seed, ...] = (
    Seed("legal", "terms", "Terms of Service",
         "# Terms of Service\n\nThese terms govern your use of VirtuOZ custody and escrow services.\n\n"
         "1. You keep your credentials secret.\n2. Withdrawals are final once confirmed on chain.\n"),
    Seed("legal", "terms", "Allgemeine Geschäftsbedingungen", "# AGB\n\nDiese Bedingungen regeln die Nutzung von VirtuOZ.\n",
         locale="de"),
    Seed("legal", "privacy", "Privacy Policy",
         "# Privacy Policy\n\nWe process the data needed for custody, compliance (KYC, Travel Rule) and support.\n"),
    Seed("help", "getting-started", "Getting started",
         "## Create an account\n\nRegister, verify your identity, then fund your wallet from the **Deposit** page.\n"),
    Seed("help", "deposits", "How deposits are credited",
         "A deposit is credited after the chain's required number of confirmations "
         "(3 on Ethereum, 2 on Polygon in the devnet).\n"),
    Seed("help", "escrow-disputes", "Opening an escrow dispute",
         "Open a dispute from the escrow page while it is funded; both parties may upload evidence.\n"),
    Seed("landing", "home", "Custody you can audit",
         "VirtuOZ keeps keys in an isolated signer and every change in a hash-chained audit log.\n",
         meta={"blocks": [
             {"type": "hero", "heading": "Custody you can audit", "markdown": "Escrow, custody and compliance "
              "on **one** platform."},
             {"type": "features", "items": ["Isolated signer", "Travel Rule (IVMS101)", "Escrow with disputes"]},
             {"type": "cta", "label": "Create an account", "href": "/register"},
         ]}),
    _email("welcome", "Welcome to VirtuOZ, {{ display_name }}",
           "Hello {{ display_name }},\n\nyour VirtuOZ account is ready. Verify your identity to start "
           "depositing.\n", ["display_name"]),
    _email("email.verify", "Confirm your email address for VirtuOZ",
           "Hello {{ display_name }},\n\nplease confirm that {{ email }} is your address: "
           "[confirm my email address]({{ verify_url }})\n\nOr open this link in your browser:\n\n{{ verify_url }}\n\n"
           "The link works once and expires; you can ask for a new one from your account. Until you confirm, "
           "you cannot withdraw and no escrow addressed to this email is yours. If you did not create a VirtuOZ "
           "account, ignore this email.\n", ["display_name", "email", "verify_url"]),
    _email("mfa.enrollment_started", "A new two-factor authenticator is being set up on your account",
           "Hello {{ display_name }},\n\na new authenticator app is being set up for your VirtuOZ account. "
           "If this was not you, change your password and contact support at once.\n", ["display_name"]),
    _email("mfa.disabled", "Two-factor authentication was turned off on your account",
           "Hello {{ display_name }},\n\ntwo-factor authentication was turned off for your VirtuOZ account. "
           "If this was not you, change your password and contact support at once.\n", ["display_name"]),
    _email("escrow.funded", "Escrow “{{ escrow_title }}” is funded",
           "Hello {{ display_name }},\n\nescrow **{{ escrow_title }}** is funded with {{ amount }} {{ currency }}.\n",
           ["display_name", "escrow_title", "amount", "currency"]),
    _email("escrow.released", "Escrow “{{ escrow_title }}” was released",
           "Hello {{ display_name }},\n\nescrow **{{ escrow_title }}** was released: {{ amount }} {{ currency }} "
           "went to the seller.\n", ["display_name", "escrow_title", "amount", "currency"]),
    _email("escrow.disputed", "Escrow “{{ escrow_title }}” is disputed",
           "Hello {{ display_name }},\n\na dispute was opened on escrow **{{ escrow_title }}**. The funds stay "
           "held until it is resolved.\n", ["display_name", "escrow_title"]),
    _email("withdrawal.confirmed", "Your withdrawal of {{ amount }} {{ currency }} is confirmed",
           "Hello {{ display_name }},\n\nyour withdrawal of {{ amount }} {{ currency }} is confirmed on "
           "{{ chain }} (transaction `{{ tx_hash }}`).\n", ["display_name", "amount", "currency", "chain", "tx_hash"]),
    _email("address_book.entry_added", "A withdrawal address was added to your address book",
           "Hello {{ display_name }},\n\n**{{ label }}**, `{{ address }}` on {{ chain }}"
           "{% if asset %} (for {{ asset }} only){% endif %}, was added to your withdrawal address book. While "
           "your withdrawal allowlist is on, withdrawals may go to it from {{ usable_at }}.\n\nIf this was not "
           "you, remove the address, change your password and contact support at once.\n",
           ["display_name", "label", "address", "chain", "asset", "usable_at"]),
    _email("ticket.reply", "Re: {{ ticket_subject }}",
           "Hello {{ display_name }},\n\nsupport replied to your ticket “{{ ticket_subject }}”:\n\n"
           "> {{ reply }}\n", ["display_name", "ticket_subject", "reply"]),
    _email("webhook.disabled", "Your webhook endpoint was disabled",
           "Hello {{ display_name }},\n\nyour webhook endpoint {{ endpoint_url }} has failed every delivery since "
           "{{ failing_since }}, so it was disabled and receives no events. Fix the endpoint, then enable it again "
           "from your webhook settings; the deliveries it missed are listed there.\n",
           ["display_name", "endpoint_url", "failing_since"]),
)


async def seed_content(session: AsyncSession) -> list[str]:
    """Create and publish each starter document that does not exist yet; the ``kind/slug/locale``
    of those created."""
    existing = {tuple(row) for row in await session.execute(select(CmsDocument.kind, CmsDocument.slug,
                                                                   CmsDocument.locale))}
    created = []
    for seed in SEEDS:
        if (seed.kind, seed.slug, seed.locale) in existing:
            continue
        await service.save_draft(session, seed.kind, seed.slug, seed.locale, title=seed.title, body=seed.body,
                                 meta=seed.meta, actor=ACTOR)
        await service.publish(session, seed.kind, seed.slug, seed.locale, version=None, note=NOTE, actor=ACTOR)
        created.append(f"{seed.kind}/{seed.slug}/{seed.locale}")
    return created
