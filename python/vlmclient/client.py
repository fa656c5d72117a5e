"""Connections, requests and streamed results: the Python face of include/vlm/vlm.h.

    client = Client()                                   # $VLM_SOCKET or the default socket
    mm = MultiMediaInfo()
    mm.add_multimedia_content(image_pad_id, [emb], grids=[(1, 16, 16)])
    stream = client.generate(token_ids, mm, GenerationConfig(max_tokens=64))
    for token in stream:                                # streams as vlmd produces them
        ...                                             # (or: async for token in stream)
    stream.finish                                       # reason, usage, timings

The names follow the reference system's Python API (DashInfer-VLM: MultiMediaInfo keyed by the
placeholder token id with a list of DLPack tensors; a generation config; a streaming result), with
vlmd's semantics: the k-th tensor added for a placeholder id fills the k-th run of that id in the
prompt, and its grid is the M-RoPE grid after the spatial merge (t*h*w == rows).

Threads: a Client may be shared by threads; a Stream is read by one thread at a time, and
cancel() may be called from any thread. Blocking reads release the GIL and wake at least every
200 ms, so Ctrl-C (KeyboardInterrupt) works while waiting.
"""

import asyncio
import atexit
import ctypes
import weakref
from dataclasses import dataclass, field, fields
from typing import List, Optional, Sequence, Tuple

from . import _lib, dlpack
from ._lib import VlmError

_SLICE_MS = 200
_SUBMIT_WAIT_S = 30   # longest wait for room in the submission ring
_clients = weakref.WeakSet()


def _need_api():
    if not _lib.have_client_api():
        raise VlmError(95, "this libvlmclient (%s) has no client API (vlm.h)" % _lib.path)


@dataclass
class GenerationConfig:
    """Generation parameters; the defaults mean "vlmd's default" (greedy, no penalties)."""
    max_tokens: int = 0
    min_tokens: int = 0
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 0.0
    min_p: float = 0.0
    repetition_penalty: float = 0.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    seed: Optional[int] = None
    stop_token_ids: Sequence[int] = field(default_factory=tuple)
    ignore_eos: bool = False
    logprobs: bool = False
    top_logprobs: int = 0
    priority: int = 0

    # Keys of the reference system's / Hugging Face's generation configs that mean the same.
    _ALIASES = {"max_new_tokens": "max_tokens", "min_new_tokens": "min_tokens",
                "stop_words_ids": "stop_token_ids", "eos_token_id": "stop_token_ids"}

    @classmethod
    def from_dict(cls, d):
        """From a dict; also accepts max_new_tokens, min_new_tokens, stop_words_ids (lists of
        single ids) and eos_token_id. Unknown keys raise TypeError (a silently ignored
        parameter is a wrong result)."""
        names = {f.name for f in fields(cls)}
        kw = {}
        for k, v in d.items():
            k = cls._ALIASES.get(k, k)
            if k not in names:
                raise TypeError("unknown generation parameter %r" % k)
            if k == "stop_token_ids":
                ids = [v] if isinstance(v, int) else v
                flat = []
                for x in ids:
                    if isinstance(x, (list, tuple)):
                        if len(x) != 1:
                            raise ValueError("stop words of several tokens are not supported")
                        x = x[0]
                    flat.append(int(x))
                v = tuple(kw.get(k, ())) + tuple(flat)
            kw[k] = v
        return cls(**kw)

    def _to_c(self):
        # ctypes would wrap out-of-range integers silently (-1 -> 4294967295): refuse them
        for name, lo, hi in (("max_tokens", 0, 2**32 - 1), ("min_tokens", 0, 2**32 - 1),
                             ("top_k", -2**31, 2**31 - 1), ("top_logprobs", 0, 20),
                             ("priority", -2**31, 2**31 - 1)):
            v = getattr(self, name)
            if not lo <= int(v) <= hi:
                raise ValueError("%s=%r: must be in %d..%d" % (name, v, lo, hi))
        if self.seed is not None and not 0 <= int(self.seed) < 2**64:
            raise ValueError("seed=%r: must be in 0..2**64-1" % (self.seed,))
        p = _lib.GenParams()
        p.max_tokens = self.max_tokens
        p.min_tokens = self.min_tokens
        p.temperature = self.temperature
        p.top_k = self.top_k
        p.top_p = self.top_p
        p.min_p = self.min_p
        p.repetition_penalty = self.repetition_penalty
        p.frequency_penalty = self.frequency_penalty
        p.presence_penalty = self.presence_penalty
        p.priority = self.priority
        if self.seed is not None:
            p.seed = self.seed
            p.has_seed = True
        p.ignore_eos = self.ignore_eos
        p.logprobs = bool(self.logprobs or self.top_logprobs)
        p.top_logprobs = self.top_logprobs
        stop = list(self.stop_token_ids)
        keep = None
        if stop:
            keep = (ctypes.c_int32 * len(stop))(*stop)
            p.stop_ids = ctypes.cast(keep, ctypes.POINTER(ctypes.c_int32))
            p.n_stop_ids = len(stop)
        return p, keep


