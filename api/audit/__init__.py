"""The audit event store for the back office (`/admin/events/...`): export and projection replay."""
