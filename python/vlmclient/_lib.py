"""Loading libvlmclient and declaring the C prototypes (ctypes).

Why ctypes and not a compiled extension: the package then installs anywhere with `pip install`
and no compiler, and one build of it works with every Python 3 version. The price is that every
prototype must be declared by hand here; they mirror include/vlm/tokenizer.h and include/vlm/vlm.h
exactly, and the tests call every one of them.

Where the library comes from, in order:
  1. $VLM_LIBRARY: the path of libvlmclient.so (or of the folder that holds it), e.g. a build tree;
  2. ctypes.util.find_library("vlmclient") (ldconfig's cache: an installed library);
  3. the soname "libvlmclient.so.0" (LD_LIBRARY_PATH and the loader's default paths).
"""

import ctypes
import ctypes.util
import errno
import os

c_int = ctypes.c_int
c_int32 = ctypes.c_int32
c_uint32 = ctypes.c_uint32
c_size_t = ctypes.c_size_t
c_char_p = ctypes.c_char_p
c_void_p = ctypes.c_void_p
c_bool = ctypes.c_bool
POINTER = ctypes.POINTER

SONAME = "libvlmclient.so.0"


class VlmError(OSError):
    """An error from libvlmclient or vlmd: errno (negative return of the C call), message.

    vlmd_message: when vlmd refused or failed the request, its reason as it sent it (e.g.
    "prompt 90+max_tokens 40 > max-model-len 128"; also part of the message); "" otherwise."""

    def __init__(self, code, message=None, vlmd_message=""):
        code = abs(int(code))
        if not message:
            message = strerror(code)
        super().__init__(code, message)
        self.vlmd_message = vlmd_message or ""


class LibraryNotFound(ImportError):
    pass


def _candidates():
    env = os.environ.get("VLM_LIBRARY")
    if env:
        if os.path.isdir(env):
            for name in ("libvlmclient.so", SONAME):
                p = os.path.join(env, name)
                if os.path.exists(p):
                    yield p
            yield os.path.join(env, "client", "libvlmclient.so")
        else:
            yield env
        return
    found = ctypes.util.find_library("vlmclient")
    if found:
        yield found
    yield SONAME


def _load():
    errors = []
    for path in _candidates():
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            errors.append("%s: %s" % (path, e))
    raise LibraryNotFound(
        "libvlmclient not found (set VLM_LIBRARY to the path of libvlmclient.so, e.g. "
        "BUILD/client/libvlmclient.so, or install vlmd): " + "; ".join(errors))


lib, path = _load()


def _fn(name, restype, *argtypes, optional=False):
    try:
        f = getattr(lib, name)
    except AttributeError:
        if optional:
            return None
        raise
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


# ---- version (include/vlm/version.h) ----
vlm_version_string = _fn("vlm_version_string", c_char_p)
vlm_check_version = _fn("vlm_check_version", c_bool, c_int, c_int, c_int)

# ---- tokenizer (include/vlm/tokenizer.h) ----
vlm_tokenizer_load = _fn("vlm_tokenizer_load", c_int, c_char_p, POINTER(c_void_p), c_char_p,
                         c_size_t)
vlm_tokenizer_load_buffer = _fn("vlm_tokenizer_load_buffer", c_int, c_char_p, c_size_t,
                                POINTER(c_void_p), c_char_p, c_size_t)
vlm_tokenizer_free = _fn("vlm_tokenizer_free", None, c_void_p)
vlm_tokenizer_encode = _fn("vlm_tokenizer_encode", c_int, c_void_p, c_char_p, c_size_t, ctypes.c_uint,
                           POINTER(POINTER(c_int32)), POINTER(c_size_t))
vlm_tokens_free = _fn("vlm_tokens_free", None, POINTER(c_int32))
vlm_tokenizer_decode = _fn("vlm_tokenizer_decode", c_int, c_void_p, POINTER(c_int32), c_size_t,
                           ctypes.c_uint, POINTER(POINTER(ctypes.c_char)), POINTER(c_size_t))
