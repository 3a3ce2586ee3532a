"""A local OpenAI-compatible server for tests and demos: ``OpenAIServer``.

It listens on 127.0.0.1, speaks the chat-completions wire format of the real API (JSON bodies and
chunked ``text/event-stream`` SSE with ``data: [DONE]``), and answers from a queue of scripted
replies, a responder function, or by default with an echo of the last user message::

    from finetuner_otel.testing import OpenAIServer, Reply, ErrorReply

    with OpenAIServer() as server:
        server.enqueue(Reply("positive"), ErrorReply(429, "Rate limit reached"))
        client = server.client()              # openai.OpenAI pointed at the server
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])
        server.requests[-1].json              # what the SDK sent

``RawReply`` sends a recorded HTTP body verbatim, for replaying real API traffic.

The same server implements two fine-tuning APIs: OpenAI's (``/v1/files``,
``/v1/fine_tuning/jobs``) as ``server.fine_tuning`` and Together's (``/v1/files/upload``,
``/v1/fine-tunes``) as ``server.together``. Each created job moves one status further every
time it is read; ``script(JobScript([...statuses], error_message=...))`` sets how the next
jobs go, ``fail_next(429, 500)`` answers the next requests with errors, and ``files`` holds what
was uploaded.
"""

from ._finetuning import FineTuningAPI, JobScript, UploadedFile
from ._server import ErrorReply, OpenAIServer, RawReply, RecordedRequest, Reply, ToolCall

__all__ = [
    "ErrorReply",
    "FineTuningAPI",
    "JobScript",
    "OpenAIServer",
    "RawReply",
    "RecordedRequest",
    "Reply",
    "ToolCall",
    "UploadedFile",
]
