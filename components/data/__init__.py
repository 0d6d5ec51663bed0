"""sidrec step: data."""