vlm_text_free = _fn("vlm_text_free", None, POINTER(ctypes.c_char))
vlm_detok_new = _fn("vlm_detok_new", c_int, c_void_p, ctypes.c_uint, POINTER(c_void_p))
vlm_detok_free = _fn("vlm_detok_free", None, c_void_p)
vlm_detok_feed = _fn("vlm_detok_feed", c_int, c_void_p, c_int32, POINTER(POINTER(ctypes.c_char)),
                     POINTER(c_size_t))
vlm_detok_flush = _fn("vlm_detok_flush", c_int, c_void_p, POINTER(POINTER(ctypes.c_char)),
                      POINTER(c_size_t))
vlm_tokenizer_vocab_size = _fn("vlm_tokenizer_vocab_size", c_size_t, c_void_p)
vlm_tokenizer_token_to_id = _fn("vlm_tokenizer_token_to_id", c_int32, c_void_p, c_char_p)
vlm_tokenizer_id_to_token = _fn("vlm_tokenizer_id_to_token", c_char_p, c_void_p, c_int32)
vlm_tokenizer_is_special = _fn("vlm_tokenizer_is_special", c_bool, c_void_p, c_int32)

VLM_ENCODE_SPECIAL_AS_TEXT = 1
VLM_DECODE_SKIP_SPECIAL = 1
VLM_CHAT_IMAGE = 1
VLM_CHAT_VIDEO = 2


class ChatOptions(ctypes.Structure):
    _fields_ = [
        ("merge_size", c_uint32),
        ("add_generation_prompt", c_bool),
        ("add_vision_id", c_bool),
        ("content_special_as_text", c_bool),
        ("default_system", c_char_p),
    ]


class ChatItemC(ctypes.Structure):
    _fields_ = [
        ("kind", c_int),
        ("placeholder_id", c_int32),
        ("offset", c_uint32),
        ("length", c_uint32),
        ("grid_t", c_uint32),
        ("grid_h", c_uint32),
        ("grid_w", c_uint32),
    ]


class ChatResult(ctypes.Structure):
    _fields_ = [
        ("ids", POINTER(c_int32)),
        ("n_ids", c_size_t),
        ("items", POINTER(ChatItemC)),
        ("n_items", c_size_t),
    ]


vlm_chat_new = _fn("vlm_chat_new", c_int, POINTER(c_void_p))
vlm_chat_free = _fn("vlm_chat_free", None, c_void_p)
vlm_chat_add_message = _fn("vlm_chat_add_message", c_int, c_void_p, c_char_p)
vlm_chat_add_text = _fn("vlm_chat_add_text", c_int, c_void_p, c_char_p, c_size_t)
vlm_chat_add_media = _fn("vlm_chat_add_media", c_int, c_void_p, c_int, c_uint32, c_uint32, c_uint32)
vlm_chat_from_json = _fn("vlm_chat_from_json", c_int, c_char_p, c_size_t, POINTER(c_void_p),
                         c_char_p, c_size_t)
vlm_chat_encode = _fn("vlm_chat_encode", c_int, c_void_p, c_void_p, POINTER(ChatOptions),
                      POINTER(ChatResult))
vlm_chat_result_fini = _fn("vlm_chat_result_fini", None, POINTER(ChatResult))

# ---- the client API (include/vlm/vlm.h) ----
c_uint8 = ctypes.c_uint8
c_uint64 = ctypes.c_uint64
c_int64 = ctypes.c_int64
c_float = ctypes.c_float
c_double = ctypes.c_double


class ConnectOpts(ctypes.Structure):
    _fields_ = [
        ("socket_path", c_char_p),
        ("client_name", c_char_p),
        ("connect_timeout_ms", c_int),
        ("close_timeout_ms", c_int),
        ("arena_bytes", c_uint64),
        ("sq_entries", c_uint32),
        ("cq_entries", c_uint32),
        ("reserved", c_uint64 * 8),
    ]


