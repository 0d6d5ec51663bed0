"""sidrec step: reasoning."""
