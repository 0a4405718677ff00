"""Augmented inference: views, batched generation, inversion, voting, product-of-experts scoring."""
