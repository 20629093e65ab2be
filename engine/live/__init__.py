"""The live cluster (above exact): state with reservations and the bind ledger, the journal."""
