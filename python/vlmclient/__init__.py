"""vlmclient — Python client of vlmd, the local vision-language model daemon.

Pure Python over libvlmclient (ctypes). See docs/PYTHON.md.
"""

from . import _lib
from ._lib import LibraryNotFound, VlmError
from .client import Client, FinishInfo, GenerationConfig, Logprob, MultiMediaInfo, Stream
from .tokenizer import ChatItem, ChatPrompt, StreamDecoder, Tokenizer
from .vision import (Image, VisionConfig, pixel_dtype, preprocess_image, preprocess_video,
                     sample_frames)

__version__ = "0.1.0"


def library_version():
    """Version of the libvlmclient that was loaded ("MAJOR.MINOR.PATCH")."""
    return _lib.vlm_version_string().decode()


def library_path():
    """Path libvlmclient was loaded from."""
    return _lib.path


__all__ = ["Client", "MultiMediaInfo", "GenerationConfig", "Stream", "FinishInfo", "Logprob",
           "VlmError", "LibraryNotFound", "Tokenizer", "StreamDecoder", "ChatPrompt", "ChatItem",
           "library_version", "library_path", "Image", "VisionConfig", "pixel_dtype",
           "preprocess_image", "preprocess_video", "sample_frames"]
