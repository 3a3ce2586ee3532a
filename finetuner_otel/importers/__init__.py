"""Bring data home from other platforms: OpenAI's stored chat completions, OpenPipe's and
Langfuse's exports, as calls of the store.

::

    from finetuner_otel.importers import import_langfuse, import_openai_stored, import_openpipe

    import_openai_stored(openai.OpenAI(), store, metadata={"app": "support"}, dataset="support")
    import_openpipe("dataset.jsonl", store, dataset="support")
    import_langfuse("observations.json", store)

Every row goes through the same mapping as a captured call (``Store.add_examples``) and says
where it came from: ``calls.source = 'import'``, with ``finetuner.import.source``
(``openai-stored``, ``openpipe``, ``langfuse``) and ``finetuner.import.id`` (the id it had
there) in its attributes, and the original metadata in ``finetuner.import.metadata``. Each
import is idempotent (what is stored already is skipped by that id) and resumable: a run that
was stopped is finished by running it again. From a shell: ``finetuner import openai-stored``,
``finetuner import openpipe FILE``, ``finetuner import langfuse FILE``.
"""

from ._files import import_langfuse, import_openpipe
from ._openai_stored import import_openai_stored
from ._write import ImportSummary

__all__ = ["ImportSummary", "import_langfuse", "import_openai_stored", "import_openpipe"]
