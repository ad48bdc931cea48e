"""The ScaleNAS multi-resolution family (HRNet-like, per-branch depth, any-to-any fusion)."""
