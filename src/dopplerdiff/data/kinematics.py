"""Boulic-Thalmann walking kinematics: joint trajectories per gait phase and body-segment endpoints.

Conventions: body frame x forward, y left, z up, origin on the ground under the spine base; lengths in
metres, angles in degrees in the trajectory tables. Gait phase is measured in cycles (one cycle = two steps,
right heel strike at phase 0); the left side runs half a cycle behind the right.
Reference: R. Boulic, N. Magnenat-Thalmann, D. Thalmann, "A global human walking model with real-time
kinematic personification", The Visual Computer 6 (1990), as summarised in V.C. Chen, "The Micro-Doppler
Effect in Radar".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Segment lengths as fractions of body height (Boulic / Chen anthropometry).
HEAD, TORSO, SHOULDER_W, HIP_W = 0.130, 0.288, 0.259, 0.191
THIGH, SHIN, FOOT, UPPER_ARM, FOREARM = 0.245, 0.246, 0.143, 0.188, 0.152
TABLE_POINTS = 512  # samples per gait cycle of the precomputed trajectory tables


@dataclass(frozen=True)
class Walker:
    """Stable anatomy and gait style of one person (all factors are 1.0 for the textbook walker)."""

    height: float = 1.75
    leg_scale: float = 1.0  # thigh + shin length factor
    arm_scale: float = 1.0
    hip_gain: float = 1.0  # amplitude of hip flexion about its mean
    knee_gain: float = 1.0
    arm_gain: float = 1.0  # amplitude of shoulder swing
    elbow_gain: float = 1.0
    bounce_gain: float = 1.0  # vertical / lateral translation and pelvis rotations
    asymmetry: float = 0.0  # left swing amplitude = (1 + asymmetry) x right
    lr_phase: float = 0.0  # left side lags by 0.5 + lr_phase cycles (a limp-like timing asymmetry)

    @property
    def leg_length(self) -> float:
        """H_t: hip-to-ground length used to normalise speed (0.491 H for the textbook walker)."""
        return (THIGH + SHIN) * self.height * self.leg_scale


def relative_velocity(speed: float | np.ndarray, walker: Walker) -> float | np.ndarray:
    """rv = v / H_t (walking is roughly 0.5-1.8)."""
    return speed / walker.leg_length


def cycle_duration(rv: float | np.ndarray) -> float | np.ndarray:
    """Seconds per gait cycle: cycle length 1.346 sqrt(rv) (units of H_t) divided by rv."""
    return 1.346 * np.sqrt(rv) / rv


def pchip(x: np.ndarray, y: np.ndarray, xq: np.ndarray) -> np.ndarray:
    """Monotone piecewise-cubic Hermite interpolation (Fritsch-Carlson slopes), as in Boulic's curves."""
    h = np.diff(x)
    delta = np.diff(y) / h
    d = np.empty_like(y, dtype=np.float64)
    d[0], d[-1] = delta[0], delta[-1]
    w1, w2 = 2 * h[1:] + h[:-1], h[1:] + 2 * h[:-1]
    same = delta[:-1] * delta[1:] > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        d[1:-1] = np.where(same, (w1 + w2) / (w1 / delta[:-1] + w2 / delta[1:]), 0.0)
    i = np.clip(np.searchsorted(x, xq, side="right") - 1, 0, len(x) - 2)
    t = (xq - x[i]) / h[i]
    h00, h10, h01, h11 = 2 * t**3 - 3 * t**2 + 1, t**3 - 2 * t**2 + t, -2 * t**3 + 3 * t**2, t**3 - t**2
    return h00 * y[i] + h10 * h[i] * d[i] + h01 * y[i + 1] + h11 * h[i] * d[i + 1]


def _periodic_pchip(xs: list[float], ys: list[float], grid: np.ndarray) -> np.ndarray:
    """Shape-preserving cubic through control points repeated over three cycles, sampled on [0, 1)."""
    x = np.concatenate([np.asarray(xs) - 1, xs, np.asarray(xs) + 1])
    y = np.tile(ys, 3)
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    keep = np.concatenate([[True], np.diff(x) > 1e-9])  # coincident points (x1 + 1 == x3) appear once
    return pchip(x[keep], y[keep].astype(np.float64), grid)


