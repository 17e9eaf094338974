"""Withdrawals: the service the API calls, the pipeline the custody worker drives, their jobs."""
