"""Treasury: where the platform's funds sit on chain — sweeps of deposit addresses into the hot wallet, the hot and cold wallets, proof of reserves."""
