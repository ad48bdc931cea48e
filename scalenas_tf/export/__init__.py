"""Export of extracted subnets: SavedModel (`serving_default`) and TFLite, with parity checks."""
