"""sidrec step: features."""
