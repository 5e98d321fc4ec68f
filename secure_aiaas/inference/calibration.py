"""HE calibration inputs, stored with a model version as the asset ``he-calibration.npy``.

The HE compiler sizes a plan's headroom from a few representative raw inputs. The trainer
stores them with the model (listed in the manifest's ``assets`` with their SHA-256, like every
other file), so serving never needs the training data. The file is a plain ``.npy`` array
(float32 or float64, shape ``(rows, *input_shape)``), read with ``allow_pickle=False``.
Importing this module never imports torch.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import numpy.typing as npt

from secure_aiaas.errors import InputError
from secure_aiaas.inference.manifest import Manifest

HE_CALIBRATION_ASSET = "he-calibration.npy"
MAX_CALIBRATION_ROWS = 4096
MAX_CALIBRATION_BYTES = 64 << 20


def encode_calibration(inputs: npt.ArrayLike) -> bytes:
    """Calibration rows as ``.npy`` bytes, in their own float dtype (float64 if not float)."""
    array = np.asarray(inputs)
    if array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float64)
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def decode_calibration(data: bytes, manifest: Manifest) -> npt.NDArray[Any]:
    """Parse and check calibration bytes against the model's input spec; InputError if unfit."""
    where = f"{manifest.id} asset {HE_CALIBRATION_ASSET}"
    if len(data) > MAX_CALIBRATION_BYTES:
        raise InputError(f"{where}: larger than {MAX_CALIBRATION_BYTES >> 20} MiB")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{where}: not a .npy array") from exc
    if not isinstance(array, np.ndarray) or array.dtype not in (np.float32, np.float64):
        raise InputError(f"{where}: expected a float32 or float64 array")
    feature_shape = manifest.inputs[0].shape[1:]
    if array.ndim != 1 + len(feature_shape) or any(
        want not in (-1, got) for want, got in zip(feature_shape, array.shape[1:], strict=True)
    ):
        raise InputError(f"{where}: shape {list(array.shape)} does not fit input "
                         f"{manifest.inputs[0].shape}")  # fmt: skip
    if not 1 <= len(array) <= MAX_CALIBRATION_ROWS:
        raise InputError(f"{where}: expected 1..{MAX_CALIBRATION_ROWS} rows")
    if not np.isfinite(array).all():
        raise InputError(f"{where}: values must be finite")
    return array
