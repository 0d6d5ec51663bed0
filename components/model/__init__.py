"""sidrec step: model."""
