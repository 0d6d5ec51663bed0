"""sidrec step: store."""
