"""What the HTTP server asks of vLLM's front end: sampling parameters for a
request, the merged outputs of several prompts, and which engine errors are the
client's. The server imports these instead of vLLM (``vllm_contract.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from genarm.reward_weights import extra_args_for


def sampling_params(reward_weights: Any = None, deltas: bool = True, **options: Any):
    """A ``vllm.SamplingParams`` carrying a request's raw reward weights (vLLM admits
    them through the GenARM processor's ``validate_params``). ``deltas``: outputs
    carry only what is new (the server's streams); False for offline ``LLM`` use.

    vLLM's own checks of the values raise ``ValueError``s: the client's errors
    (``engine_refusal`` classifies them).
    """
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    if deltas:
        # For every server request: the server sees each token as it comes (time to
        # first token), and a non-streamed response is their concatenation.
        options["output_kind"] = RequestOutputKind.DELTA
    return SamplingParams(**options, extra_args=extra_args_for(reward_weights))


def merge_streams(*streams: AsyncIterator) -> AsyncIterator[tuple[int, Any]]:
    """(index of the stream, item) of several async iterators, run concurrently."""
    from vllm.utils.async_utils import merge_async_iterators

    return merge_async_iterators(*streams)


@dataclass(frozen=True)
class EngineRefusal:
    """An engine error that is the client's: the HTTP status and what to say."""

    status: int
    message: str
    param: str | None = None
    retry_after: int | None = None


def engine_refusal(err: Exception) -> EngineRefusal | None:
    """The client's share of the engine's errors (its refusals at admission), else None."""
    from vllm.exceptions import GracefulHTTPError, VLLMClientError
    from vllm.v1.engine.exceptions import EngineGenerateError

    if isinstance(err, EngineGenerateError) and isinstance(err.__cause__, ValueError):
        err = err.__cause__  # a plain ValueError from an admission check
    if isinstance(err, VLLMClientError | ValueError):
        message = str(err.args[0]) if err.args else type(err).__name__
        return EngineRefusal(400, message, param=getattr(err, "parameter", None))
    if isinstance(err, GracefulHTTPError):
        retry_after = 1 if err.http_status == 503 else None
        return EngineRefusal(int(err.http_status), err.message, retry_after=retry_after)
    return None
