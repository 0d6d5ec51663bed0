"""sidrec step: sids."""