def _fingerprint(fp):
    if fp is None:
        return None
    if isinstance(fp, str):
        fp = bytes.fromhex(fp)
    fp = bytes(fp)
    if len(fp) not in (16, 32):
        raise ValueError("a fingerprint is 16 or 32 bytes (or their hex), got %d bytes" % len(fp))
    return fp


def _grid(g):
    if g is None:
        return (0, 0, 0)
    g = tuple(int(x) for x in g)
    if len(g) != 3 or min(g) <= 0:
        raise ValueError("a grid is (t, h, w) with positive sizes, got %r" % (g,))
    return g


@dataclass
class _Item:
    placeholder_id: int
    tensor: object
    grid: Tuple[int, int, int]
    fingerprint: Optional[bytes]


class MultiMediaInfo:
    """The embeddings of one request: for each placeholder token id, a list of tensors (any
    object with __dlpack__ — NumPy, PyTorch, CuPy — or a DLPack capsule) with their grids and
    optional fingerprints. Objects are exported when the request is built, so the same
    MultiMediaInfo can serve several requests (a capsule only once)."""

    def __init__(self):
        self._items: List[_Item] = []

    def add_multimedia_content(self, placeholder_id, tensors, grids=None, fingerprints=None):
        """Adds tensors (a list; each [rows, hidden] or [1, rows, hidden], float32/float16/
        bfloat16) for placeholder_id (an int, or its decimal string as in the reference system).
        grids: one (t, h, w) per tensor, the M-RoPE grid after the spatial merge, t*h*w == rows;
        None: a 1 x 1 x rows grid. fingerprints: one 16/32-byte content identity (bytes or hex)
        or None per tensor, for vlmd's prefix cache."""
        pid = int(placeholder_id)
        if pid < 0:
            raise ValueError("placeholder_id must be a token id")
        tensors = list(tensors) if isinstance(tensors, (list, tuple)) else [tensors]
        grids = list(grids) if grids is not None else [None] * len(tensors)
        fps = list(fingerprints) if fingerprints is not None else [None] * len(tensors)
        if len(grids) != len(tensors) or len(fps) != len(tensors):
            raise ValueError("give one grid and one fingerprint (or None) per tensor")
        for t, g, f in zip(tensors, grids, fps):
            self._items.append(_Item(pid, t, _grid(g), _fingerprint(f)))
        return self

    def add_image(self, placeholder_id, image, min_pixels=None, max_pixels=None, **kw):
        """Adds an image (or video) for placeholder_id (<|image_pad|> 151655, <|video_pad|>
        151656): a vlmclient.Image, or anything Image() takes (a file path, encoded bytes, a
        NumPy uint8 [h, w, 3] array, a PIL image; then min_pixels, max_pixels and the keywords
        of Image() apply). Its pixel patches go to vlmd, which runs the vision tower; the
        placeholder run must be image.tokens long. Returns self."""
        from .vision import Image
        pid = int(placeholder_id)
        if pid < 0:
            raise ValueError("placeholder_id must be a token id")
        if not isinstance(image, Image):
            image = Image(image, min_pixels, max_pixels, **kw)
        elif min_pixels is not None or max_pixels is not None or kw:
            raise ValueError("min/max pixels apply when the image is loaded, not to an Image")
        self._items.append(_Item(pid, image, image.grid, None))
        return self

    def add(self, placeholder_id, tensor, grid=None, fingerprint=None):
        """One tensor: add_multimedia_content(placeholder_id, [tensor], [grid], [fingerprint])."""
        return self.add_multimedia_content(placeholder_id, [tensor], [grid], [fingerprint])

    @classmethod
    def from_chat(cls, prompt, tensors, fingerprints=None):
        """For a ChatPrompt from Tokenizer.apply_chat_template: one tensor per image/video item,
        in prompt order; placeholder ids and grids come from the prompt. An item may instead be
        a vlmclient.Image (its patch grid must be the prompt item's grid_thw): vlmd then runs
        the vision tower on it."""
        from .vision import Image
        tensors = list(tensors)
        if len(tensors) != len(prompt.items):
            raise ValueError("the prompt has %d image/video items, %d tensors were given"
                             % (len(prompt.items), len(tensors)))
        fps = list(fingerprints) if fingerprints is not None else [None] * len(tensors)
        mm = cls()
        ms = prompt.merge_size
        for it, t, f in zip(prompt.items, tensors, fps):
            g = it.grid_thw
            if isinstance(t, Image):
                if tuple(t.grid) != tuple(g):
                    raise ValueError("image grid %s != the prompt item's grid_thw %s"
                                     % (t.grid, tuple(g)))
                mm.add_image(it.placeholder_id, t)
                continue
            mm.add(it.placeholder_id, t, (g[0], g[1] // ms, g[2] // ms), f)
        return mm

    def __len__(self):
        return len(self._items)

    def items(self):
        return [(i.placeholder_id, i.tensor, i.grid, i.fingerprint) for i in self._items]


@dataclass(frozen=True)
class FinishInfo:
    reason: str             # "stop", "length", "cancelled", "error"
    error: int              # 0, or the errno the request failed with
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    queue_us: int
    ttft_us: int
    total_us: int
    message: str = ""       # vlmd's reason when it refused or failed the request, else ""

    @property
    def usage(self):
        return {"prompt_tokens": self.prompt_tokens, "cached_tokens": self.cached_tokens,
                "completion_tokens": self.completion_tokens}


_REASONS = {0: "stop", 1: "length", 2: "cancelled", 3: "error"}


@dataclass(frozen=True)
class Logprob:
    token: int
    logprob: float
    top: List[Tuple[int, float]]


class Stream:
    """A submitted request. Iterating yields token ids as they arrive; chunks() yields the
    lists vlmd sent; text(tokenizer) yields decoded text. After the end, .finish holds the
    FinishInfo and .tokens every token. A failed request raises VlmError from the iteration."""

    def __init__(self, client, handle, timeout):
        self._client = client       # keeps the connection open while the stream lives
        self._h = handle
        self._timeout = timeout
        self._buf = (ctypes.c_int32 * 256)()
        self.tokens: List[int] = []
        self.finish: Optional[FinishInfo] = None
        self._error = None

    @property
    def id(self):
        return _lib.vlm_request_id(self._h) if self._h else 0

    @property
    def done(self):
        return self.finish is not None or self._error is not None

    def _read(self):
        """Next list of ids, or None at the end. Raises on failure."""
        if self._error is not None:
            raise self._error
        if self.finish is not None:
            return None
        if not self._h:
            raise ValueError("stream is closed")
        waited = 0.0
        while True:
            if self._timeout is None:
                ms = _SLICE_MS
            else:   # at least 1 ms, so a sub-millisecond timeout still ends
                ms = max(1, min(_SLICE_MS, int(self._timeout * 1000 - waited)))
            r = _lib.vlm_stream_read(self._h, self._buf, len(self._buf), ms)
            if r > 0:
                ids = self._buf[:r]
                self.tokens.extend(ids)
                return ids
            if r in (-110, -11):    # ETIMEDOUT, EAGAIN: the slice passed
                waited += ms
                if self._timeout is not None and waited >= self._timeout * 1000:
                    raise VlmError(110, "no token within %.3g s" % self._timeout)
                continue
            msg = _lib.last_error() if r < 0 else ""   # before finish_info clears it
            self._take_finish()
            if r == 0:
                return None
            self._fail(r, msg)

    def _take_finish(self):
        fi = _lib.FinishInfoC()
        if _lib.vlm_request_finish_info(self._h, ctypes.byref(fi)) == 0:
            self.finish = FinishInfo(_REASONS.get(fi.reason, "error"), fi.error,
                                     fi.prompt_tokens, fi.cached_tokens, fi.completion_tokens,
                                     fi.queue_us, fi.ttft_us, fi.total_us,
                                     _lib.request_error_message(self._h))

    def _fail(self, r, msg):
        """The read failed with r: raise (and keep) the error, with vlmd's reason when it gave
        one (msg is the library's vlm_last_error() of the read: "vlmd: REASON; error -ECODE")."""
        vm = _lib.request_error_message(self._h)
        self._error = VlmError(-r, msg or (vm and "vlmd: " + vm) or _lib.strerror(r), vm)
        raise self._error

    def chunks(self):
        while True:
            ids = self._read()
            if ids is None:
                return
            yield ids

    def __iter__(self):
        for ids in self.chunks():
            yield from ids

    def _read_nowait(self):
        """Ids ready now: a list (empty: nothing yet), or None at the end. Raises on failure."""
        if self._error is not None:
            raise self._error
        if self.finish is not None:
            return None
        if not self._h:
            raise ValueError("stream is closed")
        r = _lib.vlm_stream_read(self._h, self._buf, len(self._buf), 0)
        if r > 0:
            ids = self._buf[:r]
            self.tokens.extend(ids)
            return ids
        if r == -11:
            return []
        msg = _lib.last_error() if r < 0 else ""
        self._take_finish()
        if r == 0:
            return None
        self._fail(r, msg)

    async def achunks(self):
        """asyncio: yields the lists of ids as they arrive. Nothing blocks the event loop: the
        connection's fd is watched by the loop (vlm_conn_fd / vlm_conn_arm / vlm_conn_process),
        so any number of streams wait without a thread each."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            ids = self._read_nowait()
            if ids is None:
                return
            if ids:
                start = loop.time()
                yield ids
                continue
            left = None
            if self._timeout is not None:
                left = self._timeout - (loop.time() - start)
                if left <= 0:
                    raise VlmError(110, "no token within %.3g s" % self._timeout)
            await self._client._async_waker(loop).wait(left)

    async def __aiter__(self):
        async for ids in self.achunks():
            for i in ids:
                yield i

    def text(self, tokenizer, *, skip_special_tokens=True):
        """Yields decoded text pieces (complete UTF-8 only) as tokens arrive."""
        d = tokenizer.stream_decoder(skip_special_tokens=skip_special_tokens)
        try:
            for ids in self.chunks():
                piece = "".join(d.feed(i) for i in ids)
                if piece:
                    yield piece
            tail = d.flush()
            if tail:
                yield tail
        finally:
            d.close()

    def wait(self):
        """Reads to the end; returns every token id."""
        for _ in self.chunks():
            pass
        return self.tokens

    def cancel(self):
        """Asks vlmd to stop; the iteration then ends (reason "cancelled"). Any thread."""
        if self._h and not self.done:
            r = _lib.vlm_cancel(self._h)
            if r < 0 and r != -11:
                _lib.check(r, "cancel", True)

    def logprob(self, index):
        """Logprob of the index-th generated token (config.logprobs), once read."""
        lp = _lib.LogprobC()
        r = _lib.vlm_request_logprob(self._h, index, ctypes.byref(lp))
        if r < 0:
            _lib.check(r, "logprob %d" % index, True)
        return Logprob(lp.token, lp.logprob,
                       [(lp.top_ids[k], lp.top_logprobs[k]) for k in range(lp.n_top)])

    @property
    def logprobs(self):
        return [self.logprob(i) for i in range(len(self.tokens))]

    def close(self):
        """Frees the request (cancelling it if it still runs)."""
        if getattr(self, "_h", None):
            _lib.vlm_request_free(self._h)
            self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


class _AsyncWaker:
    """One per (client, event loop): the loop watches the connection's fd; a stream with nothing
    to read arms it and waits; when it turns readable, completions are routed (vlm_conn_process)
    and every waiting stream re-reads. A waiter also wakes after 100 ms whatever happens, so a
    wake-up consumed by a thread reading the same connection cannot strand it."""

    def __init__(self, client, loop):
        self.h = client._h
        self.loop = loop
        self.fd = client.fileno()
        self.waiters = []
        loop.add_reader(self.fd, self._readable)

    def _readable(self):
        # route what came, drain the ready queue (each waiter re-reads its own stream; a
        # non-empty queue would keep vlm_conn_arm saying "events waiting") and wake everyone
        _lib.vlm_conn_process(self.h)
        while _lib.vlm_conn_next_ready(self.h):
            pass
        self._wake()

    def _wake(self):
        ws, self.waiters = self.waiters, []
        for f in ws:
            if not f.done():
                f.set_result(None)

    async def wait(self, timeout=None):
        r = _lib.vlm_conn_arm(self.h)
        if r != 0:          # 1: events already waiting; < 0: the next read reports the error
            self._readable()
            await asyncio.sleep(0)
            return
        f = self.loop.create_future()
        self.waiters.append(f)
        t = 0.1 if timeout is None else max(0.0, min(0.1, timeout))
        try:
            await asyncio.wait_for(f, t)
        except asyncio.TimeoutError:
            pass

    def close(self):
        try:
            self.loop.remove_reader(self.fd)
        except Exception:  # the loop is closed already
            pass
        self._wake()


class Client:
    """A connection to vlmd. socket: path of vlmd's socket (None: $VLM_SOCKET, else the build's
    default). Raises VlmError when vlmd is absent or refuses (errno ENOENT/ECONNREFUSED, EACCES,
    EBUSY, ...). After vlmd restarted, make a new Client."""

    def __init__(self, socket=None, *, name="python", connect_timeout=None, arena_bytes=0):
        _need_api()
        self._h = None
        o = _lib.ConnectOpts()
        o.socket_path = str(socket).encode() if socket is not None else None
        o.client_name = name.encode() if name else None
        o.connect_timeout_ms = int(connect_timeout * 1000) if connect_timeout else 0
        o.arena_bytes = arena_bytes
        h = ctypes.c_void_p()
        r = _lib.vlm_connect(ctypes.byref(o), ctypes.byref(h))
        _lib.check(r, "cannot connect to vlmd%s" % (" at %s" % socket if socket else ""), True)
        self._h = h
        self._wakers = {}
        _clients.add(self)

    def _async_waker(self, loop):
        w = self._wakers.get(loop)
        if w is None:
            for old in [lp for lp in self._wakers if lp.is_closed()]:
                self._wakers.pop(old).close()
            w = self._wakers[loop] = _AsyncWaker(self, loop)
        return w

    @property
    def alive(self):
        return bool(self._h) and _lib.vlm_conn_alive(self._h) == 1

    @property
    def arena_bytes(self):
        return _lib.vlm_conn_arena_bytes(self._h) if self._h else 0

    def stats(self):
        """The connection's data-path counters (vlm_conn_stats) as a dict: requests_submitted,
        tensors_copied, bytes_copied, tensors_in_place, tensors_cuda, images_preprocessed
        (straight into the shared arena), images_reused (found there again)."""
        if not self._h:
            raise ValueError("client is closed")
        s = _lib.ConnStats()
        _lib.check(_lib.vlm_conn_stats(self._h, ctypes.byref(s)), "stats", True)
        return {k: getattr(s, k) for k, _ in s._fields_ if k != "reserved"}

    def image(self, src, min_pixels=None, max_pixels=None, **kw):
        """vlmclient.Image(src, min_pixels, max_pixels, client=self, **kw): the image
        preprocessed straight into this connection's shared arena, where the requests that carry
        it find it (no copy, no second preprocessing)."""
        from .vision import Image
        return Image(src, min_pixels, max_pixels, client=self, **kw)

    def fileno(self):
        """The connection's poll fd (see vlm_conn_fd in vlm.h)."""
        return _lib.check(_lib.vlm_conn_fd(self._h), "fd", True)

    def generate(self, token_ids, mm_info=None, config=None, *, timeout=None, echo=False,
                 **params):
        """Submits a request and returns its Stream. token_ids: a sequence of ints (or a 1-D
        integer array). mm_info: a MultiMediaInfo, or a dict {placeholder_id: [tensors]} (no
        grids). config: a GenerationConfig or a dict; keyword parameters override it.
        timeout: seconds to wait for each token (None: forever). echo: vlmd streams the prompt
        back (diagnostics, no model needed)."""
        if not self._h:
            raise ValueError("client is closed")
        if config is None:
            config = GenerationConfig()
        elif isinstance(config, dict):
            config = GenerationConfig.from_dict(config)
        if params:
            config = GenerationConfig(**{**config.__dict__, **params})
        if isinstance(mm_info, dict):
            m = MultiMediaInfo()
            for pid, ts in mm_info.items():
                m.add_multimedia_content(pid, ts)
            mm_info = m

        ids = [int(x) for x in (token_ids.tolist() if hasattr(token_ids, "tolist")
                                else token_ids)]
        for i, x in enumerate(ids):
            if not 0 <= x < 1 << 31:    # ctypes would wrap it silently (2**32 + 5 -> 5)
                raise ValueError("token id %d at index %d is out of range (0 <= id < 2**31)"
                                 % (x, i))
        req = ctypes.c_void_p()
        _lib.check(_lib.vlm_request_new(self._h, ctypes.byref(req)), "request", True)
        stream = Stream(self, req, timeout)
        try:
            arr = (ctypes.c_int32 * len(ids))(*ids)
            _lib.check(_lib.vlm_request_set_tokens(req, arr, len(ids)), "tokens", True)
            p, _keep = config._to_c()
            _lib.check(_lib.vlm_request_set_params(req, ctypes.byref(p)), "parameters", True)
            if echo:
                _lib.check(_lib.vlm_request_set_kind(req, _lib.VLM_REQUEST_ECHO), "echo", True)
            for k, it in enumerate(mm_info._items if mm_info is not None else []):
                self._add_tensor(req, k, it)
            _lib.check(self._submit(req, self._h), "submit", True)
        except BaseException:
            stream.close()
            raise
        return stream

    @staticmethod
    def _add_tensor(req, k, it):
        from .vision import Image
        if isinstance(it.tensor, Image):
            what = "image %d (placeholder %d, grid %s)" % (k, it.placeholder_id, it.tensor.grid)
            if it.tensor.bound:     # in this connection's arena already (or put there now)
                it.tensor._add_to(req, it.placeholder_id, what)
                return
            _lib.check(_lib.vlm_request_add_image(req, it.placeholder_id, it.tensor.handle),
                       what, True)
            return
        taken = dlpack.Taken(it.tensor)
        try:
            dlpack.synchronize(it.tensor, taken.device)
        except BaseException:
            taken.release()
            raise
        mi = _lib.MmInfo()
        mi.placeholder_id = it.placeholder_id
        mi.grid_t, mi.grid_h, mi.grid_w = it.grid
        fp = None
        if it.fingerprint is not None:
            fp = (ctypes.c_uint8 * len(it.fingerprint)).from_buffer_copy(it.fingerprint)
            mi.fingerprint = ctypes.cast(fp, ctypes.POINTER(ctypes.c_uint8))
            mi.fingerprint_len = len(it.fingerprint)
        r = taken.add_to(req, ctypes.byref(mi))
        if r < 0:
            _lib.check(r, "tensor %d (placeholder %d, shape %s)" % (k, it.placeholder_id,
                                                                   list(taken.shape)), True)

    @staticmethod
    def _submit(req, conn):
        """vlm_submit, retried while the submission ring is full. vlmd stops taking a client's
        submissions while completions it sent are unread (backpressure), so waiting alone could
        wait forever when the caller has not read its streams yet: each retry first routes the
        waiting completions to their streams (vlm_conn_process), which frees the completion ring.
        Gives up with EAGAIN after _SUBMIT_WAIT_S seconds without room."""
        import time
        deadline = time.monotonic() + _SUBMIT_WAIT_S
        while True:
            r = _lib.vlm_submit(req)
            if r != -11:    # EAGAIN: submission ring full
                return r
            p = _lib.vlm_conn_process(conn)
            if p < 0:
                return p
            if time.monotonic() > deadline:
                raise VlmError(11, "submission ring full for %d s: vlmd is not taking requests "
                               "from this connection" % _SUBMIT_WAIT_S)
            if p == 0:
                time.sleep(0.001)

    def close(self):
        """Closes the connection (cancels what still runs; streams then fail with ENOTCONN)."""
        if getattr(self, "_h", None):
            for w in self._wakers.values():
                w.close()
            self._wakers = {}
            _lib.vlm_disconnect(self._h)
            self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


@atexit.register
def _close_all():
    # Deleters are Python callbacks: run them before the interpreter goes away.
    for c in list(_clients):
        c.close()
