"""sidrec step: utils."""
