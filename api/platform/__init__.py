"""Platform routes (`/platform/...`): crypto custody operations for integrators and staff."""
