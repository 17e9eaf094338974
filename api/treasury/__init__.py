"""Treasury (`/admin/treasury/...`): operator views of sweeps and wallets."""
