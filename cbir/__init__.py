"""cbir: content-based image retrieval with a denoising autoencoder and Qdrant."""

__version__ = "0.1.0"

import os as _os

# TensorFlow's C++ start-up chatter is noise to a CLI user; real errors still surface as exceptions.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
