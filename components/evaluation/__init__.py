"""sidrec step: evaluation."""
