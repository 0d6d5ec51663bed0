"""sidrec step: decoding."""
