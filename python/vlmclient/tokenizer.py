"""The Qwen2 / Qwen2-VL tokenizer of libvlmclient: encode, decode, streaming decode, chat template.

Same ids as Hugging Face `tokenizers` for a Qwen2 tokenizer.json (the C library is tested against
it), without needing `tokenizers` or `transformers` installed. The chat template is Qwen2-VL's
ChatML with the image/video pad expansion of Qwen2VLProcessor: apply_chat_template() returns the
prompt ids plus one ChatItem per image/video, from which MultiMediaInfo.from_chat() builds the
request's multimodal info.
"""

import ctypes
import json
from dataclasses import dataclass
from typing import List, Optional, Sequence

from . import _lib
from ._lib import VlmError


def _take_ids(ptr, n):
    try:
        return ptr[:n] if n else []
    finally:
        _lib.vlm_tokens_free(ptr)


def _ids_array(ids):
    ids = list(ids)
    return (ctypes.c_int32 * len(ids))(*ids), len(ids)


@dataclass(frozen=True)
class ChatItem:
    """One run of placeholder tokens in a chat prompt (an image or a video)."""
    kind: str               # "image" or "video"
    placeholder_id: int     # <|image_pad|> or <|video_pad|>
    offset: int             # index of the run's first id in the prompt
    length: int             # number of placeholder ids = t*h*w / merge_size**2 = embedding rows
    grid_thw: tuple         # (t, h, w) patch grid before the spatial merge (image_grid_thw)


@dataclass(frozen=True)
class ChatPrompt:
    ids: List[int]
    items: List[ChatItem]
    merge_size: int = 2


