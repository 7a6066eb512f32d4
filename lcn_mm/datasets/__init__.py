"""Data-pipeline transforms for overhead imagery (registered in mmengine's ``TRANSFORMS``)."""
from .transforms import RandomTranspose

__all__ = ['RandomTranspose']
