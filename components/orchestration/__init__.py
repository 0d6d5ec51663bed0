"""sidrec step: orchestration."""
