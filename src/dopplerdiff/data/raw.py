"""Raw FMCW recordings in: TI DCA1000 ``.bin`` captures and IQ arrays (``.npy`` / ``.mat``).

Every reader returns one cube, complex64 (chirps, adc_samples, rx) = slow time x fast time x receiver.

DCA1000 ``.bin`` layout (TI app note SWRA581, "mmWave Radar Device ADC Raw Data Capture", its MATLAB
``readDCA1000`` scripts; the DCA1000EVM user guide's "IIQQ" format). The file is little-endian int16 with
no header (the packet-reordered ``adc_data.bin`` that mmWave Studio / the DCA1000 CLI write):

* ``2lane`` (xWR16xx / xWR18xx / xWR68xx, two LVDS lanes): complex data comes in groups of four values
  ``I(n) I(n+1) Q(n) Q(n+1)`` ("2I is followed by 2Q"); the de-interleaved samples are ordered chirp by
  chirp, and within a chirp receiver by receiver (all ``adc_samples`` of rx0, then rx1, ...).
  Real data: the same chirp / receiver / sample order without the I/Q grouping.
* ``4lane`` (xWR12xx / xWR14xx, one LVDS lane per receiver): each ADC sample instant is one group of all
  receivers, ``I(rx0) .. I(rx{R-1}) Q(rx0) .. Q(rx{R-1})`` (real: ``x(rx0) .. x(rx{R-1})``); the
  instants run sample by sample through each chirp, chirp after chirp.

12- and 14-bit captures hold the ADC code in the low bits of each int16; values are read modulo 2^bits
and sign-extended, as TI's scripts do (``x - 2^bits`` where ``x > 2^(bits-1) - 1``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dopplerdiff.config.radar import RadarConfig
from dopplerdiff.errors import DataError

RAW_EXTS = (".bin", ".npy", ".mat")


def _values_per_chirp(radar: RadarConfig) -> int:
    return radar.adc_samples * radar.rx * (2 if radar.complex else 1)


def sign_extend(codes: np.ndarray, bits: int) -> np.ndarray:
    """int16 words -> signed ``bits``-bit ADC values (float32)."""
    x = codes.astype(np.int32)
    if bits < 16:
        x = x & ((1 << bits) - 1)
        x = np.where(x > (1 << (bits - 1)) - 1, x - (1 << bits), x)
    return x.astype(np.float32)


def decode_dca1000(words: np.ndarray, radar: RadarConfig) -> np.ndarray:
    """int16 stream (a whole number of chirps) -> complex64 (chirps, adc_samples, rx)."""
    n, r = radar.adc_samples, radar.rx
    x = sign_extend(words, radar.bits)
    if radar.lane_layout == "2lane":
        if radar.complex:
            g = x.reshape(-1, 2, 2)  # (pairs, I/Q, sample in pair)
            x = (g[:, 0, :] + 1j * g[:, 1, :]).reshape(-1)
        return np.ascontiguousarray(x.reshape(-1, r, n).transpose(0, 2, 1)).astype(np.complex64)
    if radar.complex:
        g = x.reshape(-1, 2, r)  # (instants, I/Q, rx)
        x = g[:, 0, :] + 1j * g[:, 1, :]
    return x.reshape(-1, n, r).astype(np.complex64)


def encode_dca1000(cube: np.ndarray, radar: RadarConfig) -> np.ndarray:
    """Inverse of :func:`decode_dca1000` for integer-valued cubes: (chirps, adc_samples, rx) -> int16."""
    n, r = radar.adc_samples, radar.rx
    if cube.ndim != 3 or cube.shape[1:] != (n, r):
        raise ValueError(f"cube must be (chirps, {n}, {r}), got {cube.shape}")
    if radar.lane_layout == "2lane":
        x = cube.transpose(0, 2, 1).reshape(-1)
        if radar.complex:
            p = x.reshape(-1, 2)
            x = np.stack([p.real, p.imag], axis=1).reshape(-1)
    else:
        x = cube.reshape(-1, r)
        x = np.concatenate([x.real, x.imag], axis=1).reshape(-1) if radar.complex else x.reshape(-1)
    x = np.real(x)
    # 12/14-bit codes are written sign-extended, which the reader accepts like the zero-padded form.
    return np.round(x).astype(np.int16)


def read_dca1000(path: Path, radar: RadarConfig) -> np.ndarray:
    """A DCA1000 ``.bin`` capture as (chirps, adc_samples, rx); a size that is not a whole number of frames
    for ``radar`` is one DataError naming the file and the sizes."""
    path = Path(path)
    size = path.stat().st_size
    frame_bytes = 2 * _values_per_chirp(radar) * radar.chirps_per_frame
    if size == 0 or size % frame_bytes:
        raise DataError(
            f"raw file '{path}' has {size} bytes, which is not a whole number of frames for the radar config "
            f"({frame_bytes} bytes per frame = 2 bytes x {radar.adc_samples} samples x {radar.rx} rx x "
            f"{'2 (IQ)' if radar.complex else '1 (real)'} x {radar.chirps_per_frame} chirps; "
            f"{size % frame_bytes} bytes left over)"
        )
    words = np.fromfile(path, dtype="<i2")
    if radar.lane_layout == "2lane" and radar.complex and words.size % 4:
        raise DataError(f"raw file '{path}': complex 2-lane data needs a multiple of 4 int16 values")
    return decode_dca1000(words, radar)


def _array_from_mat(path: Path) -> np.ndarray:
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path))
    except Exception as exc:  # scipy raises several types for damaged files
        raise DataError(f"raw file '{path}' is not a readable MATLAB file: {exc}") from None
    arrays = {k: v for k, v in mat.items() if not k.startswith("__") and isinstance(v, np.ndarray)
              and v.dtype.kind in "iufc" and v.ndim in (2, 3)}
    if len(arrays) != 1:
        raise DataError(f"raw file '{path}' must hold exactly one 2-D or 3-D numeric variable "
                        f"(slow time x fast time x rx), found {sorted(arrays) or 'none'}")
    return next(iter(arrays.values()))


def read_array(path: Path, radar: RadarConfig) -> np.ndarray:
    """IQ array (slow time, fast time[, rx]) from ``.npy`` / ``.mat``, checked against ``radar``."""
    path = Path(path)
    if path.suffix.lower() == ".mat":
        x = _array_from_mat(path)
    else:
        try:
            x = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"raw file '{path}' is not a readable .npy array: {exc}") from None
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or x.dtype.kind not in "iufc":
        raise DataError(f"raw file '{path}' must be a numeric (slow time, fast time, rx) array, "
                        f"got shape {x.shape} dtype {x.dtype}")
    want = (radar.adc_samples, radar.rx)
    if x.shape[1:] != want:
        raise DataError(f"raw file '{path}' has shape {x.shape}; the radar config needs "
                        f"(chirps, adc_samples={want[0]}, rx={want[1]})")
    if x.shape[0] < 2 or not np.all(np.isfinite(x)):
        raise DataError(f"raw file '{path}' needs >= 2 chirps of finite values")
    return x.astype(np.complex64)


def read_recording(path: Path, radar: RadarConfig) -> np.ndarray:
    """Any supported raw file as complex64 (chirps, adc_samples, rx)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"raw file '{path}' does not exist")
    suffix = path.suffix.lower()
    if suffix == ".bin":
        return read_dca1000(path, radar)
    if suffix in (".npy", ".mat"):
        return read_array(path, radar)
    raise DataError(f"raw file '{path}' has an unsupported type (supported: {', '.join(RAW_EXTS)})")
