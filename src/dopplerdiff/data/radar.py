"""Monostatic CW/slow-time radar returns of ellipsoidal body segments, plus noise, clutter and bursts."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from dopplerdiff.data.kinematics import SEGMENTS

SPEED_OF_LIGHT = 299_792_458.0


def wavelength(carrier_ghz: float) -> float:
    """Carrier wavelength in metres (77 GHz -> 3.9 mm)."""
    return SPEED_OF_LIGHT / (carrier_ghz * 1e9)


def doppler_hz(radial_speed: float | np.ndarray, carrier_ghz: float) -> float | np.ndarray:
    """f_D = 2 v_r f_c / c (positive for a scatterer approaching the radar)."""
    return 2.0 * radial_speed * carrier_ghz * 1e9 / SPEED_OF_LIGHT


def ellipsoid_rcs(
    a: float | np.ndarray,
    b: float | np.ndarray,
    c: float | np.ndarray,
    theta: float | np.ndarray,
    phi: float | np.ndarray = 0.0,
) -> np.ndarray:
    """RCS of an ellipsoid with semi-axes a, b, c seen at aspect angles theta (from the c axis) and phi.

    sigma = pi a^2 b^2 c^2 / (a^2 sin^2(theta) cos^2(phi) + b^2 sin^2(theta) sin^2(phi) + c^2 cos^2(theta))^2;
    a sphere (a = b = c) gives pi a^2 at every aspect.
    """
    st2, ct2 = np.sin(theta) ** 2, np.cos(theta) ** 2
    den = a**2 * st2 * np.cos(phi) ** 2 + b**2 * st2 * np.sin(phi) ** 2 + c**2 * ct2
    return np.pi * a**2 * b**2 * c**2 / den**2


def body_to_world(points: np.ndarray, yaw_rad: float | np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Rotate body-frame points (..., 3) about z by ``yaw_rad`` (scalar or per point (...,)) and add
    ``offset`` (broadcast (..., 3))."""
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    x, y = points[..., 0], points[..., 1]
    return np.stack([c * x - s * y, s * x + c * y, points[..., 2]], axis=-1) + offset


def catmull_rom_upsample(x: np.ndarray, factor: int) -> np.ndarray:
    """Cubic (Catmull-Rom) upsampling along the last axis: knots x[..., 1:-2] -> ``factor`` samples each.

    Output sample m sits at knot position 1 + m / factor, so (..., Q) knots give (..., (Q - 3) * factor).
    """
    u = np.arange(factor) / factor
    w = 0.5 * np.stack(
        [-u + 2 * u**2 - u**3, 2 - 5 * u**2 + 3 * u**3, u + 4 * u**2 - 3 * u**3, -(u**2) + u**3], axis=0
    ).astype(x.dtype)  # (4, factor)
    q = x.shape[-1]
    nb = np.stack([x[..., j : q - 3 + j] for j in range(4)], axis=-1)  # (..., Q-3, 4)
    return (nb @ w).reshape(*x.shape[:-1], (q - 3) * factor)


