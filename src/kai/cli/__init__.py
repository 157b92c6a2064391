"""The ``kai`` command line: one module per noun, all output in ``_presentation``."""
