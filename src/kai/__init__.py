"""Kai: a self-hosted platform for image-classification datasets and models."""

__version__ = "0.1.0"
