"""Datasets: procedural Shapes (training data for the shipped generators) and a user's image folder."""

from .folder import FolderImages
from .shapes import FACTOR_NAMES, SHAPE_NAMES, Shapes, export_jpeg, factors_to_dict, num_classes

__all__ = ["FACTOR_NAMES", "SHAPE_NAMES", "FolderImages", "Shapes", "export_jpeg", "factors_to_dict", "num_classes"]
