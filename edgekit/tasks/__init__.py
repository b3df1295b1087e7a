"""What a model's numbers mean: pre- and post-processing, the same for every runtime.

Modules here import numpy only (OpenCV lazily, for pixel resizing): never
TensorFlow or a model runtime.
"""
from __future__ import annotations
