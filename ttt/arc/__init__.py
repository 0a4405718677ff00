"""ARC tasks, grids, transformations and text formats. Pure Python + numpy: no torch here."""