class GenParams(ctypes.Structure):
    _fields_ = [
        ("max_tokens", c_uint32),
        ("min_tokens", c_uint32),
        ("temperature", c_float),
        ("top_k", c_int32),
        ("top_p", c_float),
        ("min_p", c_float),
        ("repetition_penalty", c_float),
        ("frequency_penalty", c_float),
        ("presence_penalty", c_float),
        ("priority", c_int32),
        ("seed", c_uint64),
        ("has_seed", c_bool),
        ("ignore_eos", c_bool),
        ("logprobs", c_bool),
        ("top_logprobs", c_uint8),
        ("stop_ids", POINTER(c_int32)),
        ("n_stop_ids", c_uint32),
        ("reserved32", c_uint32),
        ("reserved", c_uint64 * 6),
    ]


class MmInfo(ctypes.Structure):
    _fields_ = [
        ("placeholder_id", c_int32),
        ("grid_t", c_uint32),
        ("grid_h", c_uint32),
        ("grid_w", c_uint32),
        ("fingerprint", POINTER(c_uint8)),
        ("fingerprint_len", c_size_t),
        ("reserved", c_uint64 * 4),
    ]


class FinishInfoC(ctypes.Structure):
    _fields_ = [
        ("reason", c_int),
        ("error", c_int),
        ("prompt_tokens", c_uint32),
        ("cached_tokens", c_uint32),
        ("completion_tokens", c_uint32),
        ("queue_us", c_uint64),
        ("ttft_us", c_uint64),
        ("total_us", c_uint64),
        ("reserved", c_uint64 * 4),
    ]


VLM_MAX_TOP_LOGPROBS = 20


class LogprobC(ctypes.Structure):
    _fields_ = [
        ("token", c_int32),
        ("logprob", c_float),
        ("n_top", c_uint32),
        ("top_ids", c_int32 * VLM_MAX_TOP_LOGPROBS),
        ("top_logprobs", c_float * VLM_MAX_TOP_LOGPROBS),
    ]


# DLPack 0.6 (dlpack/dlpack.h)
class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", c_int), ("device_id", c_int)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", c_uint8), ("bits", c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", c_void_p),
        ("device", DLDevice),
        ("ndim", c_int),
        ("dtype", DLDataType),
        ("shape", POINTER(c_int64)),
        ("strides", POINTER(c_int64)),
        ("byte_offset", c_uint64),
    ]


class DLManagedTensor(ctypes.Structure):
    pass


DELETER = ctypes.CFUNCTYPE(None, POINTER(DLManagedTensor))
DLManagedTensor._fields_ = [
    ("dl_tensor", DLTensor),
    ("manager_ctx", c_void_p),
    ("deleter", c_void_p),
]

class DLPackVersion(ctypes.Structure):
    _fields_ = [("major", c_uint32), ("minor", c_uint32)]


class DLManagedTensorVersioned(ctypes.Structure):
    _fields_ = [
        ("version", DLPackVersion),
        ("manager_ctx", c_void_p),
        ("deleter", c_void_p),
        ("flags", c_uint64),
        ("dl_tensor", DLTensor),
    ]


DELETER_VERSIONED = ctypes.CFUNCTYPE(None, POINTER(DLManagedTensorVersioned))

VLM_REQUEST_GENERATE = 0
VLM_REQUEST_ECHO = 1
VLM_FINISH_STOP, VLM_FINISH_LENGTH, VLM_FINISH_CANCELLED, VLM_FINISH_ERROR = 0, 1, 2, 3

