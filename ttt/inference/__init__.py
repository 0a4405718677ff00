"""Augmented inference: views, the ARC decoder (cached prompts, reduced head, greedy or
threshold search), inversion, voting and rescoring."""
