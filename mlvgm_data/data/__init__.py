"""Datasets: procedural Shapes (training data for the shipped Shapes generators), Fashion-MNIST
(from its IDX files) and a user's image folder."""

from .fashion_mnist import CLASS_NAMES as FASHION_CLASSES
from .fashion_mnist import FashionMNIST, fashion_mnist_tensors, find_fashion_mnist, read_idx
from .folder import FolderImages
from .shapes import FACTOR_NAMES, SHAPE_NAMES, Shapes, export_jpeg, factors_to_dict, num_classes

__all__ = ["FACTOR_NAMES", "FASHION_CLASSES", "SHAPE_NAMES", "FashionMNIST", "FolderImages", "Shapes", "export_jpeg",
           "factors_to_dict", "fashion_mnist_tensors", "find_fashion_mnist", "num_classes", "read_idx"]
