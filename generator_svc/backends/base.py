"""The interface every LLM backend implements, with its request/result types and errors.

>>> backend = create_backend("local", model="smollm2-135m")
>>> for gen in backend.generate(messages, n=2, sampling=Sampling(max_new_tokens=64), adapter=None,
...                             seeds=[1, 2]):
...     print(gen.index, gen.output_tokens, gen.text)
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from deltanas.config import REQUIRED, option
from deltanas.vocabulary import FINISH_STOP, MAX_NEW_TOKENS, TEMPERATURE, TOP_K, TOP_P

T = TypeVar("T")
Messages = Sequence[dict[str, str]]



class BackendError(RuntimeError):
    """Base of the errors a backend raises for a request it cannot serve."""


class UnknownAdapter(BackendError):
    """The requested adapter was never loaded on this backend."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(f"unknown adapter {name!r}; loaded: {sorted(known) or 'none'}")
        self.name, self.known = name, list(known)


class PromptTooLong(BackendError):
    """Prompt tokens plus ``max_new_tokens`` do not fit the model's context."""

    def __init__(self, tokens: int, limit: int) -> None:
        super().__init__(f"prompt has {tokens} tokens; at most {limit} fit with the requested max_new_tokens")
        self.tokens, self.limit = tokens, limit


class GrammarRefused(BackendError):
    """The backend cannot decode under the given grammar (it takes none, or refuses this one)."""


class BackendUnavailable(BackendError):
    """The backend (a server, or the local model) cannot be reached or loaded."""


@dataclass(frozen=True)
class Sampling:
    """Decoding settings of one request; ``temperature`` 0 means greedy (seeds are then irrelevant)."""

    temperature: float = option(TEMPERATURE, "softmax temperature; 0 = greedy decoding")
    top_k: int = option(TOP_K, "sample among the k most likely tokens; 0 = no limit")
    top_p: float = option(TOP_P, "nucleus sampling mass in (0, 1]; 1 = no limit")
    max_new_tokens: int = option(MAX_NEW_TOKENS, "most tokens generated per candidate")

    def __post_init__(self) -> None:
        if self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1 or self.max_new_tokens < 1:
            raise ValueError(f"invalid sampling settings: {self}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class Constraint:
    """A grammar for constrained decoding."""

    grammar: str = option(REQUIRED, "EBNF, xgrammar/GBNF dialect (e.g. deltadiff.diff_grammar)")
    close: str = option("", "text that ends an answer wherever the grammar allows it (a diff's closing fence): the "
                            "local backend appends it when max_new_tokens is nearly spent, so that a cut answer still "
                            "parses")


@dataclass(frozen=True)
class Generation:
    """One finished candidate (or, ``partial``, one still being written). ``output_tokens`` counts generated tokens
    including the end-of-turn token."""

    index: int
    seed: int
    text: str
    prompt_tokens: int
    output_tokens: int
    latency_s: float
    finish_reason: int = FINISH_STOP  # a FinishReason value (deltanas.vocabulary); UNSPECIFIED when partial
    forced_tokens: int = 0  # of output_tokens, those a grammar forced (appended without sampling)
    partial: bool = False  # progress of a candidate still being written: no text, the tokens so far


@dataclass(frozen=True)
class BackendInfo:
    backend: str
    model: str
    context_length: int


class Backend(ABC):
    """An LLM that turns chat messages into ``n`` candidates, optionally through a named LoRA adapter."""

    kind: ClassVar[str]
    Options: ClassVar[type]  # dataclass of the keyword options the constructor takes
    grammars: ClassVar[bool] = True  # decodes under a Constraint (False: generate raises GrammarRefused)

    @abstractmethod
    def generate(
        self, messages: Messages, *, n: int, sampling: Sampling, adapter: str | None, seeds: Sequence[int],
        constraint: Constraint | None = None, progress_s: float = 0.0, cancel: threading.Event | None = None,
    ) -> Iterator[Generation]:
        """Candidates in the order they finish. Request errors (UnknownAdapter, PromptTooLong, GrammarRefused) are
        raised by this call itself, before any iteration; ``seeds`` has one seed per candidate. ``constraint``:
        the grammar every answer must follow. ``progress_s`` > 0: a backend that can also yields ``partial``
        Generations of the candidates still being written, at most one per candidate every ``progress_s``.
        ``cancel`` set (the caller left): the iteration ends soon, and no candidate starts any more."""

    @abstractmethod
    def list_adapters(self) -> list[str]: ...

    @abstractmethod
    def load_adapter(self, name: str, path: str) -> None:
        """Make adapter ``name`` available from ``path`` (replacing one of the same name), no restart."""

    @abstractmethod
    def info(self) -> BackendInfo: ...

    @abstractmethod
    def count_tokens(self, messages: Messages) -> int:
        """Prompt tokens of ``messages`` with the chat template and generation prompt applied."""

    def probe(self) -> None:
        """Health: raises unless the model answers now (the default tokenizes a short prompt)."""
        self.count_tokens([{"role": "user", "content": "ping"}])

    def close(self) -> None:  # noqa: B027 - optional hook with a no-op default
        """Release connections or memory; the default holds nothing."""


class LazyServerFacts(Generic[T]):
    """What a remote backend learns from its server once (served models, context length), fetched lazily.

    ``fetch`` is tried at construction; a server that is down (BackendUnavailable) is tried again on each use, so
    a generator can start before its server and report NOT_SERVING until the server answers. Any other error
    (e.g. the server does not serve the configured model) is a configuration error and raised at once.
    """

    def __init__(self, fetch: Callable[[], T], url: str) -> None:
        self._fetch = fetch
        self._value: T | None = None
        self._lock = threading.Lock()
        try:
            self.get()
        except BackendUnavailable as exc:
            logging.getLogger(__name__).warning("%s is not answering yet; retried on each use: %s", url, exc)

    def get(self) -> T:
        with self._lock:
            if self._value is None:
                self._value = self._fetch()
            return self._value


def check_request(n: int, seeds: Sequence[int]) -> None:
    if n < 1 or len(seeds) != n:
        raise ValueError(f"need n >= 1 and one seed per candidate, got n={n} and {len(seeds)} seeds")


def check_fits(prompt_tokens: int, sampling: Sampling, context_length: int) -> None:
    limit = context_length - sampling.max_new_tokens
    if prompt_tokens > limit:
        raise PromptTooLong(prompt_tokens, max(limit, 0))


def fan_out(seeds: Sequence[int], one: Callable[[int, int], Generation], workers: int,
            cancel: threading.Event | None = None, poll_s: float = 0.2) -> Iterator[Generation]:
    """Run ``one(index, seed)`` for every candidate on ``workers`` threads; yield results as they finish. Once
    ``cancel`` is set (or the consumer stops) no further candidate starts and the iteration ends without waiting
    for the requests in flight (each ends within its own timeout)."""
    pool = ThreadPoolExecutor(max_workers=min(workers, len(seeds)))
    pending = {pool.submit(one, index, seed) for index, seed in enumerate(seeds)}
    try:
        while pending and not (cancel is not None and cancel.is_set()):
            done, pending = wait(pending, timeout=poll_s, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