def segment_tracks(
    world: dict[str, np.ndarray],
    height: float,
    radar_pos: np.ndarray,
    radius_scale: float = 1.0,
    ref_range: float | None = None,
    scatterers: int = 1,
    fading: tuple[np.random.Generator, float, float] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Per body segment: (range (S, Q) in m, amplitude sqrt(RCS) (S, Q)) of its ``scatterers`` ellipsoids.

    ``world`` maps joint names to world positions (Q, 3) sampled at the kinematics rate. Each segment is an
    ellipsoid between two joints with semi-axes (r, r, half length), split into ``scatterers`` shorter
    ellipsoids along its axis: a limb rotating about a joint has a velocity that grows along its length, so
    one scatterer per segment draws thin lines where measured spectrograms show filled envelopes.
    Amplitudes fall as (ref_range / R)^2. ``fading = (rng, sigma, knots_per_sample)`` multiplies each
    scatterer by a smooth log-normal amplitude process (clothing and multipath make body returns scintillate).
    """
    q = next(iter(world.values())).shape[0]
    for _, j0, j1, radius in SEGMENTS:
        p0, p1 = world[j0], world[j1]
        axis = p1 - p0
        seg_len = np.maximum(np.sqrt(np.einsum("ij,ij->i", axis, axis)), 2e-3)
        half = seg_len / (2 * scatterers)
        r = radius * height * radius_scale
        frac = (np.arange(scatterers) + 0.5) / scatterers
        centre = p0[None] + frac[:, None, None] * axis[None]  # (S, Q, 3)
        los = centre - radar_pos
        rng = np.sqrt(np.einsum("sij,sij->si", los, los))  # (S, Q)
        cos2 = np.minimum((np.einsum("ij,sij->si", axis, los) / (seg_len * rng)) ** 2, 1.0)
        # a = b = r: the phi term of the ellipsoid RCS drops out.
        amp = np.sqrt(np.pi) * r**2 * half / (r**2 * (1.0 - cos2) + half**2 * cos2)
        if ref_range is not None:
            amp = amp * (ref_range / rng) ** 2
        if fading is not None:
            frng, sigma, knots_per_sample = fading
            knots = max(2, int(np.ceil(q * knots_per_sample)) + 2)
            base = np.arange(knots) / knots_per_sample
            z = frng.standard_normal((scatterers, knots))
            amp = amp * np.exp(sigma * np.stack([np.interp(np.arange(q), base, zz) for zz in z]) - sigma**2)
        yield rng, amp


def segment_returns(
    world: dict[str, np.ndarray],
    height: float,
    lam: float,
    radar_pos: np.ndarray,
    radius_scale: float = 1.0,
    ref_range: float | None = None,
    scatterers: int = 1,
    fading: tuple[np.random.Generator, float, float] | None = None,
    upsample: int = 1,
    n_out: int | None = None,
) -> np.ndarray:
    """Complex baseband return sum_k sqrt(RCS_k) exp(-j 4 pi R_k / lambda) over the body segments.

    The scatterers are those of :func:`segment_tracks`.
    Body motion is smooth, so ranges and amplitudes are computed at the kinematics rate and upsampled by
    ``upsample`` (cubic) to the slow-time rate; only the carrier phase is evaluated per output sample.
    With ``upsample > 1`` the knots must start one kinematics step before the first output sample.
    """
    q = next(iter(world.values())).shape[0]
    n = n_out if n_out is not None else (q if upsample == 1 else (q - 3) * upsample)
    total = np.zeros(n, dtype=np.complex64)
    k = 4 * np.pi / lam
    for rng, amp in segment_tracks(world, height, radar_pos, radius_scale, ref_range, scatterers, fading):
        # Phase relative to the first sample keeps float32 accurate (|dphase| <~ 1e5 rad: error < 0.02 rad).
        phase0 = np.mod(k * rng[:, :1], 2 * np.pi)
        both = np.concatenate([k * (rng - rng[:, :1]) + phase0, amp]).astype(np.float32)
        if upsample > 1:
            both = catmull_rom_upsample(both, upsample)
        ph, a32 = both[:scatterers, :n], both[scatterers:, :n]
        total.real += np.einsum("si,si->i", a32, np.cos(ph))
        total.imag -= np.einsum("si,si->i", a32, np.sin(ph))
    return total


def add_noise_clutter(
    signal: np.ndarray,
    rng: np.random.Generator,
    snr_db: float | np.ndarray,
    clutter_db: float,
    ref_power: float,
    fs: float,
    burst_rate_hz: float = 0.0,
    burst_active: np.ndarray | None = None,
    burst_segment_s: float = 10.0,
) -> np.ndarray:
    """Add complex white noise (SNR vs ``ref_power``; ``snr_db`` may vary per sample), a static clutter
    phasor and broadband bursts. ``burst_active`` (one flag per ``burst_segment_s``) limits the bursts to
    episodes, so interference comes and goes within a recording."""
    n = signal.shape[0]
    noise_power = ref_power / 10 ** (np.asarray(snr_db, dtype=np.float64) / 10)
    scale = np.sqrt(noise_power / 2).astype(np.float32)
    noise = (rng.standard_normal(n, dtype=np.float32) + 1j * rng.standard_normal(n, dtype=np.float32)) * scale
    out = signal + noise.astype(np.complex64)
    # Static clutter (walls, the treadmill frame) with a slow amplitude wobble: a line at zero Doppler.
    wobble = 1.0 + 0.05 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * np.arange(n) / fs + rng.uniform(0, 6.3))
    clutter_amp = np.sqrt(ref_power * 10 ** (clutter_db / 10))
    out = out + (clutter_amp * wobble * np.exp(1j * rng.uniform(0, 2 * np.pi))).astype(np.complex64)
    if burst_rate_hz > 0:
        # Short broadband interference (vertical stripes in real spectrograms).
        mean_noise = float(np.mean(noise_power))
        count = rng.poisson(burst_rate_hz * n / fs)
        for _ in range(count):
            length = int(rng.uniform(0.01, 0.05) * fs)
            start = int(rng.integers(0, max(1, n - length)))
            level = np.sqrt(mean_noise * 10 ** (rng.uniform(1.5, 3.0)) / 2)
            burst = rng.standard_normal(length) + 1j * rng.standard_normal(length)
            if burst_active is not None:
                seg = min(int(start / fs / burst_segment_s), len(burst_active) - 1)
                if not burst_active[seg]:
                    continue
            out[start : start + length] += (level * burst).astype(np.complex64)
    return out
