"""The caller's webhook endpoints (`/webhooks`): register, change, rotate the secret, follow deliveries."""
