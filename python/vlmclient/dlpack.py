"""Taking DLPack tensors from Python objects and handing them to libvlmclient.

The protocol: obj.__dlpack__() returns a PyCapsule named "dltensor" holding a DLManagedTensor*
(DLPack 0.x), or — when asked with max_version=(1, 0) by a producer that speaks DLPack 1.x — one
named "dltensor_versioned" holding a DLManagedTensorVersioned*. The consumer takes the pointer,
renames the capsule "used_dltensor" / "used_dltensor_versioned" (so the capsule's destructor no
longer frees the tensor) and from then on owns it: it must call the tensor's deleter exactly once.
libvlmclient does that (vlm_request_add_tensor[_versioned] takes ownership whatever it returns).
The plain DLPack 0.x export is asked for first (every producer has it); the versioned one only
when that fails, which is how a read-only NumPy >= 2.1 array is passed without a copy.

Why every tensor is wrapped: a producer's deleter may need the GIL (NumPy's drops a reference to
the array), but libvlmclient calls deleters from whatever thread routes vlmd's "released"
completion, inside calls that ctypes made with the GIL released. So the C library gets a small
wrapper tensor whose deleter is a ctypes callback (ctypes takes the GIL for callbacks); it calls
the producer's deleter with the GIL held (a PYFUNCTYPE call keeps it) and drops the wrapper. The
wrapper copies the DLTensor fields: shape and strides keep pointing into the producer's tensor,
which stays alive until its deleter runs.
"""

import ctypes
import threading

from . import _lib
from ._lib import DLManagedTensor, DLManagedTensorVersioned

_api = ctypes.pythonapi
_api.PyCapsule_IsValid.restype = ctypes.c_int
_api.PyCapsule_IsValid.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_SetName.restype = ctypes.c_int
_api.PyCapsule_SetName.argtypes = [ctypes.py_object, ctypes.c_char_p]

# PyCapsule_SetName keeps the pointer, not a copy: the names must live as long as the capsules.
_NAMES = {False: (b"dltensor", ctypes.create_string_buffer(b"used_dltensor")),
          True: (b"dltensor_versioned", ctypes.create_string_buffer(b"used_dltensor_versioned"))}

# Calls a producer's deleter without releasing the GIL.
_PY_DELETER = ctypes.PYFUNCTYPE(None, ctypes.c_void_p)

KDL_CPU, KDL_CUDA, KDL_CUDA_HOST = 1, 2, 3

_lock = threading.Lock()
_live = {}          # key -> (wrapper struct, producer tensor address, versioned)
_next_key = [1]


def _wrapper_deleter(ptr):
    key = ptr.contents.manager_ctx
    with _lock:
        entry = _live.pop(key, None)
    if entry is not None:       # libvlmclient calls each deleter once
        _call_deleter(entry[1], entry[2])


_DELETER_CB = _lib.DELETER(_wrapper_deleter)                       # live as long as the module
_DELETER_CB_V = _lib.DELETER_VERSIONED(_wrapper_deleter)


def _call_deleter(addr, versioned):
    t = (DLManagedTensorVersioned if versioned else DLManagedTensor).from_address(addr)
    if t.deleter:
        _PY_DELETER(t.deleter)(addr)


def live_count():
    """Tensors handed to libvlmclient whose deleter has not run yet (tests use it)."""
    with _lock:
        return len(_live)


def _is_capsule(obj):
    return type(obj).__name__ == "PyCapsule"


def _export(obj):
    """A DLPack capsule of obj."""
    if not hasattr(obj, "__dlpack__"):
        raise TypeError("%s has no __dlpack__: pass a NumPy / PyTorch / CuPy array or a DLPack "
                        "capsule" % type(obj).__name__)
    try:
        return obj.__dlpack__()
    except BufferError:
        # NumPy refuses read-only arrays in DLPack 0.x; 1.x can flag them read-only (vlmd only
        # reads). Older producers: a copy is writable.
        try:
            return obj.__dlpack__(max_version=(1, 0))
        except (TypeError, BufferError):
            if not hasattr(obj, "copy"):
                raise
            return obj.copy().__dlpack__()


class Taken:
    """A DLPack tensor taken from a Python object, not yet handed on. Exactly one of add_to()
    (ownership to the C library) or release() (deleter now) must follow."""

    def __init__(self, obj):
        self._addr = None
        cap = obj if _is_capsule(obj) else _export(obj)
        for versioned in (False, True):
            name, used = _NAMES[versioned]
            if _api.PyCapsule_IsValid(cap, name):
                break
        else:
            raise ValueError("not an unused DLPack capsule ('dltensor' or 'dltensor_versioned')")
        addr = _api.PyCapsule_GetPointer(cap, name)
        if _api.PyCapsule_SetName(cap, used) != 0:
            raise RuntimeError("PyCapsule_SetName failed")
        self._addr = addr
        self.versioned = versioned
        src = (DLManagedTensorVersioned if versioned else DLManagedTensor).from_address(addr)
        t = src.dl_tensor
        self.device = (t.device.device_type, t.device.device_id)
        self.shape = tuple(t.shape[i] for i in range(t.ndim))

    def add_to(self, req, info):
        """vlm_request_add_tensor[_versioned](req, info, wrapper): the library owns the tensor
        now, whatever the call returns. Returns the call's result."""
        addr, self._addr = self._addr, None
        if self.versioned:
            if _lib.vlm_request_add_tensor_versioned is None:
                _call_deleter(addr, True)
                return -95
            src = DLManagedTensorVersioned.from_address(addr)
            w = DLManagedTensorVersioned()
            w.version = src.version
            w.flags = src.flags
            cb, fn = _DELETER_CB_V, _lib.vlm_request_add_tensor_versioned
        else:
            src = DLManagedTensor.from_address(addr)
            w = DLManagedTensor()
            cb, fn = _DELETER_CB, _lib.vlm_request_add_tensor
        w.dl_tensor = src.dl_tensor
        with _lock:
            key = _next_key[0]
            _next_key[0] += 1
            _live[key] = (w, addr, self.versioned)
        w.manager_ctx = key
        w.deleter = ctypes.cast(cb, ctypes.c_void_p).value
        return fn(req, info, ctypes.pointer(w))

    def release(self):
        if self._addr is not None:
            addr, self._addr = self._addr, None
            _call_deleter(addr, self.versioned)

    def __del__(self):
        self.release()


def synchronize(obj, device):
    """Make the writes that produced a CUDA tensor complete before vlmd reads it (vlm.h: vlmd
    uses no event from the client). Uses the producer's own current stream."""
    if device[0] != KDL_CUDA:
        return
    mod = type(obj).__module__.split(".")[0]
    if mod == "torch":
        import torch
        torch.cuda.current_stream(obj.device).synchronize()
    elif mod == "cupy":
        import cupy
        cupy.cuda.get_current_stream().synchronize()
