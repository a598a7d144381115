"""`ingest denoise`: the tutorial's demo - a digit, its noisy version, the model's reconstruction."""

from __future__ import annotations

import numpy as np
from PIL import Image

from cbir import render
from cbir.modelfiles import KerasModel
from ingest.encoders.dae import add_noise


def denoise_figure(autoencoder: KerasModel, digit: np.ndarray, noise: float = 0.5, seed: int = 0) -> Image.Image:
    """Three panels side by side: original, noisy (x + noise*N(0,1), clipped), reconstruction."""
    clean = np.asarray(digit, dtype=np.float32).reshape(1, 28, 28, 1)
    noisy = add_noise(clean, noise, np.random.default_rng(seed))
    restored = autoencoder.reconstruct(noisy)
    return render.grid([[(clean, "original"), (noisy, f"noisy ({noise:g})"), (restored, "denoised")]])
