"""Images in: libvlmclient's preprocessing (vlm_image_* in include/vlm/vlm.h) from Python.

    pixels, grid = vlmclient.preprocess_image("photo.jpg")     # float32 [n, 1176], (t, h, w)
    img = client.image("photo.jpg", max_pixels=1003520)        # or bytes, numpy HWC uint8, PIL
    prompt = tok.apply_chat_template([{"role": "user", "content": [
        {"type": "image", "grid_thw": list(img.grid)}, {"type": "text", "text": "Describe."}]}])
    mm = vlmclient.MultiMediaInfo.from_chat(prompt, [img])    # vlmd runs the vision tower
    client.generate(prompt.ids, mm)

client.image(src) (Image(src, client=client)) reads only the grid now (from the file's header, or
the array's size: vlm_image_probe_*); each request that carries the image preprocesses it once,
straight into the connection's shared arena (no copy), and the connection keeps it there for the
next turn of a conversation when it is small enough (a quarter of the arena). Damage the header
does not show is reported by the request. Image(src) without a client preprocesses into a
buffer of its own, which each request copies into the arena.

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

    def __init__(self, model_dir=None, *, video=False):
        """model_dir: a checkpoint folder whose preprocessor_config.json is read; None:
        Qwen2-VL-2B-Instruct's values. video=True: the video processor's settings instead
        (processor_config.json's video_processor, video_preprocessor_config.json, then
        preprocessor_config.json, as transformers; None: Qwen2VLVideoProcessor's defaults);
        sampling options the file names (do_sample_frames with fps / num_frames) are in
        .video_sampling, a dict for Image.video. .pixel_dtype: "bfloat16" when model_dir's
        config.json says the checkpoint is bfloat16 (transformers casts pixel_values to the
        tower's dtype, so these are its values, in half the bytes), else "float32"; images
        made with this config default to it."""
        _need_vision()
        self._c = _lib.VisionConfig()
        self.video_sampling = {}
        self.pixel_dtype = pixel_dtype(model_dir) if model_dir is not None else "float32"
        if video:
            vo = _lib.VideoOpts()
            if model_dir is None:
                _lib.vlm_video_config_default(ctypes.byref(self._c))
            else:
                _lib.check(_lib.vlm_video_config_load(os.fsencode(model_dir),
                                                      ctypes.byref(self._c), ctypes.byref(vo)),
                           "video config", True)
            self.video_sampling = {k: getattr(vo, k) for k in ("fps", "num_frames", "min_frames",
                                                               "max_frames", "max_video_tokens")
                                   if getattr(vo, k)}
        elif model_dir is None:
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


def pixel_dtype(model_dir):
    """The pixel dtype matching model_dir's vision tower: "bfloat16" for a bfloat16 checkpoint
    (config.json torch_dtype / dtype), else "float32" (also without config.json);
    vlm_vision_pixel_dtype."""
    if _lib.vlm_vision_pixel_dtype is None:
        return "float32"
    d = ctypes.c_int(_lib.VLM_DTYPE_F32)
    r = _lib.vlm_vision_pixel_dtype(os.fsencode(model_dir), ctypes.byref(d))
    if r < 0 and r != -2:  # -ENOENT: no config.json, float32
        _lib.check(r, "pixel dtype", True)
    return "bfloat16" if d.value == _lib.VLM_DTYPE_BF16 else "float32"


def _dtype_of(dtype, config):
    if dtype is not None:
        return dtype
    return getattr(config, "pixel_dtype", "float32") if config is not None else "float32"


def _is_pil(x):
    return type(x).__module__.startswith("PIL.") and hasattr(x, "getbands")


class Image:
    """One preprocessed image or video: pixel patches [t*h*w, 1176] and the patch grid."""

    def __init__(self, src, min_pixels=None, max_pixels=None, *, config=None, dtype=None,
                 max_source_pixels=None, client=None):
        """src: a file path (str / os.PathLike), encoded bytes (bytes, bytearray, memoryview),
        a NumPy uint8 array [h, w, 3] (RGB), or a PIL image. min_pixels / max_pixels: None =
        the config's. config: a VisionConfig (None: Qwen2-VL-2B's). dtype: "float32" or
        "bfloat16" (what vlmd receives; None: config.pixel_dtype, the checkpoint's, else
        "float32"). max_source_pixels: refuse larger sources before
        decoding (None: 178956970, PIL's limit). client: a vlmclient.Client whose shared arena
        the image is preprocessed into (the zero-copy path; see the module's text); None: a
        buffer of its own. Raises VlmError (errno + reason)."""
        _need_vision()
        self._h = ctypes.c_void_p()
        self._bound = None
        dtype = _dtype_of(dtype, config)
        opts = self._opts(min_pixels, max_pixels, dtype, max_source_pixels)
        cfg = ctypes.byref(config._c) if config is not None else None
        if client is not None:
            self._bind(client, src, opts, config,
                       dict(min_pixels=min_pixels, max_pixels=max_pixels, config=config,
                            dtype=dtype, max_source_pixels=max_source_pixels))
            return
        out = ctypes.byref(self._h)
        kind, obj, what = self._source(src)
        if kind == "file":
            r = _lib.vlm_image_load_file(obj, cfg, ctypes.byref(opts), out)
        elif kind == "memory":
            r = _lib.vlm_image_load_memory(obj, len(obj), cfg, ctypes.byref(opts), out)
        else:
            r = _lib.vlm_image_from_rgb(obj.ctypes.data, obj.shape[1], obj.shape[0],
                                        obj.strides[0], cfg, ctypes.byref(opts), out)
        _lib.check(r, what, True)

    @staticmethod
    def _source(src):
        """src as (kind, object, description): "file" (bytes path), "memory" (bytes) or "rgb"
        (a C-contiguous uint8 [h, w, 3] array)."""
        if isinstance(src, (str, os.PathLike)):
            return "file", os.fsencode(src), "image %s" % os.fspath(src)
        if isinstance(src, (bytes, bytearray, memoryview)):
            data = bytes(src)
            return "memory", data, "image (%d bytes)" % len(data)
        arr = _pil_to_rgb(src) if _is_pil(src) else src
        np = _np()
        arr = np.asarray(arr)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError("an image array is uint8 [height, width, 3] (RGB), got %s %s"
                             % (arr.dtype, arr.shape))
        arr = np.ascontiguousarray(arr)
        return "rgb", arr, "image array %dx%d" % (arr.shape[1], arr.shape[0])

    def _bind(self, client, src, opts, config, args):
        if _lib.vlm_request_add_image_rgb is None or _lib.vlm_image_probe_file is None:
            raise VlmError(95, "this libvlmclient (%s) cannot preprocess into the arena"
                           % _lib.path)
        if not client._h:
            raise ValueError("client is closed")
        kind, obj, what = self._source(src)
        self._bound = dict(client=client, kind=kind, obj=obj, opts=opts, config=config,
                           args=args, grid=(0, 0, 0), tokens=0)
        # the grid from the header (vlm_image_probe_*): the prompt needs it now; each request
        # that carries the image preprocesses it once, straight into the arena (the connection's
        # memo keeps it for the next one when it is small enough)
        g, tok = (ctypes.c_uint32 * 3)(), ctypes.c_uint32()
        cfg = ctypes.byref(config._c) if config is not None else None
        if kind == "file":
            r = _lib.vlm_image_probe_file(obj, cfg, ctypes.byref(opts), g, ctypes.byref(tok))
        elif kind == "memory":
            r = _lib.vlm_image_probe_memory(obj, len(obj), cfg, ctypes.byref(opts), g,
                                            ctypes.byref(tok))
        else:
            r = _lib.vlm_image_probe_size(obj.shape[1], obj.shape[0], cfg, ctypes.byref(opts), g,
                                          ctypes.byref(tok))
        _lib.check(r, what, True)
        self._bound["grid"], self._bound["tokens"] = (g[0], g[1], g[2]), tok.value

    def _add_to(self, req, placeholder_id, what):
        """Adds a client-bound image to request req (found in the arena, or preprocessed into
        it again); returns (grid, tokens)."""
        b = self._bound
        g, tok = (ctypes.c_uint32 * 3)(), ctypes.c_uint32()
        cfg = ctypes.byref(b["config"]._c) if b["config"] is not None else None
        opts = ctypes.byref(b["opts"])
        if b["kind"] == "video":
            r = _lib.vlm_request_add_video_files(req, placeholder_id, b["obj"], len(b["obj"]),
                                                 cfg, opts, ctypes.byref(b["vo"]), g,
                                                 ctypes.byref(tok))
        elif b["kind"] == "video_rgb":
            f = b["frames"][0]
            r = _lib.vlm_request_add_video_rgb(req, placeholder_id, b["obj"], len(b["obj"]),
                                               f.shape[1], f.shape[0], f.strides[0], cfg, opts,
                                               ctypes.byref(b["vo"]), g, ctypes.byref(tok))
        elif b["kind"] == "file":
            r = _lib.vlm_request_add_image_file(req, placeholder_id, b["obj"], cfg, opts, g,
                                                ctypes.byref(tok))
        elif b["kind"] == "memory":
            r = _lib.vlm_request_add_image_memory(req, placeholder_id, b["obj"], len(b["obj"]),
                                                  cfg, opts, g, ctypes.byref(tok))
        else:
            a = b["obj"]
            r = _lib.vlm_request_add_image_rgb(req, placeholder_id, a.ctypes.data, a.shape[1],
                                               a.shape[0], a.strides[0], cfg, opts, g,
                                               ctypes.byref(tok))
        _lib.check(r, what, True)
        grid = (g[0], g[1], g[2])
        if grid != b["grid"]:
            raise VlmError(5, "%s: the file changed (grid %s, its header said %s)"
                           % (what, grid, b["grid"]))
        return grid, tok.value

    @property
    def bound(self):
        """True for an image preprocessed into a client's arena (Image(src, client=...))."""
        return self._bound is not None

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
    def video(cls, frames, min_pixels=None, max_pixels=None, *, config=None, dtype=None,
              source_fps=None, fps=None, num_frames=None, min_frames=None, max_frames=None,
              max_video_tokens=None, client=None):
        """A video from its frames, as transformers' Qwen2VLVideoProcessor with the video's
        metadata (VideoMetadata(total_num_frames, fps=source_fps)): frames is a uint8 array
        [n, h, w, 3], a list of [h, w, 3] arrays of one size, or a list of frame image files
        (only the kept ones are read). fps / num_frames sample the frames (do_sample_frames=True;
        fps needs source_fps); neither keeps them all. min_pixels / max_pixels: per frame (None:
        the config's). config: a VisionConfig (None: the video processor's class defaults; a
        checkpoint's: VisionConfig(model_dir, video=True)). The grid's t = ceil(kept / 2);
        second_per_grid is temporal_patch_size / sampled fps (24 when source_fps is unknown),
        transformers' second_per_grid_ts, which goes to vlmd with the video. max_video_tokens:
        transformers' cap_pixels_per_frame=True with that budget (None: no total cap).
        client: a vlmclient.Client: each request that carries the video preprocesses it
        straight into the client's arena (vlm_request_add_video_files for frame files,
        vlm_request_add_video_rgb for frame arrays: no buffer, no copy; the connection's memo keeps
        it for the next request when it is small enough); the grid comes from the sampling and
        the first kept frame's size or header (vlm_video_probe_*), as Image(src, client=...).
        The frame arrays are kept (not copied) while the Image lives."""
        _need_vision()
        if _lib.vlm_video_from_frames is None:
            raise VlmError(95, "this libvlmclient (%s) has no video sampling" % _lib.path)
        vo = _lib.VideoOpts()
        for name, v in (("source_fps", source_fps), ("fps", fps)):
            if v is not None:
                if not v > 0:
                    raise ValueError("%s must be positive" % name)
                setattr(vo, name, float(v))
        for name, v in (("num_frames", num_frames), ("min_frames", min_frames),
                        ("max_frames", max_frames), ("max_video_tokens", max_video_tokens)):
            if v is not None:
                if int(v) <= 0:
                    raise ValueError("%s must be positive" % name)
                setattr(vo, name, int(v))
        self = cls.__new__(cls)
        self._h = ctypes.c_void_p()
        self._bound = None
        opts = cls._opts(min_pixels, max_pixels, _dtype_of(dtype, config), None)
        cfg = ctypes.byref(config._c) if config is not None else None
        frames = list(frames) if not hasattr(frames, "ndim") else frames
        if len(frames) == 0:
            raise ValueError("a video needs at least one frame")
        files = isinstance(frames, list) and isinstance(frames[0], (str, os.PathLike))
        if not files:
            np = _np()
            frames = [np.ascontiguousarray(np.asarray(f)) for f in frames]
            h, w = frames[0].shape[:2]
            for f in frames:
                if f.dtype != np.uint8 or f.shape != (h, w, 3):
                    raise ValueError("video frames are uint8 [h, w, 3] of one size")
        if client is not None:
            if _lib.vlm_video_probe_files is None or _lib.vlm_request_add_video_rgb is None:
                raise VlmError(95, "this libvlmclient (%s) cannot preprocess videos into the "
                               "arena" % _lib.path)
            if not client._h:
                raise ValueError("client is closed")
            g, tok = (ctypes.c_uint32 * 3)(), ctypes.c_uint32()
            self._bound = dict(client=client, opts=opts, vo=vo, config=config,
                               args=dict(min_pixels=min_pixels, max_pixels=max_pixels,
                                         config=config, dtype=dtype, source_fps=source_fps,
                                         fps=fps, num_frames=num_frames, min_frames=min_frames,
                                         max_frames=max_frames,
                                         max_video_tokens=max_video_tokens))
            if files:
                paths = (ctypes.c_char_p * len(frames))(*[os.fsencode(f) for f in frames])
                self._bound.update(kind="video", obj=paths, files=[os.fspath(f) for f in frames])
                r = _lib.vlm_video_probe_files(paths, len(frames), cfg, ctypes.byref(opts),
                                               ctypes.byref(vo), g, ctypes.byref(tok))
            else:
                ptrs = (ctypes.c_void_p * len(frames))(*[f.ctypes.data for f in frames])
                self._bound.update(kind="video_rgb", obj=ptrs, frames=frames, files=frames)
                r = _lib.vlm_video_probe_size(len(frames), w, h, cfg, ctypes.byref(opts),
                                              ctypes.byref(vo), g, ctypes.byref(tok))
            _lib.check(r, "video", True)
            self._bound["grid"], self._bound["tokens"] = (g[0], g[1], g[2]), tok.value
            return self
        if files:
            paths = (ctypes.c_char_p * len(frames))(*[os.fsencode(f) for f in frames])
            r = _lib.vlm_video_load_frames(paths, len(frames), cfg, ctypes.byref(opts),
                                           ctypes.byref(vo), ctypes.byref(self._h))
        else:
            ptrs = (ctypes.c_void_p * len(frames))(*[f.ctypes.data for f in frames])
            r = _lib.vlm_video_from_frames(ptrs, len(frames), w, h, w * 3, cfg,
                                           ctypes.byref(opts), ctypes.byref(vo),
                                           ctypes.byref(self._h))
        _lib.check(r, "video", True)
        return self

    @property
    def second_per_grid(self):
        """A video's seconds per temporal grid step (transformers' second_per_grid_ts); 0.0 for
        an image."""
        if self._bound is not None and self._bound["kind"] in ("video", "video_rgb"):
            b = self._bound
            tp = b["config"]._c.temporal_patch_size if b["config"] is not None else 2
            n = len(b["obj"])
            idx, kept, fps = (ctypes.c_uint32 * n)(), ctypes.c_size_t(), ctypes.c_double()
            _lib.check(_lib.vlm_video_sample(n, tp, ctypes.byref(b["vo"]), idx,
                                             ctypes.byref(kept), ctypes.byref(fps)), "video",
                       True)
            return tp / fps.value
        if _lib.vlm_video_second_per_grid is None or self._bound is not None:
            return 0.0
        return _lib.vlm_video_second_per_grid(self.handle)

    @property
    def handle(self):
        if not self._h:
            raise ValueError("image is in a client's arena" if self._bound is not None else
                             "image is closed")
        return self._h

    @property
    def grid(self):
        """The patch grid (t, h, w): transformers' image_grid_thw / video_grid_thw."""
        if self._bound is not None:
            return self._bound["grid"]
        g = (ctypes.c_uint32 * 3)()
        _lib.vlm_image_grid(self.handle, g)
        return (g[0], g[1], g[2])

    @property
    def tokens(self):
        """Placeholder tokens the image needs in the prompt: t*h*w / merge_size**2."""
        if self._bound is not None:
            return self._bound["tokens"]
        return _lib.vlm_image_tokens(self.handle)

    @property
    def is_video(self):
        if self._bound is not None:
            return self._bound["kind"] in ("video", "video_rgb")
        return bool(_lib.vlm_image_is_video(self.handle))

    def pixel_values(self):
        """A NumPy copy of the patches: float32 [rows, cols] (bfloat16 images: uint16 bit
        patterns [rows, cols]). A client-bound image preprocesses its source again for them."""
        if self._bound is not None:
            b = self._bound
            if b["kind"] in ("video", "video_rgb"):
                with Image.video(b["files"], **b["args"]) as v:
                    return v.pixel_values()
            src = os.fsdecode(b["obj"]) if b["kind"] == "file" else b["obj"]
            with Image(src, **b["args"]) as im:
                return im.pixel_values()
        np = _np()
        dt, rows, cols = ctypes.c_int(), ctypes.c_size_t(), ctypes.c_size_t()
        p = _lib.vlm_image_pixels(self.handle, ctypes.byref(dt), ctypes.byref(rows),
                                  ctypes.byref(cols))
        n = rows.value * cols.value
        ctype = ctypes.c_float if dt.value == _lib.VLM_DTYPE_F32 else ctypes.c_uint16
        buf = (ctype * n).from_address(p)
        return np.array(buf, copy=True).reshape(rows.value, cols.value)

    def close(self):
        self._bound = None
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
        if getattr(self, "_bound", None) is not None:
            return "<vlmclient.Image grid=%s tokens=%d in the arena>" % (self.grid, self.tokens)
        if not getattr(self, "_h", None):
            return "<vlmclient.Image closed>"
        return "<vlmclient.Image grid=%s tokens=%d%s>" % (self.grid, self.tokens,
                                                          " video" if self.is_video else "")


def sample_frames(total_frames, *, source_fps=None, fps=None, num_frames=None, min_frames=None,
                  max_frames=None, temporal_patch_size=2):
    """(indices, sampled_fps): the frames transformers' Qwen2VLVideoProcessor.sample_frames keeps
    of a video of total_frames (decode only these), and the rate they represent."""
    _need_vision()
    vo = _lib.VideoOpts()
    for name, v in (("source_fps", source_fps), ("fps", fps)):
        if v is not None:
            setattr(vo, name, float(v))
    for name, v in (("num_frames", num_frames), ("min_frames", min_frames),
                    ("max_frames", max_frames)):
        if v is not None:
            setattr(vo, name, int(v))
    idx = (ctypes.c_uint32 * max(int(total_frames), 1))()
    n, sfps = ctypes.c_size_t(), ctypes.c_double()
    _lib.check(_lib.vlm_video_sample(int(total_frames), temporal_patch_size, ctypes.byref(vo), idx,
                                     ctypes.byref(n), ctypes.byref(sfps)), "video sampling", True)
    return list(idx[:n.value]), sfps.value


def preprocess_video(frames, min_pixels=None, max_pixels=None, **sampling):
    """(pixel_values float32 [n, 1176], grid (t, h, w), second_per_grid) for a video (frames as
    Image.video takes them; sampling: source_fps, fps, num_frames, min_frames, max_frames,
    max_video_tokens, config), as transformers' Qwen2VLVideoProcessor (pixel_values_videos, video_grid_thw) and
    Qwen2_5_VLProcessor (second_per_grid_ts) compute them, bit for bit. Default per-frame bounds:
    the video processor's class defaults (128*28*28 .. 768*28*28)."""
    with Image.video(frames, min_pixels, max_pixels, **sampling) as v:
        return v.pixel_values(), v.grid, v.second_per_grid


def preprocess_image(src, min_pixels=None, max_pixels=None):
    """(pixel_values float32 [n, 1176], grid (t, h, w)) for src (a file path, encoded bytes, a
    NumPy uint8 [h, w, 3] RGB array or a PIL image), as transformers' Qwen2VLImageProcessor
    (Qwen2-VL-2B-Instruct's min/max pixels unless given) computes them, bit for bit."""
    with Image(src, min_pixels, max_pixels) as img:
        return img.pixel_values(), img.grid
