"""``python -m finetuner_otel.cli``: the ``finetuner`` command."""

from . import console

console()
