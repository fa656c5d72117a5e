"""Images in: libvlmclient's preprocessing (vlm_image_* in include/vlm/vlm.h) from Python.

    pixels, grid = vlmclient.preprocess_image("photo.jpg")     # float32 [n, 1176], (t, h, w)
    img = vlmclient.Image("photo.jpg", max_pixels=1003520)     # or bytes, numpy HWC uint8, PIL
    prompt = tok.apply_chat_template([{"role": "user", "content": [
        {"type": "image", "grid_thw": list(img.grid)}, {"type": "text", "text": "Describe."}]}])
    mm = vlmclient.MultiMediaInfo.from_chat(prompt, [img])    # vlmd runs the vision tower
    client.generate(prompt.ids, mm)

The pixel values are bit-identical to transformers' Qwen2VLImageProcessor (default torchvision
backend) for the same decoded RGB: the same C code vlm-generate and vlm-serve use, so anyone can
compare it with transformers. A file or bytes are decoded by libvlmclient (JPEG, PNG, WebP; EXIF
orientation applied as transformers.image_utils.load_image does); a NumPy array is taken as RGB
already; a PIL image is converted the way the processor's convert_to_rgb does (alpha composited
on white; no EXIF rotation, as the processor does not apply it to PIL inputs).
"""

import ctypes
import os

from . import _lib
from ._lib import VlmError


def _need_vision():
    if _lib.vlm_image_load_file is None:
        raise VlmError(95, "this libvlmclient (%s) has no image API (0.3)" % _lib.path)


class VisionConfig:
    """The checkpoint's preprocessing constants (preprocessor_config.json)."""

    def __init__(self, model_dir=None):
        """model_dir: a checkpoint folder whose preprocessor_config.json is read; None:
        Qwen2-VL-2B-Instruct's values."""
        _need_vision()
        self._c = _lib.VisionConfig()
        if model_dir is None:
            _lib.vlm_vision_config_default(ctypes.byref(self._c))
        else:
            _lib.check(_lib.vlm_vision_config_load(os.fsencode(model_dir), ctypes.byref(self._c)),
                       "vision config", True)

    def __getattr__(self, name):
        if name in ("patch_size", "temporal_patch_size", "merge_size", "min_pixels",
                    "max_pixels"):
            return getattr(self._c, name)
        if name in ("image_mean", "image_std"):
            return tuple(getattr(self._c, name))
        raise AttributeError(name)


def _np():
    try:
        import numpy
    except ImportError as e:  # pragma: no cover - numpy is a test dependency
        raise ImportError("vlmclient images need numpy for array inputs and outputs") from e
    return numpy