class Tokenizer:
    """A loaded tokenizer.json. Thread-safe: any number of threads may encode/decode at once."""

    def __init__(self, path=None, *, json_text=None):
        h = ctypes.c_void_p()
        err = ctypes.create_string_buffer(512)
        if json_text is not None:
            data = json_text.encode() if isinstance(json_text, str) else bytes(json_text)
            r = _lib.vlm_tokenizer_load_buffer(data, len(data), ctypes.byref(h), err, len(err))
            where = "tokenizer"
        else:
            if path is None:
                raise TypeError("Tokenizer(path) or Tokenizer(json_text=...)")
            path = str(path)
            r = _lib.vlm_tokenizer_load(path.encode(), ctypes.byref(h), err, len(err))
            where = path
        if r < 0:
            msg = err.value.decode("utf-8", "replace") or _lib.strerror(r)
            raise VlmError(-r, "%s: %s" % (where, msg) if where not in msg else msg)
        self._h = h

    def close(self):
        if getattr(self, "_h", None):
            _lib.vlm_tokenizer_free(self._h)
            self._h = None

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def handle(self):
        if not self._h:
            raise ValueError("tokenizer is closed")
        return self._h

    # ---- encode / decode ----

    def encode(self, text: str, *, special_as_text: bool = False) -> List[int]:
        """Token ids of text. special_as_text: "<|im_end|>" etc. in text stay plain text."""
        data = text.encode("utf-8")
        ids = ctypes.POINTER(ctypes.c_int32)()
        n = ctypes.c_size_t()
        flags = _lib.VLM_ENCODE_SPECIAL_AS_TEXT if special_as_text else 0
        _lib.check(_lib.vlm_tokenizer_encode(self.handle, data, len(data), flags, ctypes.byref(ids),
                                             ctypes.byref(n)), "encode")
        return _take_ids(ids, n.value)

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        arr, n = _ids_array(ids)
        text = ctypes.POINTER(ctypes.c_char)()
        tl = ctypes.c_size_t()
        flags = _lib.VLM_DECODE_SKIP_SPECIAL if skip_special_tokens else 0
        _lib.check(_lib.vlm_tokenizer_decode(self.handle, arr, n, flags, ctypes.byref(text),
                                             ctypes.byref(tl)), "decode")
        try:
            return ctypes.string_at(text, tl.value).decode("utf-8")
        finally:
            _lib.vlm_text_free(text)

    def stream_decoder(self, *, skip_special_tokens: bool = False) -> "StreamDecoder":
        return StreamDecoder(self, skip_special_tokens=skip_special_tokens)

    # ---- vocabulary ----

    @property
    def vocab_size(self) -> int:
        return _lib.vlm_tokenizer_vocab_size(self.handle)

    def token_to_id(self, token: str) -> Optional[int]:
        r = _lib.vlm_tokenizer_token_to_id(self.handle, token.encode("utf-8"))
        return None if r < 0 else r

    def id_to_token(self, token_id: int) -> Optional[str]:
        s = _lib.vlm_tokenizer_id_to_token(self.handle, token_id)
        return None if s is None else s.decode("utf-8", "replace")

    def is_special(self, token_id: int) -> bool:
        return bool(_lib.vlm_tokenizer_is_special(self.handle, token_id))

    # ---- chat template ----

    def apply_chat_template(self, messages, *, add_generation_prompt: bool = True,
                            add_vision_id: bool = False, merge_size: int = 2,
                            content_special_as_text: bool = False,
                            default_system: Optional[str] = None) -> ChatPrompt:
        """Qwen2-VL ChatML prompt ids of a conversation in Hugging Face's messages format.

        messages: [{"role": "user", "content": "text"}, {"role": "user", "content": [
                   {"type": "image", "grid_thw": [1, 28, 28]}, {"type": "text", "text": "..."}]}]
        (or a JSON string of that). Images/videos need their patch grid ("grid_thw", as
        Qwen2VLProcessor's image_grid_thw); each gets t*h*w/merge_size**2 pad tokens.
        """
        text = messages if isinstance(messages, (str, bytes)) else json.dumps(messages)
        data = text.encode("utf-8") if isinstance(text, str) else text
        chat = ctypes.c_void_p()
        err = ctypes.create_string_buffer(512)
        r = _lib.vlm_chat_from_json(data, len(data), ctypes.byref(chat), err, len(err))
        if r < 0:
            raise VlmError(-r, "chat: " + (err.value.decode("utf-8", "replace")
                                           or _lib.strerror(r)))
        sys_b = default_system.encode("utf-8") if default_system is not None else None
        opts = _lib.ChatOptions(merge_size, add_generation_prompt, add_vision_id,
                                content_special_as_text, sys_b)
        res = _lib.ChatResult()
        try:
            _lib.check(_lib.vlm_chat_encode(self.handle, chat, ctypes.byref(opts),
                                            ctypes.byref(res)), "chat template")
            ids = res.ids[:res.n_ids] if res.n_ids else []
            items = []
            for i in range(res.n_items):
                it = res.items[i]
                items.append(ChatItem("image" if it.kind == _lib.VLM_CHAT_IMAGE else "video",
                                      it.placeholder_id, it.offset, it.length,
                                      (it.grid_t, it.grid_h, it.grid_w)))
        finally:
            _lib.vlm_chat_result_fini(ctypes.byref(res))
            _lib.vlm_chat_free(chat)
        return ChatPrompt(ids, items, merge_size)


class StreamDecoder:
    """Feed generated ids one at a time; get back only complete UTF-8 text."""

    def __init__(self, tokenizer: Tokenizer, *, skip_special_tokens: bool = False):
        self._tok = tokenizer  # keeps the tokenizer alive: it must outlive the decoder
        h = ctypes.c_void_p()
        flags = _lib.VLM_DECODE_SKIP_SPECIAL if skip_special_tokens else 0
        _lib.check(_lib.vlm_detok_new(tokenizer.handle, flags, ctypes.byref(h)), "detok")
        self._h = h

    def feed(self, token_id: int) -> str:
        s = ctypes.POINTER(ctypes.c_char)()
        n = ctypes.c_size_t()
        _lib.check(_lib.vlm_detok_feed(self._h, token_id, ctypes.byref(s), ctypes.byref(n)),
                   "detok")
        return ctypes.string_at(s, n.value).decode("utf-8") if n.value else ""

    def flush(self) -> str:
        s = ctypes.POINTER(ctypes.c_char)()
        n = ctypes.c_size_t()
        _lib.check(_lib.vlm_detok_flush(self._h, ctypes.byref(s), ctypes.byref(n)), "detok")
        return ctypes.string_at(s, n.value).decode("utf-8") if n.value else ""

    def close(self):
        if getattr(self, "_h", None):
            _lib.vlm_detok_free(self._h)
            self._h = None

    def __del__(self):
        self.close()
