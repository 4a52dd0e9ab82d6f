"""YUV 4:2:0 planes: geometry, bit depth, colorimetry, and RGB <-> YUV for image data sets.

Contract (see DESIGN.md, "Tensor contracts"):

* ``Y`` is ``(H, W)``; ``U`` and ``V`` are ``(ceil(H/2), ceil(W/2))``. Any size, odd included.
* 8-bit planes are ``uint8``; deeper planes (9..16 bits, in practice 10) are ``uint16`` holding
  ``0 .. 2**bits - 1``.
* Colorimetry travels beside the planes as a :class:`Colorimetry` value with ITU-T H.273 code
  points (the numbers that ffmpeg, PyAV and VapourSynth frame properties all use) so every
  surface can carry it through unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import KW_ONLY, dataclass, field

import numpy as np

SUPPORTED_BITS = (8, 10, 12, 16)


def chroma_shape(height: int, width: int) -> tuple[int, int]:
    """4:2:0 chroma plane shape for a luma plane of ``height x width``."""
    return (height + 1) // 2, (width + 1) // 2


def max_code(bits: int) -> int:
    """Largest code value of a ``bits``-deep plane."""
    check_bits(bits)
    return (1 << bits) - 1


def check_bits(bits: int) -> None:
    if bits not in SUPPORTED_BITS:
        raise ValueError(f"unsupported bit depth {bits}; supported: {', '.join(map(str, SUPPORTED_BITS))}")


def plane_dtype(bits: int) -> np.dtype:
    """numpy dtype that holds a ``bits``-deep plane: uint8 for 8 bits, uint16 above."""
    check_bits(bits)
    return np.dtype(np.uint8) if bits == 8 else np.dtype(np.uint16)


# --- colorimetry --------------------------------------------------------------------------------

# H.273 code points for the values vsr meets in practice (names as ffmpeg spells them).
MATRICES = {0: "gbr", 1: "bt709", 2: "unknown", 5: "bt470bg", 6: "smpte170m", 9: "bt2020nc", 10: "bt2020c"}
TRANSFERS = {1: "bt709", 2: "unknown", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 13: "iec61966-2-1",
             14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084", 18: "arib-std-b67"}
PRIMARIES = {1: "bt709", 2: "unknown", 5: "bt470bg", 6: "smpte170m", 9: "bt2020", 12: "smpte432"}
CHROMA_LOCATIONS = ("left", "center", "topleft", "top", "bottomleft", "bottom")
RANGES = ("limited", "full")

# Luma coefficients (Kr, Kb) per matrix.
_KR_KB = {
    "bt601": (0.299, 0.114),
    "bt709": (0.2126, 0.0722),
    "bt2020": (0.2627, 0.0593),
}
_MATRIX_FAMILY = {1: "bt709", 5: "bt601", 6: "bt601", 9: "bt2020", 10: "bt2020"}
# The (transfer, primaries) that usually accompany each matrix family, for tagging converted images.
_TRANSFER_PRIMARIES = {"bt601": (6, 6), "bt709": (1, 1), "bt2020": (14, 9)}


@dataclass(frozen=True, kw_only=True)
class Colorimetry:
    """Colour description carried beside the planes.

    ``matrix``, ``transfer`` and ``primaries`` are H.273 code points (2 = unspecified);
    ``range`` is ``"limited"`` (16..235 at 8 bits) or ``"full"``; ``chroma_location`` names where
    the 4:2:0 chroma samples sit (``"left"`` is the MPEG-2/H.264 default).
    """

    matrix: int = 2
    transfer: int = 2
    primaries: int = 2
    range: str = "limited"
    chroma_location: str = "left"

    def __post_init__(self) -> None:
        if self.range not in RANGES:
            raise ValueError(f"colour range must be one of {RANGES}, got {self.range!r}")
        if self.chroma_location not in CHROMA_LOCATIONS:
            raise ValueError(f"chroma location must be one of {CHROMA_LOCATIONS}, got {self.chroma_location!r}")
        for name in ("matrix", "transfer", "primaries"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= 255:
                raise ValueError(f"{name} must be an H.273 code point 0..255, got {value!r}")

    @classmethod
    def bt601(cls, *, range: str = "limited") -> Colorimetry:
        return cls(matrix=6, transfer=6, primaries=6, range=range, chroma_location="left")

    @classmethod
    def bt709(cls, *, range: str = "limited") -> Colorimetry:
        return cls(matrix=1, transfer=1, primaries=1, range=range, chroma_location="left")

    def replace(self, **changes) -> Colorimetry:
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        return (f"{MATRICES.get(self.matrix, self.matrix)}/{TRANSFERS.get(self.transfer, self.transfer)}/"
                f"{PRIMARIES.get(self.primaries, self.primaries)}, {self.range} range, chroma {self.chroma_location}")


# --- frames -------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Frame:
    """One YUV 4:2:0 picture: three numpy planes, their bit depth and colorimetry.

    ``Frame(y, u, v, bits=10)``: the planes may be given by position, the rest by keyword. Code
    values above the bit depth's maximum (e.g. 1023 at 10 bits in uint16 planes) are refused.
    """

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    _: KW_ONLY
    bits: int = 8
    colorimetry: Colorimetry = field(default_factory=Colorimetry)

    def __post_init__(self) -> None:
        dtype = plane_dtype(self.bits)
        if self.y.ndim != 2:
            raise ValueError(f"Y plane must be 2-D (H, W), got shape {self.y.shape}")
        if self.y.size == 0:
            raise ValueError(f"a frame needs at least 1x1 pixels, got {self.y.shape[1]}x{self.y.shape[0]}")
        want = chroma_shape(*self.y.shape)
        for name, plane in (("Y", self.y), ("U", self.u), ("V", self.v)):
            if plane.dtype != dtype:
                raise ValueError(f"{name} plane of a {self.bits}-bit frame must be {dtype}, got {plane.dtype}")
        for name, plane in (("U", self.u), ("V", self.v)):
            if plane.shape != want:
                raise ValueError(f"{name} plane must be {want} for a {self.y.shape} luma plane (4:2:0), got {plane.shape}")
        top = max_code(self.bits)
        if top < np.iinfo(dtype).max:  # e.g. 10 bits in uint16: the unused high bits must be zero
            for name, plane in (("Y", self.y), ("U", self.u), ("V", self.v)):
                if int(plane.max()) > top:
                    raise ValueError(f"{name} plane holds code {int(plane.max())}, above the {self.bits}-bit "
                                     f"maximum {top}")

    @property
    def height(self) -> int:
        return self.y.shape[0]

    @property
    def width(self) -> int:
        return self.y.shape[1]

    @property
    def planes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.y, self.u, self.v

    def with_planes(self, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> Frame:
        """Same bit depth and colorimetry, new planes (e.g. after upscaling)."""
        return Frame(y=y, u=u, v=v, bits=self.bits, colorimetry=self.colorimetry)

    def cropped(self, height: int, width: int) -> Frame:
        """The top-left ``height x width`` picture (chroma cropped to match)."""
        if height > self.height or width > self.width:
            raise ValueError(f"cannot crop {self.width}x{self.height} to a larger {width}x{height}")
        ch, cw = chroma_shape(height, width)
        return self.with_planes(np.ascontiguousarray(self.y[:height, :width]),
                                np.ascontiguousarray(self.u[:ch, :cw]), np.ascontiguousarray(self.v[:ch, :cw]))

    def padded(self, height: int, width: int) -> Frame:
        """Extend to ``height x width`` by replicating the last row and column (chroma to match)."""
        if height < self.height or width < self.width:
            raise ValueError(f"cannot pad {self.width}x{self.height} to a smaller {width}x{height}")
        if (height, width) == (self.height, self.width):
            return self  # frames are immutable: nothing to copy
        ch, cw = chroma_shape(height, width)

        def pad(p: np.ndarray, h: int, w: int) -> np.ndarray:
            return np.pad(p, ((0, h - p.shape[0]), (0, w - p.shape[1])), mode="edge")

        return self.with_planes(pad(self.y, height, width), pad(self.u, ch, cw), pad(self.v, ch, cw))

    def equals(self, other: Frame) -> bool:
        return (self.bits == other.bits and self.colorimetry == other.colorimetry
                and all(np.array_equal(a, b) for a, b in zip(self.planes, other.planes)))


# --- RGB <-> YUV for image data sets --------------------------------------------------------------

def _coefficients(matrix: int) -> tuple[float, float]:
    family = _MATRIX_FAMILY.get(matrix)
    if family is None:
        raise ValueError(f"no RGB<->YUV conversion for matrix code {matrix} ({MATRICES.get(matrix, 'unknown')}); "
                         "use bt601 (5/6), bt709 (1) or bt2020 (9)")
    return _KR_KB[family]


def _scales(bits: int, range: str) -> tuple[float, float, float, float]:
    """(luma offset, luma excursion, chroma offset, chroma excursion) in code values."""
    m = max_code(bits)
    if range == "limited":
        k = float(1 << (bits - 8))
        return 16.0 * k, 219.0 * k, 128.0 * k, 224.0 * k
    return 0.0, float(m), float(1 << (bits - 1)), float(m)


def rgb_to_yuv_float(rgb: np.ndarray, *, matrix: int = 6, bits: int = 8, range: str = "limited") -> np.ndarray:
    """RGB in [0, 1] (float, ``(..., 3)``) to unrounded Y, U, V code values at full resolution."""
    kr, kb = _coefficients(matrix)
    kg = 1.0 - kr - kb
    rgb = np.asarray(rgb, dtype=np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    luma = kr * r + kg * g + kb * b
    cb = (b - luma) / (2.0 * (1.0 - kb))
    cr = (r - luma) / (2.0 * (1.0 - kr))
    yo, ys, co, cs = _scales(bits, range)
    return np.stack([yo + ys * luma, co + cs * cb, co + cs * cr], axis=-1)


def _quantize(x: np.ndarray, bits: int) -> np.ndarray:
    return np.clip(np.rint(x), 0, max_code(bits)).astype(plane_dtype(bits))


def subsample_420(plane: np.ndarray) -> np.ndarray:
    """Average 2x2 blocks (chroma sited at the block centre); odd edges are replicated first."""
    h, w = plane.shape
    ph, pw = h % 2, w % 2
    if ph or pw:
        plane = np.pad(plane, ((0, ph), (0, pw)), mode="edge")
    return 0.25 * (plane[0::2, 0::2] + plane[0::2, 1::2] + plane[1::2, 0::2] + plane[1::2, 1::2])


def rgb_to_frame(rgb: np.ndarray, *, matrix: int = 6, bits: int = 8, range: str = "limited") -> Frame:
    """RGB image (uint8 ``(H, W, 3)`` or float in [0, 1]) to a 4:2:0 :class:`Frame`.

    Chroma is the 2x2 mean of full-resolution chroma, so the result is tagged with centre chroma
    siting (the JPEG convention). Values are rounded half to even and clamped.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {rgb.shape}")
    if rgb.dtype == np.uint8:
        rgb = rgb.astype(np.float64) / 255.0
    yuv = rgb_to_yuv_float(rgb, matrix=matrix, bits=bits, range=range)
    y = _quantize(yuv[..., 0], bits)
    u = _quantize(subsample_420(yuv[..., 1]), bits)
    v = _quantize(subsample_420(yuv[..., 2]), bits)
    transfer, primaries = _TRANSFER_PRIMARIES[_MATRIX_FAMILY[matrix]]
    colorimetry = Colorimetry(matrix=matrix, transfer=transfer, primaries=primaries, range=range,
                              chroma_location="center")
    return Frame(y=y, u=u, v=v, bits=bits, colorimetry=colorimetry)


def upsample_chroma_nearest(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    """Replicate each chroma sample over its 2x2 luma block, cropped to ``height x width``."""
    return np.repeat(np.repeat(plane, 2, axis=0), 2, axis=1)[:height, :width]


def frame_to_rgb(frame: Frame) -> np.ndarray:
    """4:2:0 frame to 8-bit RGB ``(H, W, 3)`` for viewing (chroma upsampled by replication)."""
    c = frame.colorimetry
    matrix = c.matrix if c.matrix in _MATRIX_FAMILY else 6
    kr, kb = _coefficients(matrix)
    kg = 1.0 - kr - kb
    yo, ys, co, cs = _scales(frame.bits, c.range)
    h, w = frame.height, frame.width
    luma = (frame.y.astype(np.float64) - yo) / ys
    cb = (upsample_chroma_nearest(frame.u, h, w).astype(np.float64) - co) / cs
    cr = (upsample_chroma_nearest(frame.v, h, w).astype(np.float64) - co) / cs
    r = luma + 2.0 * (1.0 - kr) * cr
    b = luma + 2.0 * (1.0 - kb) * cb
    g = (luma - kr * r - kb * b) / kg
    rgb = np.stack([r, g, b], axis=-1)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