def _pil_to_rgb(im):
    """PIL image -> [h, w, 3] uint8 as transformers' convert_to_rgb (alpha on white)."""
    np = _np()
    if "A" in im.getbands() or im.info.get("transparency") is not None:
        a = np.asarray(im.convert("RGBA"), dtype=np.uint32)
        x = a[..., :3] * a[..., 3:4] + 255 * (255 - a[..., 3:4])
        return ((2 * x + 255) // 510).astype(np.uint8)        # PIL alpha_composite rounding
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _is_pil(x):
    return type(x).__module__.startswith("PIL.") and hasattr(x, "getbands")


class Image:
    """One preprocessed image or video: pixel patches [t*h*w, 1176] and the patch grid."""

    def __init__(self, src, min_pixels=None, max_pixels=None, *, config=None, dtype="float32",
                 max_source_pixels=None):
        """src: a file path (str / os.PathLike), encoded bytes (bytes, bytearray, memoryview),
        a NumPy uint8 array [h, w, 3] (RGB), or a PIL image. min_pixels / max_pixels: None =
        the config's. config: a VisionConfig (None: Qwen2-VL-2B's). dtype: "float32" or
        "bfloat16" (what vlmd receives). max_source_pixels: refuse larger sources before
        decoding (None: 178956970, PIL's limit). Raises VlmError (errno + reason)."""
        _need_vision()
        self._h = ctypes.c_void_p()
        opts = self._opts(min_pixels, max_pixels, dtype, max_source_pixels)
        cfg = ctypes.byref(config._c) if config is not None else None
        out = ctypes.byref(self._h)
        if isinstance(src, (str, os.PathLike)):
            r = _lib.vlm_image_load_file(os.fsencode(src), cfg, ctypes.byref(opts), out)
            what = "image %s" % os.fspath(src)
        elif isinstance(src, (bytes, bytearray, memoryview)):
            data = bytes(src)
            r = _lib.vlm_image_load_memory(data, len(data), cfg, ctypes.byref(opts), out)
            what = "image (%d bytes)" % len(data)
        else:
            arr = _pil_to_rgb(src) if _is_pil(src) else src
            np = _np()
            arr = np.asarray(arr)
            if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
                raise ValueError("an image array is uint8 [height, width, 3] (RGB), got %s %s"
                                 % (arr.dtype, arr.shape))
            arr = np.ascontiguousarray(arr)
            r = _lib.vlm_image_from_rgb(arr.ctypes.data, arr.shape[1], arr.shape[0],
                                        arr.strides[0], cfg, ctypes.byref(opts), out)
            what = "image array %dx%d" % (arr.shape[1], arr.shape[0])
        _lib.check(r, what, True)

    @staticmethod
    def _opts(min_pixels, max_pixels, dtype, max_source_pixels):
        o = _lib.ImageOpts()
        for name, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels),
                        ("max_source_pixels", max_source_pixels)):
            if v is not None:
                v = int(v)
                if v <= 0:
                    raise ValueError("%s must be positive" % name)
                setattr(o, name, v)
        if dtype in ("float32", "f32"):
            o.dtype = _lib.VLM_DTYPE_F32
        elif dtype in ("bfloat16", "bf16"):
            o.dtype = _lib.VLM_DTYPE_BF16
        else:
            raise ValueError("dtype is 'float32' or 'bfloat16', got %r" % (dtype,))
        return o

    @classmethod
    def video(cls, frames, min_pixels=None, max_pixels=None, *, config=None, dtype="float32"):
        """A video from decoded frames already sampled: a uint8 array [n, h, w, 3] or a list of
        [h, w, 3] arrays of one size (transformers' Qwen2VLVideoProcessor with
        do_sample_frames=False); grid t = ceil(n / temporal_patch_size)."""
        _need_vision()
        np = _np()
        frames = [np.ascontiguousarray(np.asarray(f)) for f in frames]
        if not frames:
            raise ValueError("a video needs at least one frame")
        h, w = frames[0].shape[:2]
        for f in frames:
            if f.dtype != np.uint8 or f.shape != (h, w, 3):
                raise ValueError("video frames are uint8 [h, w, 3] of one size")
        self = cls.__new__(cls)
        self._h = ctypes.c_void_p()
        ptrs = (ctypes.c_void_p * len(frames))(*[f.ctypes.data for f in frames])
        opts = cls._opts(min_pixels, max_pixels, dtype, None)
        cfg = ctypes.byref(config._c) if config is not None else None
        _lib.check(_lib.vlm_video_from_rgb(ptrs, len(frames), w, h, w * 3, cfg,
                                           ctypes.byref(opts), ctypes.byref(self._h)),
                   "video", True)
        return self

    @property
    def handle(self):
        if not self._h:
            raise ValueError("image is closed")
        return self._h

    @property
    def grid(self):
        """The patch grid (t, h, w): transformers' image_grid_thw / video_grid_thw."""
        g = (ctypes.c_uint32 * 3)()
        _lib.vlm_image_grid(self.handle, g)
        return (g[0], g[1], g[2])

    @property
    def tokens(self):
        """Placeholder tokens the image needs in the prompt: t*h*w / merge_size**2."""
        return _lib.vlm_image_tokens(self.handle)

    @property
    def is_video(self):
        return bool(_lib.vlm_image_is_video(self.handle))

    def pixel_values(self):
        """A NumPy copy of the patches: float32 [rows, cols] (bfloat16 images: uint16 bit
        patterns [rows, cols])."""
        np = _np()
        dt, rows, cols = ctypes.c_int(), ctypes.c_size_t(), ctypes.c_size_t()
        p = _lib.vlm_image_pixels(self.handle, ctypes.byref(dt), ctypes.byref(rows),
                                  ctypes.byref(cols))
        n = rows.value * cols.value
        ctype = ctypes.c_float if dt.value == _lib.VLM_DTYPE_F32 else ctypes.c_uint16
        buf = (ctype * n).from_address(p)
        return np.array(buf, copy=True).reshape(rows.value, cols.value)

    def close(self):
        if getattr(self, "_h", None):
            _lib.vlm_image_free(self._h)
            self._h = ctypes.c_void_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def __repr__(self):
        if not getattr(self, "_h", None):
            return "<vlmclient.Image closed>"
        return "<vlmclient.Image grid=%s tokens=%d%s>" % (self.grid, self.tokens,
                                                          " video" if self.is_video else "")


def preprocess_image(src, min_pixels=None, max_pixels=None):
    """(pixel_values float32 [n, 1176], grid (t, h, w)) for src (a file path, encoded bytes, a
    NumPy uint8 [h, w, 3] RGB array or a PIL image), as transformers' Qwen2VLImageProcessor
    (Qwen2-VL-2B-Instruct's min/max pixels unless given) computes them, bit for bit."""
    with Image(src, min_pixels, max_pixels) as img:
        return img.pixel_values(), img.grid
