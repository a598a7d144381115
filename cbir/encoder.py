"""The query-time encoder: the model's code layer exported to LiteRT, run without TensorFlow.

`import tensorflow` alone costs seconds; the LiteRT interpreter starts in a fraction of one and
gives the same codes (tests pin the difference to <= 1e-5). Keras stays for training.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from cbir.errors import CbirError
from cbir.modelfiles import exported_path, model_id, provenance_encoder, sha256_bytes
from cbir.safeio import read_regular

MAX_MODEL_BYTES = 512 * 2**20  # an encoder is a few MB; anything near this is not one



def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) or float in [0, 1] -> float32 (N, 28, 28, 1) in [0, 1]."""
    x = np.asarray(images)
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    return x.reshape(len(x), 28, 28, 1)


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence C++ chatter written straight to fd 2 (LiteRT's "Created XNNPACK delegate")."""
    try:
        saved = os.dup(2)
    except OSError:  # no usable stderr: nothing to silence
        yield
        return
    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class Encoder:
    """Encode 28x28 images to the model's codes with its LiteRT export.

    name: the registered encoder the model is (from its provenance), else the one asked for.
    """

    def __init__(self, model_path: Path, threads: int | None = None, name: str | None = None):
        self.path = Path(model_path)
        if not self.path.is_file():
            raise CbirError(
                f"model file {self.path} does not exist; train one with `ingest train` "
                "or unset CBIR_MODEL / --model to use the packaged default"
            )
        lite = exported_path(self.path)
        if not lite.is_file():
            raise CbirError(f"{lite} is missing; export the model's encoder with `ingest export --model {self.path}`")
        try:
            content = read_regular(lite, MAX_MODEL_BYTES)  # read once: the bytes hashed are the bytes run
        except OSError as exc:
            raise CbirError(f"cannot read {lite}: {exc.strerror or exc}") from exc
        from ai_edge_litert.interpreter import Interpreter

        try:
            with _quiet_native_stderr():
                self._interp = Interpreter(model_content=content, num_threads=threads or os.cpu_count() or 1)
                self._interp.allocate_tensors()
            inp = self._interp.get_input_details()[0]
            out = self._interp.get_output_details()[0]
        except (ValueError, RuntimeError, IndexError) as exc:
            raise CbirError(f"cannot load {lite}: {str(exc).splitlines()[0][:200]}; re-export it with "
                            f"`ingest export --model {self.path}`") from exc
        if tuple(inp["shape"][1:]) != (28, 28, 1):
            raise CbirError(f"{lite} takes inputs of shape {tuple(int(d) for d in inp['shape'][1:])}, not 28x28x1 "
                            "images; cbir's encoders take MNIST-sized images (train one with `ingest train`)")
        if len(out["shape"]) != 2:
            raise CbirError(f"{lite} outputs arrays of shape {tuple(int(d) for d in out['shape'][1:])}, not vectors; "
                            "an encoder must output one flat vector per image (train one with `ingest train`)")
        self._in = inp["index"]
        self._out = out["index"]
        self.dim = int(out["shape"][-1])
        self.model_id = model_id(self.path)
        self.encoder_sha256 = sha256_bytes(content)
        self.name = provenance_encoder(self.path) or name or self.path.stem
        self._batch = 0

    def encode(self, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Images (N, 28, 28) uint8 or float in [0, 1] -> codes (N, dim) float32."""
        x = to_float(images)
        out = np.empty((len(x), self.dim), dtype=np.float32)
        for start in range(0, len(x), batch_size):
            batch = x[start : start + batch_size]
            if len(batch) != self._batch:  # re-plan only when the batch shape changes
                self._interp.resize_tensor_input(self._in, [len(batch), 28, 28, 1])
                self._interp.allocate_tensors()
                self._batch = len(batch)
            self._interp.set_tensor(self._in, batch)
            self._interp.invoke()
            out[start : start + len(batch)] = self._interp.get_tensor(self._out)
        return out

    def expected(self, dataset: str | None = None):
        """What a collection built by this encoder records (cbir.store.Expected)."""
        from cbir.store.collection import Expected

        return Expected(self.model_id, self.encoder_sha256, self.dim, self.name, dataset)