vlm_strerror = _fn("vlm_strerror", c_char_p, c_int, optional=True)
vlm_last_error = _fn("vlm_last_error", c_char_p, optional=True)
vlm_connect = _fn("vlm_connect", c_int, POINTER(ConnectOpts), POINTER(c_void_p), optional=True)
vlm_disconnect = _fn("vlm_disconnect", None, c_void_p, optional=True)
vlm_conn_alive = _fn("vlm_conn_alive", c_int, c_void_p, optional=True)
vlm_conn_arena_bytes = _fn("vlm_conn_arena_bytes", c_uint64, c_void_p, optional=True)
vlm_conn_fd = _fn("vlm_conn_fd", c_int, c_void_p, optional=True)
vlm_conn_arm = _fn("vlm_conn_arm", c_int, c_void_p, optional=True)
vlm_conn_process = _fn("vlm_conn_process", c_int, c_void_p, optional=True)
vlm_conn_next_ready = _fn("vlm_conn_next_ready", c_void_p, c_void_p, optional=True)
vlm_request_new = _fn("vlm_request_new", c_int, c_void_p, POINTER(c_void_p), optional=True)
vlm_request_free = _fn("vlm_request_free", None, c_void_p, optional=True)
vlm_request_set_tokens = _fn("vlm_request_set_tokens", c_int, c_void_p, POINTER(c_int32), c_size_t,
                             optional=True)
vlm_request_set_params = _fn("vlm_request_set_params", c_int, c_void_p, POINTER(GenParams),
                             optional=True)
vlm_request_set_kind = _fn("vlm_request_set_kind", c_int, c_void_p, c_int, optional=True)
vlm_request_add_tensor = _fn("vlm_request_add_tensor", c_int, c_void_p, POINTER(MmInfo),
                             POINTER(DLManagedTensor), optional=True)
vlm_request_add_tensor_versioned = _fn("vlm_request_add_tensor_versioned", c_int, c_void_p,
                                       POINTER(MmInfo), POINTER(DLManagedTensorVersioned),
                                       optional=True)
vlm_submit = _fn("vlm_submit", c_int, c_void_p, optional=True)
vlm_stream_read = _fn("vlm_stream_read", c_int, c_void_p, POINTER(c_int32), c_size_t, c_int,
                      optional=True)
vlm_cancel = _fn("vlm_cancel", c_int, c_void_p, optional=True)
vlm_request_finish_info = _fn("vlm_request_finish_info", c_int, c_void_p, POINTER(FinishInfoC),
                              optional=True)
vlm_request_logprob = _fn("vlm_request_logprob", c_int, c_void_p, c_size_t, POINTER(LogprobC),
                          optional=True)
vlm_request_pending = _fn("vlm_request_pending", c_int, c_void_p, optional=True)
vlm_request_id = _fn("vlm_request_id", c_uint64, c_void_p, optional=True)
vlm_request_error_message = _fn("vlm_request_error_message", c_char_p, c_void_p, optional=True)


# ---- images and videos (vlm.h, since 0.3) ----
class VisionConfig(ctypes.Structure):
    _fields_ = [
        ("patch_size", c_uint32),
        ("temporal_patch_size", c_uint32),
        ("merge_size", c_uint32),
        ("min_pixels", c_uint64),
        ("max_pixels", c_uint64),
        ("image_mean", c_float * 3),
        ("image_std", c_float * 3),
        ("reserved", c_uint64 * 4),
    ]


class ImageOpts(ctypes.Structure):
    _fields_ = [
        ("min_pixels", c_uint64),
        ("max_pixels", c_uint64),
        ("max_source_pixels", c_uint64),
        ("dtype", c_int),
        ("reserved", c_uint64 * 4),
    ]


class VideoOpts(ctypes.Structure):
    _fields_ = [
        ("source_fps", c_double),
        ("fps", c_double),
        ("num_frames", c_uint32),
        ("min_frames", c_uint32),
        ("max_frames", c_uint32),
        ("max_video_tokens", c_uint32),
        ("reserved", c_uint64 * 4),
    ]


VLM_DTYPE_F32, VLM_DTYPE_F16, VLM_DTYPE_BF16 = 0, 1, 2
vlm_vision_config_default = _fn("vlm_vision_config_default", None, POINTER(VisionConfig),
                                optional=True)
