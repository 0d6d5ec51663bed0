"""sidrec step: serving."""
