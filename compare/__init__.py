"""The cross-check: builds manual/ and torch_ref/ from one set of shared weights and compares them.

Importing ``compare`` is cheap (no torch); ``compare.harness`` imports both implementations.
"""