vlm_vision_config_load = _fn("vlm_vision_config_load", c_int, c_char_p, POINTER(VisionConfig),
                             optional=True)
vlm_vision_pixel_dtype = _fn("vlm_vision_pixel_dtype", c_int, c_char_p, POINTER(c_int),
                             optional=True)
vlm_image_load_file = _fn("vlm_image_load_file", c_int, c_char_p, POINTER(VisionConfig),
                          POINTER(ImageOpts), POINTER(c_void_p), optional=True)
vlm_image_load_memory = _fn("vlm_image_load_memory", c_int, c_char_p, c_size_t,
                            POINTER(VisionConfig), POINTER(ImageOpts), POINTER(c_void_p),
                            optional=True)
vlm_image_from_rgb = _fn("vlm_image_from_rgb", c_int, c_void_p, c_uint32, c_uint32, c_size_t,
                         POINTER(VisionConfig), POINTER(ImageOpts), POINTER(c_void_p),
                         optional=True)
vlm_video_from_rgb = _fn("vlm_video_from_rgb", c_int, POINTER(c_void_p), c_size_t, c_uint32,
                         c_uint32, c_size_t, POINTER(VisionConfig), POINTER(ImageOpts),
                         POINTER(c_void_p), optional=True)
vlm_video_config_default = _fn("vlm_video_config_default", None, POINTER(VisionConfig),
                               optional=True)
vlm_video_config_load = _fn("vlm_video_config_load", c_int, c_char_p, POINTER(VisionConfig),
                            POINTER(VideoOpts), optional=True)
vlm_video_sample = _fn("vlm_video_sample", c_int, c_size_t, c_uint32, POINTER(VideoOpts),
                       POINTER(c_uint32), POINTER(c_size_t), POINTER(c_double), optional=True)
vlm_video_from_frames = _fn("vlm_video_from_frames", c_int, POINTER(c_void_p), c_size_t, c_uint32,
                            c_uint32, c_size_t, POINTER(VisionConfig), POINTER(ImageOpts),
                            POINTER(VideoOpts), POINTER(c_void_p), optional=True)
vlm_video_load_frames = _fn("vlm_video_load_frames", c_int, POINTER(c_char_p), c_size_t,
                            POINTER(VisionConfig), POINTER(ImageOpts), POINTER(VideoOpts),
                            POINTER(c_void_p), optional=True)
vlm_video_second_per_grid = _fn("vlm_video_second_per_grid", c_double, c_void_p, optional=True)
vlm_image_free = _fn("vlm_image_free", None, c_void_p, optional=True)
vlm_image_grid = _fn("vlm_image_grid", None, c_void_p, POINTER(c_uint32), optional=True)
vlm_image_tokens = _fn("vlm_image_tokens", c_uint32, c_void_p, optional=True)
vlm_image_is_video = _fn("vlm_image_is_video", c_bool, c_void_p, optional=True)
vlm_image_pixels = _fn("vlm_image_pixels", c_void_p, c_void_p, POINTER(c_int), POINTER(c_size_t),
                       POINTER(c_size_t), optional=True)
vlm_request_add_image = _fn("vlm_request_add_image", c_int, c_void_p, c_int32, c_void_p,
                            optional=True)
vlm_request_add_image_file = _fn("vlm_request_add_image_file", c_int, c_void_p, c_int32, c_char_p,
                                 POINTER(VisionConfig), POINTER(ImageOpts), POINTER(c_uint32),
                                 POINTER(c_uint32), optional=True)
vlm_request_add_image_memory = _fn("vlm_request_add_image_memory", c_int, c_void_p, c_int32,
                                   c_char_p, c_size_t, POINTER(VisionConfig), POINTER(ImageOpts),
                                   POINTER(c_uint32), POINTER(c_uint32), optional=True)
vlm_request_add_video_files = _fn("vlm_request_add_video_files", c_int, c_void_p, c_int32,
                                  POINTER(c_char_p), c_size_t, POINTER(VisionConfig),
                                  POINTER(ImageOpts), POINTER(VideoOpts), POINTER(c_uint32),
                                  POINTER(c_uint32), optional=True)