def _pelvis(rv: float, t: np.ndarray, slow: bool, duty: float) -> dict[str, np.ndarray]:
    """Translations of the spine base (units of H_t) and pelvis rotations (degrees) over one cycle."""
    out: dict[str, np.ndarray] = {}
    # Translations of the spine base, in units of H_t.
    out["vertical"] = -0.015 * rv + 0.015 * rv * np.sin(2 * np.pi * (2 * t - 0.35))
    lat = -0.128 * rv**2 + 0.128 * rv if slow else -0.032
    out["lateral"] = lat * np.sin(2 * np.pi * (t - 0.1))
    fwd = -0.084 * rv**2 + 0.084 * rv if slow else -0.021
    out["forward"] = fwd * np.sin(2 * np.pi * (2 * t + 2 * (0.625 - duty)))
    # Pelvis rotations (degrees): forward tilt, list towards the swing leg, torsion.
    tilt = -8 * rv**2 + 8 * rv if slow else 2.0
    out["tilt"] = -tilt + tilt * np.sin(2 * np.pi * (2 * t - 0.1))
    a2 = 1.66 if not slow else 3.32 * rv  # the pelvis falls on the side of the swinging leg
    out["list"] = np.select(
        [t < 0.15, t < 0.5, t < 0.65],
        [-a2 + a2 * np.cos(2 * np.pi * 10 * t / 3), -a2 - a2 * np.cos(2 * np.pi * 10 * (t - 0.15) / 7),
         a2 - a2 * np.cos(2 * np.pi * 10 * (t - 0.5) / 3)],
        a2 + a2 * np.cos(2 * np.pi * 10 * (t - 0.65) / 7),
    )
    out["torsion"] = -4 * rv * np.cos(2 * np.pi * t)
    return out


def _legs(rv: float, t: np.ndarray, slow: bool, fast: bool, c: float, duty: float) -> dict[str, np.ndarray]:
    """Hip, knee and ankle flexion (degrees) over one cycle from Boulic's control points."""
    out: dict[str, np.ndarray] = {}
    # Hip flexion: 3 control points.
    if slow:
        hx, hy = [-0.1, 0.5, 0.9], [50 * rv, -30 * rv, 50 * rv]
    elif not fast:
        hx, hy = [-0.1, 0.5, 0.9], [25.0, -15.0, 25.0]
    else:
        hx, hy = [0.2 * c - 0.1, 0.5, 0.9], [5 * c + 25, -15.0, 6 * c + 25]
    out["hip"] = _periodic_pchip(hx, hy, t)
    # Knee flexion: 4 control points (the big peak is the swing phase).
    if slow:
        kx, ky = [0.17, 0.4, 0.75, 1.0], [3.0, 3.0, 140 * rv, 3.0]
    elif not fast:
        kx, ky = [0.17, 0.4, 0.75, 1.0], [3.0, 3.0, 70.0, 3.0]
    else:
        kx = [-0.05 * c + 0.17, 0.4, -0.05 * c + 0.75, -0.03 * c + 1.0]
        ky = [22 * c + 3, 3.0, -5 * c + 70, 3 * c + 3]
    out["knee"] = _periodic_pchip(kx, ky, t)
    # Ankle flexion: 5 control points, the fourth at the end of support.
    if slow:
        ax, ay = [0.0, 0.08, 0.5, duty, 0.85], [-3.0, -30 * rv - 3, 22 * rv - 3, -34 * rv - 3, -3.0]
    elif not fast:
        ax, ay = [0.0, 0.08, 0.5, duty, 0.85], [-3.0, -18.0, 8.0, -20.0, -3.0]
    else:
        ax = [0.0, 0.08, -0.1 * c + 0.5, duty, 0.85]
        ay = [5 * c - 3, 4 * c - 18, -3 * c + 8, -8 * c - 20, 5 * c - 3]
    ax_sorted = sorted(zip(ax, ay, strict=True))
    out["ankle"] = _periodic_pchip([p[0] for p in ax_sorted], [p[1] for p in ax_sorted], t)
    return out


def _upper_body(rv: float, t: np.ndarray, slow: bool, fast: bool, c: float) -> dict[str, np.ndarray]:
    """Thorax torsion, shoulder swing and elbow flexion (degrees) over one cycle."""
    out: dict[str, np.ndarray] = {}
    # Upper body: thorax torsion, shoulder swing, elbow flexion.
    r = rv / 3
    out["thorax"] = _periodic_pchip([0.1, 0.4, 0.6, 0.9], [4 * r, -4.5 * r, -4 * r, 4.5 * r], t)
    ash = 9.88 * rv
    out["shoulder"] = 3 - ash / 2 - ash * np.cos(2 * np.pi * t)
    if slow:
        ex, ey = [0.05, 0.5, 0.9], [6 * rv + 3, 34 * rv + 3, 10 * rv + 3]
    elif not fast:
        b = (rv - 0.5) / 0.8
        ex, ey = [0.05, 0.01 * b + 0.5, 0.9], [8 * b + 6, 24 * b + 20, 9 * b + 8]
    else:
        ex, ey = [0.05, 0.04 * c + 0.51, -0.1 * c + 0.9], [-6 * c + 14, 26 * c + 44, -6 * c + 17]
    out["elbow"] = _periodic_pchip(ex, ey, t)
    return out


