"""The Travel Rule (FATF R.16): IVMS101 records, their state machine and the TRP transport."""
