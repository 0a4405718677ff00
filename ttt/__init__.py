"""Test-time training (TTT) for ARC-AGI."""
