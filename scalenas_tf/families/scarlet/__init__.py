"""The SCARLET mobile family (19 layers x 13 choices, identity as a foldable ELS conv)."""
