"""Fixtures of the image tests: hand-made layers, a real registry, test images."""
