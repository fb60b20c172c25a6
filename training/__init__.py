"""Training machinery that knows no specific architecture or dataset."""