vlm_request_add_image_rgb = _fn("vlm_request_add_image_rgb", c_int, c_void_p, c_int32, c_void_p,
                                c_uint32, c_uint32, c_size_t, POINTER(VisionConfig),
                                POINTER(ImageOpts), POINTER(c_uint32), POINTER(c_uint32),
                                optional=True)

vlm_request_add_video_rgb = _fn("vlm_request_add_video_rgb", c_int, c_void_p, c_int32,
                                POINTER(c_void_p), c_size_t, c_uint32, c_uint32, c_size_t,
                                POINTER(VisionConfig), POINTER(ImageOpts), POINTER(VideoOpts),
                                POINTER(c_uint32), POINTER(c_uint32), optional=True)
vlm_image_probe_file = _fn("vlm_image_probe_file", c_int, c_char_p, POINTER(VisionConfig),
                           POINTER(ImageOpts), POINTER(c_uint32), POINTER(c_uint32),
                           optional=True)
vlm_image_probe_memory = _fn("vlm_image_probe_memory", c_int, c_char_p, c_size_t,
                             POINTER(VisionConfig), POINTER(ImageOpts), POINTER(c_uint32),
                             POINTER(c_uint32), optional=True)
vlm_image_probe_size = _fn("vlm_image_probe_size", c_int, c_uint32, c_uint32,
                           POINTER(VisionConfig), POINTER(ImageOpts), POINTER(c_uint32),
                           POINTER(c_uint32), optional=True)
vlm_video_probe_files = _fn("vlm_video_probe_files", c_int, POINTER(c_char_p), c_size_t,
                            POINTER(VisionConfig), POINTER(ImageOpts), POINTER(VideoOpts),
                            POINTER(c_uint32), POINTER(c_uint32), optional=True)
vlm_video_probe_size = _fn("vlm_video_probe_size", c_int, c_size_t, c_uint32, c_uint32,
                           POINTER(VisionConfig), POINTER(ImageOpts), POINTER(VideoOpts),
                           POINTER(c_uint32), POINTER(c_uint32), optional=True)


class ConnStats(ctypes.Structure):
    _fields_ = [("requests_submitted", c_uint64), ("tensors_copied", c_uint64),
                ("bytes_copied", c_uint64), ("tensors_in_place", c_uint64),
                ("tensors_cuda", c_uint64), ("images_preprocessed", c_uint64),
                ("images_reused", c_uint64), ("reserved", c_uint64 * 5)]


vlm_conn_stats = _fn("vlm_conn_stats", c_int, c_void_p, POINTER(ConnStats), optional=True)


def have_client_api():
    return vlm_connect is not None


def last_error():
    if vlm_last_error is None:
        return ""
    s = vlm_last_error()
    return s.decode("utf-8", "replace") if s else ""


def request_error_message(h):
    """vlmd's reason for failing request h ("" when it gave none, or an older library)."""
    if vlm_request_error_message is None or not h:
        return ""
    s = vlm_request_error_message(h)
    return s.decode("utf-8", "replace") if s else ""


def strerror(code):
    """Text of a (positive or negative) errno, vlmd's own wording where it has one."""
    code = abs(int(code))
    if vlm_strerror is not None:
        s = vlm_strerror(-code)
        if s:
            return s.decode("utf-8", "replace")
    return os.strerror(code) if code else "success"


def check(r, what=None, use_last=False):
    """Raise VlmError for a negative return; pass anything else through. use_last: the call was
    a vlm.h function, so vlm_last_error() of this thread describes the failure."""
    if r < 0:
        msg = (use_last and last_error()) or strerror(r)
        raise VlmError(-r, "%s: %s" % (what, msg) if what else msg)
    return r


__all__ = ["lib", "path", "VlmError", "LibraryNotFound", "check", "strerror", "errno"]
