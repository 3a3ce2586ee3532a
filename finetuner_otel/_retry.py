"""When an OpenAI API call is worth making again, and how long the server asks us to wait: the
one reading of both, for every loop of ours that retries on top of the SDK's own retries (evals,
imports)."""

from __future__ import annotations

import random


def retryable(exc: BaseException) -> bool:
    """A rate limit (429), a server error (5xx) or a lost connection (timeouts included)."""
    import openai

    if isinstance(exc, openai.APIConnectionError):
        return True
    return isinstance(exc, openai.APIStatusError) and (
        exc.status_code == 429 or exc.status_code >= 500
    )


def retry_after(exc: BaseException) -> float | None:
    """The seconds of the error's ``retry-after`` header, when it has one."""
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def wait_before(exc: BaseException, attempt: int, backoff: float) -> float:
    """Seconds to wait before trying again after ``exc`` on try ``attempt`` (0 first): what
    the server asked for, else ``backoff`` doubled per try with jitter (half to all of it)."""
    wait = retry_after(exc)
    if wait is None:
        wait = backoff * 2**attempt * (0.5 + random.random() / 2)
    return wait
