"""Runnable examples; installed as ``finetuner_otel.examples`` (``finetuner demo`` runs the
quickstart)."""