def trajectory_tables(rv: float, n: int = TABLE_POINTS) -> dict[str, np.ndarray]:
    """Boulic's trajectories over one cycle for relative velocity ``rv`` (gaits a < 0.5 <= b < 1.3 <= c)."""
    rv = float(np.clip(rv, 0.1, 3.0))
    t = np.arange(n) / n
    c = (rv - 1.3) / 1.7  # interpolation coordinate of the fast gait
    slow, fast = rv < 0.5, rv >= 1.3
    duty = (0.752 * (1.346 / np.sqrt(rv)) - 0.143) / (1.346 / np.sqrt(rv))  # relative support duration
    return {**_pelvis(rv, t, slow, duty), **_legs(rv, t, slow, fast, c, duty),
            **_upper_body(rv, t, slow, fast, c)}


def _lookup(table: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Periodic linear lookup of a one-cycle table at (continuous) phases given in cycles."""
    n = table.shape[0]
    pos = np.mod(phase, 1.0) * n
    i0 = np.floor(pos).astype(np.int64) % n
    frac = pos - np.floor(pos)
    return table[i0] * (1 - frac) + table[(i0 + 1) % n] * frac


def _sagittal(angle_deg: np.ndarray, down: bool = True) -> np.ndarray:
    """Unit vectors in the x-z plane: ``down`` rotates -z towards +x; otherwise +x towards +z."""
    a = np.deg2rad(angle_deg)
    if down:
        return np.stack([np.sin(a), np.zeros_like(a), -np.cos(a)], axis=-1)
    return np.stack([np.cos(a), np.zeros_like(a), np.sin(a)], axis=-1)


def _rot_z(deg: np.ndarray, v: np.ndarray) -> np.ndarray:
    a = np.deg2rad(deg)[:, None]
    c, s = np.cos(a), np.sin(a)
    return np.concatenate([c * v[:, :1] - s * v[:, 1:2], s * v[:, :1] + c * v[:, 1:2], v[:, 2:]], axis=1)


def _rot_x(deg: np.ndarray, v: np.ndarray) -> np.ndarray:
    a = np.deg2rad(deg)[:, None]
    c, s = np.cos(a), np.sin(a)
    return np.concatenate([v[:, :1], c * v[:, 1:2] - s * v[:, 2:], s * v[:, 1:2] + c * v[:, 2:]], axis=1)


def _rot_y(deg: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate about y; positive angles tip +z towards +x (a forward lean)."""
    a = np.deg2rad(deg)[:, None]
    c, s = np.cos(a), np.sin(a)
    return np.concatenate([c * v[:, :1] + s * v[:, 2:], v[:, 1:2], -s * v[:, :1] + c * v[:, 2:]], axis=1)


@dataclass(frozen=True)
class ArmCarriage:
    """How the arms are carried; per-side pairs are (right, left), 1.0 / 0.0 = the free swing."""

    swing: tuple[float, float] = (1.0, 1.0)  # shoulder swing amplitude factor
    elbow_swing: tuple[float, float] = (1.0, 1.0)  # elbow flexion excursion factor
    elbow_bend_deg: tuple[float, float] = (0.0, 0.0)  # extra mean elbow flexion


def _arm_angles(
    look: Callable[..., np.ndarray], ph: np.ndarray, shoulder_gain: np.ndarray | float,
    elbow_gain: np.ndarray | float, arms: ArmCarriage | None, j: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Shoulder and elbow angles (degrees) of side ``j`` (0 right, 1 left), with the carriage applied."""
    if arms is None:  # the free swing, computed exactly as without carriage
        return look("shoulder", ph, shoulder_gain), look("elbow", ph, elbow_gain)
    sh = look("shoulder", ph, shoulder_gain * arms.swing[j])
    el = look("elbow", ph, elbow_gain * arms.elbow_swing[j]) + arms.elbow_bend_deg[j]
    return sh, el


def body_points(
    walker: Walker,
    tables: dict[str, np.ndarray],
    phase: np.ndarray,
    arm_mod: np.ndarray | float = 1.0,
    leg_mod: np.ndarray | float = 1.0,
    arms: ArmCarriage | None = None,
) -> dict[str, np.ndarray]:
    """Joint positions (T, 3) in the body frame for gait phases ``phase`` (T,) in cycles.

    ``arm_mod`` / ``leg_mod`` (scalars or (T,) arrays) scale the arm / leg swing excursions over time on top
    of the walker's own gains: nobody swings their limbs identically on every stride. ``arms`` changes how
    the arms are carried (a walking condition: backpack, hands in pockets, phone in hand).
    """
    h, ht = walker.height, walker.leg_length
    thigh, shin = THIGH * h * walker.leg_scale, SHIN * h * walker.leg_scale
    upper, fore = UPPER_ARM * h * walker.arm_scale, FOREARM * h * walker.arm_scale
    g = walker.bounce_gain

    def look(name: str, ph: np.ndarray, gain: float | np.ndarray = 1.0) -> np.ndarray:
        # Scaling the excursion about the cycle mean commutes with the lookup, so gains may vary in time.
        mean = tables[name].mean()
        return mean + gain * (_lookup(tables[name], ph) - mean)

    ones = np.ones_like(phase)
    spine = ht * np.stack(
        [look("forward", phase, g), look("lateral", phase, g), 1.0 + look("vertical", phase, g)], axis=1
    )
    tilt, lst, tor = look("tilt", phase, g), look("list", phase, g), look("torsion", phase, g)

    def pelvis(v: np.ndarray) -> np.ndarray:  # pelvis orientation: tilt, then list, then torsion
        return _rot_z(tor, _rot_x(lst, _rot_y(tilt, v)))

    pts: dict[str, np.ndarray] = {"spine": spine}
    thorax = look("thorax", phase, g)
    neck = spine + _rot_z(thorax, _rot_y(tilt, np.outer(ones, [0.0, 0.0, TORSO * h])))
    pts["neck"] = neck
    pts["head"] = neck + np.array([0.0, 0.0, HEAD * h])
    sides = {"r": (phase, -1.0, 1.0), "l": (phase - 0.5 - walker.lr_phase, 1.0, 1.0 + walker.asymmetry)}
    for j, (side, (ph, sign, amp)) in enumerate(sides.items()):
        hip_pos = spine + pelvis(np.outer(ones, [0.0, sign * HIP_W * h / 2, 0.0]))
        hip = look("hip", ph, walker.hip_gain * amp * leg_mod)
        knee = look("knee", ph, walker.knee_gain * leg_mod)
        ankle = look("ankle", ph)
        shin_angle = hip - knee
        knee_pos = hip_pos + thigh * _rot_z(tor, _sagittal(hip))
        ankle_pos = knee_pos + shin * _rot_z(tor, _sagittal(shin_angle))
        toe_pos = ankle_pos + FOOT * h * _rot_z(tor, _sagittal(shin_angle + ankle, down=False))
        # The arm swings opposite to the leg on the same side.
        sh_pos = neck + _rot_z(thorax, np.outer(ones, [0.0, sign * SHOULDER_W * h / 2, -0.03 * h]))
        sh, el = _arm_angles(look, ph, walker.arm_gain * amp * arm_mod, walker.elbow_gain * arm_mod, arms, j)
        elbow_pos = sh_pos + upper * _rot_z(thorax, _sagittal(sh))
        hand_pos = elbow_pos + fore * _rot_z(thorax, _sagittal(sh + el))
        pts.update({f"hip_{side}": hip_pos, f"knee_{side}": knee_pos, f"ankle_{side}": ankle_pos,
                    f"toe_{side}": toe_pos, f"shoulder_{side}": sh_pos, f"elbow_{side}": elbow_pos,
                    f"hand_{side}": hand_pos})
    return pts


# (name, start joint, end joint, radius as a fraction of height): ellipsoids along each segment.
SEGMENTS: tuple[tuple[str, str, str, float], ...] = (
    ("head", "neck", "head", 0.055),
    ("torso", "spine", "neck", 0.085),
    ("upper_arm_r", "shoulder_r", "elbow_r", 0.03),
    ("upper_arm_l", "shoulder_l", "elbow_l", 0.03),
    ("forearm_r", "elbow_r", "hand_r", 0.025),
    ("forearm_l", "elbow_l", "hand_l", 0.025),
    ("thigh_r", "hip_r", "knee_r", 0.045),
    ("thigh_l", "hip_l", "knee_l", 0.045),
    ("shin_r", "knee_r", "ankle_r", 0.033),
    ("shin_l", "knee_l", "ankle_l", 0.033),
    ("foot_r", "ankle_r", "toe_r", 0.028),
    ("foot_l", "ankle_l", "toe_l", 0.028),
)
