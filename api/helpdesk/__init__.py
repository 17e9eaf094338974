"""The helpdesk: tickets, public messages, staff-only internal notes and context links,
an explicit state machine and a business-time SLA clock. See ``sla.py`` for the policy."""
