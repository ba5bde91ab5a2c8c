"""The simulator's walking people as raw FMCW captures (DCA1000 ``.bin``), next to its own spectrograms.

The body-segment scatterers of :func:`radar.segment_tracks` become FMCW returns: chirp m, fast-time sample
n (t_n = n / fs) of receiver r holds sum_k a_k[m] exp(j (4 pi R_k[m] / lambda + 2 pi f_k[m] t_n)) with the
beat frequency f_k = 2 R_k slope / c (the IF of mixing the transmitted chirp with its echo; the range
migration within one chirp is neglected). Receivers sit half a wavelength apart with the person on
boresight, so they see the same signal. Chirp m is slow-time sample m of the CW simulator, so processing
the capture with the same STFT settings reproduces :func:`simulate.simulate_recording`'s spectrogram of
the same motion (without its noise, clutter and bursts).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from dopplerdiff.config.radar import SPEED_OF_LIGHT, RadarConfig
from dopplerdiff.config.simulate import SimulateConfig
from dopplerdiff.data import radar as rad
from dopplerdiff.data import raw, simulate, spectrogram
from dopplerdiff.utils.io import atomic_write_bytes

_BLOCK = 2048  # chirps synthesised at a time (bounds the (S, chirps, samples) temporary)


def matching_config(cfg: SimulateConfig, radar: RadarConfig) -> SimulateConfig:
    """``cfg`` with the carrier, PRF and the STFT / window / image settings of the radar config."""
    p = radar.processing
    return dataclasses.replace(
        cfg, carrier_ghz=radar.carrier_ghz, prf_hz=radar.prf_hz, window_s=p.window_s, hop_s=p.hop_s,
        time_bins=p.time_bins, size=p.size, stft_window_s=p.stft_window_s, stft_taper=p.stft_taper,
        dynamic_range_db=p.dynamic_range_db, ref_quantile=p.ref_quantile, normalize="window",
        kinematics_upsample=max(cfg.kinematics_upsample, 2),  # chirp i must sit at knot 1 + i / up
    )


def fmcw_cube(tracks: list[tuple[np.ndarray, np.ndarray]], radar: RadarConfig) -> np.ndarray:
    """Scatterer (range, amplitude) tracks, each (S, chirps), -> complex128 IF cube (chirps, samples, rx)."""
    chirps = tracks[0][0].shape[1]
    t = np.arange(radar.adc_samples) / radar.fs_hz
    k_phase = 4 * np.pi / radar.wavelength_m
    k_beat = 2 * np.pi * 2 * radar.slope_hz_per_s / SPEED_OF_LIGHT
    out = np.zeros((chirps, radar.adc_samples), np.complex128)
    for lo in range(0, chirps, _BLOCK):
        sl = slice(lo, lo + _BLOCK)
        for rng, amp in tracks:
            r, a = rng[:, sl], amp[:, sl]
            carrier = a * np.exp(1j * np.mod(k_phase * r, 2 * np.pi))  # (S, M)
            out[sl] += np.einsum("sm,smn->mn", carrier, np.exp(1j * k_beat * r[:, :, None] * t))
    return np.repeat(out[:, :, None], radar.rx, axis=2)


def to_adc(
    cube: np.ndarray, radar: RadarConfig, rng: np.random.Generator, snr_db: float | None
) -> np.ndarray:
    """Scale to half the ADC's full scale, add white noise (``snr_db`` per sample), round to codes."""
    x = cube if radar.complex else cube.real
    if snr_db is not None:
        sigma = np.sqrt(np.mean(np.abs(x) ** 2) / 10 ** (snr_db / 10) / (2 if radar.complex else 1))
        noise = rng.standard_normal(x.shape)
        x = x + sigma * (noise + 1j * rng.standard_normal(x.shape) if radar.complex else noise)
    full = 2 ** (radar.bits - 1) - 1
    peak = max(float(np.max(np.abs(x.real))), float(np.max(np.abs(x.imag))), 1e-30)
    x = x * (0.5 * full / peak)
    return np.round(x.real) + (1j * np.round(x.imag) if radar.complex else 0)


def simulate_raw_recording(
    cfg: SimulateConfig, radar: RadarConfig, k: int, r: int, n_windows: int, snr_db: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Recording r of identity k as ADC codes (chirps, adc_samples, rx), a whole number of frames, and the
    simulator's own (n_windows, size, size) spectrogram of the same motion."""
    cfg = matching_config(cfg, radar)
    person = simulate.draw_person(cfg, k)
    rec = simulate.draw_recording(cfg, person, k, r)
    fs, up = cfg.prf_hz, cfg.kinematics_upsample
    dt_col = cfg.window_s / cfg.time_bins
    hop_cols = int(round(cfg.hop_s / dt_col))
    total_cols = (n_windows - 1) * hop_cols + cfg.time_bins
    nperseg = max(8, int(round(cfg.stft_window_s * fs)))
    cpf = radar.chirps_per_frame
    length = -(-(int(np.ceil(total_cols * dt_col * fs)) + nperseg + 1) // cpf) * cpf
    # As simulate_recording: knots one kinematics step before the first chirp, chirp i at (i - nperseg/2)/fs.
    t = ((np.arange(int(np.ceil(length / up)) + 3) - 1) * up - nperseg / 2) / fs
    world = simulate._body_motion(cfg, person, rec, t, np.random.default_rng([cfg.seed, 3, k, r]))
    args = (world, person.walker.height)
    pos = np.array([0.0, 0.0, simulate.RADAR_HEIGHT_M])
    kw = dict(radius_scale=person.girth, ref_range=rec.range_m, scatterers=cfg.scatterers_per_segment)
    sig = rad.segment_returns(*args, rad.wavelength(cfg.carrier_ghz), pos, upsample=up, n_out=length, **kw)
    tracks = [(rad.catmull_rom_upsample(rng, up)[:, :length],
               rad.catmull_rom_upsample(amp, up)[:, :length].astype(np.float64))
              for rng, amp in rad.segment_tracks(*args, pos, **kw)]
    starts = spectrogram.frame_starts(total_cols, dt_col, fs)
    power = spectrogram.stft_power(sig, nperseg, starts, spectrogram.taper(cfg.stft_taper, nperseg))
    reference = spectrogram.power_to_windows(power, n_windows, hop_cols, cfg.time_bins, cfg.size,
                                             cfg.dynamic_range_db, cfg.ref_quantile)
    codes = to_adc(fmcw_cube(tracks, radar), radar, np.random.default_rng([cfg.seed, 4, k, r]), snr_db)
    return codes, reference


def write_raw_recording(path: Path, codes: np.ndarray, radar: RadarConfig) -> None:
    """Write ADC codes (chirps, adc_samples, rx) as a DCA1000 ``.bin`` capture."""
    atomic_write_bytes(Path(path), raw.encode_dca1000(codes, radar).astype("<i2").tobytes())
