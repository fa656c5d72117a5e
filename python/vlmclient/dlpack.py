"""Taking DLPack tensors from Python objects and handing them to libvlmclient.

The protocol: obj.__dlpack__() returns a PyCapsule named "dltensor" holding a DLManagedTensor*.
The consumer takes the pointer, renames the capsule "used_dltensor" (so the capsule's destructor
no longer frees the tensor) and from then on owns it: it must call the tensor's deleter exactly
once. libvlmclient does that (vlm_request_add_tensor takes ownership whatever it returns).

Why every tensor is wrapped: a producer's deleter may need the GIL (NumPy's drops a reference to
the array), but libvlmclient calls deleters from whatever thread routes vlmd's "released"
completion, inside calls that ctypes made with the GIL released. So the C library gets a small
wrapper DLManagedTensor whose deleter is a ctypes callback (ctypes takes the GIL for callbacks);
it calls the producer's deleter with the GIL held (a PYFUNCTYPE call keeps it) and frees the
wrapper. The wrapper copies the DLTensor fields: shape and strides keep pointing into the
producer's tensor, which stays alive until its deleter runs.
"""

import ctypes
import threading

from . import _lib
from ._lib import DLManagedTensor

_PyCapsule_IsValid = ctypes.pythonapi.PyCapsule_IsValid
_PyCapsule_IsValid.restype = ctypes.c_int
_PyCapsule_IsValid.argtypes = [ctypes.py_object, ctypes.c_char_p]
_PyCapsule_GetPointer = ctypes.pythonapi.PyCapsule_GetPointer
_PyCapsule_GetPointer.restype = ctypes.c_void_p
_PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_PyCapsule_SetName = ctypes.pythonapi.PyCapsule_SetName
_PyCapsule_SetName.restype = ctypes.c_int
_PyCapsule_SetName.argtypes = [ctypes.py_object, ctypes.c_char_p]

# PyCapsule_SetName keeps the pointer, not a copy: the name must live as long as the capsule.
_USED_NAME = ctypes.create_string_buffer(b"used_dltensor")
_NAME = b"dltensor"

# Calls a producer's deleter without releasing the GIL.
_PY_DELETER = ctypes.PYFUNCTYPE(None, ctypes.c_void_p)

KDL_CPU, KDL_CUDA, KDL_CUDA_HOST = 1, 2, 3

_lock = threading.Lock()
_live = {}          # key -> (wrapper struct, producer DLManagedTensor address)
_next_key = [1]


def _wrapper_deleter(ptr):
    key = ptr.contents.manager_ctx
    with _lock:
        entry = _live.pop(key, None)
    if entry is None:
        return  # never: libvlmclient calls each deleter once
    _, orig = entry
    _call_deleter(orig)


_DELETER_CB = _lib.DELETER(_wrapper_deleter)   # lives as long as the module


def _call_deleter(addr):
    t = DLManagedTensor.from_address(addr)
    if t.deleter:
        _PY_DELETER(t.deleter)(addr)


def live_count():
    """Tensors handed to libvlmclient whose deleter has not run yet (tests use it)."""
    with _lock:
        return len(_live)


class Taken:
    """A DLManagedTensor taken from a Python object, not yet handed on. Exactly one of
    give() (ownership to the C library) or release() (deleter now) must follow."""

    def __init__(self, obj):
        self.device = None
        self._addr = None
        cap = obj
        if not _is_capsule(obj):
            if not hasattr(obj, "__dlpack__"):
                raise TypeError("%s has no __dlpack__: pass a NumPy / PyTorch / CuPy array or "
                                "a DLPack capsule" % type(obj).__name__)
            try:
                cap = obj.__dlpack__()
            except BufferError:
                # NumPy refuses read-only arrays; a copy is writable (vlmd only reads).
                if not hasattr(obj, "copy"):
                    raise
                cap = obj.copy().__dlpack__()
        if not _PyCapsule_IsValid(cap, _NAME):
            raise ValueError("not a DLPack capsule named 'dltensor' (already consumed?)")
        addr = _PyCapsule_GetPointer(cap, _NAME)
        if _PyCapsule_SetName(cap, _USED_NAME) != 0:
            raise RuntimeError("PyCapsule_SetName failed")
        self._addr = addr
        t = DLManagedTensor.from_address(addr).dl_tensor
        self.device = (t.device.device_type, t.device.device_id)
        self.shape = tuple(t.shape[i] for i in range(t.ndim))

    def give(self):
        """Pointer to a wrapper for libvlmclient, which now owns the tensor."""
        addr, self._addr = self._addr, None
        src = DLManagedTensor.from_address(addr)
        w = DLManagedTensor()
        w.dl_tensor = src.dl_tensor
        with _lock:
            key = _next_key[0]
            _next_key[0] += 1
            _live[key] = (w, addr)
        w.manager_ctx = key
        w.deleter = ctypes.cast(_DELETER_CB, ctypes.c_void_p).value
        return ctypes.pointer(w)

    def release(self):
        if self._addr is not None:
            addr, self._addr = self._addr, None
            _call_deleter(addr)

    def __del__(self):
        self.release()


def _is_capsule(obj):
    return type(obj).__name__ == "PyCapsule"


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
