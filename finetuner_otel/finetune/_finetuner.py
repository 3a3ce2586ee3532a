"""``Finetuner``: from a dataset to a fine-tuned model, on any provider, recorded in the store."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError
from ..store import Dataset, Store, validate_preference_records, validate_records
from ._job import Job
from ._openai import ANYSCALE_BASE_URL, OpenAIProvider, RetiredProvider
from ._records import record_state, record_upload, recorded_states
from ._together import TOGETHER_BASE_URL, TogetherProvider
from ._types import METHODS, JobRequest, JobState, Provider

if TYPE_CHECKING:
    import openai


# The providers whose own DPO rules validate_preference_records knows (others get all three).
PREFERENCE_PROVIDERS = ("openai", "together", "fireworks")


class DatasetInvalidError(ConfigurationError):
    """``upload_dataset`` refused a dataset that fails validation (``.report`` says why)."""

    def __init__(self, message: str, report: Any) -> None:
        super().__init__(message)
        self.report = report


def _api_key(given: str | None, variable: str, provider: str) -> str:
    key = given or os.environ.get(variable)
    if not key:
        raise ConfigurationError(f"{provider} needs an API key: set {variable} or pass api_key=...")
    return key


class Finetuner:
    """Uploads datasets, starts fine-tuning jobs and follows them, on one ``provider``.

    Uploads and jobs are recorded in ``store`` (default: the dataset's own store, else
    ``FINETUNER_DB``), so ``list_jobs()`` and SQL (``finetune_jobs``, ``finetune_lineage``)
    show what trained on what.
    """

    def __init__(self, provider: Provider, *, store: Store | str | os.PathLike[str] | None = None):
        if not isinstance(provider, Provider):
            raise ConfigurationError(
                f"provider must implement the Provider interface (upload, create_job, get_job, "
                f"list_events, cancel_job, list_jobs), got {provider!r}"
            )
        self.provider = provider
        self._store = store if isinstance(store, Store) or store is None else Store(store)

    def __repr__(self) -> str:
        return f"Finetuner({self.provider!r})"

    # --- providers ----------------------------------------------------------------------------

    @classmethod
    def for_openai(
        cls,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        client: openai.OpenAI | None = None,
        store: Store | str | os.PathLike[str] | None = None,
    ) -> Finetuner:
        """OpenAI's fine-tuning API (``OPENAI_API_KEY``), or any server implementing it at
        ``base_url`` (``OPENAI_BASE_URL``)."""
        if client is None:
            import openai

            client = openai.OpenAI(
                api_key=_api_key(api_key, "OPENAI_API_KEY", "OpenAI"), base_url=base_url
            )
        return cls(OpenAIProvider(client), store=store)

    @classmethod
    def for_together(
        cls,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        store: Store | str | os.PathLike[str] | None = None,
    ) -> Finetuner:
        """Together AI (``TOGETHER_API_KEY``; ``base_url`` for another deployment of its API)."""
        import openai

        client = openai.OpenAI(
            api_key=_api_key(api_key, "TOGETHER_API_KEY", "Together AI"),
            base_url=base_url or os.environ.get("TOGETHER_BASE_URL") or TOGETHER_BASE_URL,
        )
        return cls(TogetherProvider(client), store=store)

    @classmethod
    def for_fireworks(
        cls,
        *,
        api_key: str | None = None,
        account: str | None = None,
        base_url: str | None = None,
        store: Store | str | os.PathLike[str] | None = None,
    ) -> Finetuner:
        """Fireworks AI (``FIREWORKS_API_KEY``, and the account id ``FIREWORKS_ACCOUNT_ID``;
        ``base_url`` for another deployment of its API): supervised and DPO LoRA jobs."""
        import openai

        from ._fireworks import FIREWORKS_BASE_URL, FireworksProvider

        client = openai.OpenAI(
            api_key=_api_key(api_key, "FIREWORKS_API_KEY", "Fireworks"),
            base_url=base_url or os.environ.get("FIREWORKS_BASE_URL") or FIREWORKS_BASE_URL,
        )
        account = account or os.environ.get("FIREWORKS_ACCOUNT_ID")
        if not account:
            raise ConfigurationError(
                "Fireworks needs your account id: set FIREWORKS_ACCOUNT_ID or pass account=..."
            )
        return cls(FireworksProvider(client, account), store=store)

    @classmethod
    def for_anyscale(
        cls,
        *,
        api_key: str | None = None,
        base_url: str = ANYSCALE_BASE_URL,
        store: Store | str | os.PathLike[str] | None = None,
    ) -> Finetuner:
        """Retired: Anyscale Endpoints, an OpenAI-compatible fine-tuning API, closed in 2024.

        Kept for code written against it: an OpenAI-compatible provider at its old base URL
        (``ANYSCALE_API_KEY``), whose calls fail with an error that says so. Use
        ``for_together()``, ``for_openai(base_url=...)`` or ``for_local()`` instead.
        """
        import openai

        client = openai.OpenAI(
            api_key=_api_key(api_key, "ANYSCALE_API_KEY", "Anyscale"),
            base_url=base_url,
            max_retries=0,
        )
        return cls(RetiredProvider(OpenAIProvider(client, name="anyscale")), store=store)

    @classmethod
    def for_local(
        cls,
        output_dir: str | os.PathLike[str] = "finetuner-models",
        *,
        store: Store | str | os.PathLike[str] | None = None,
        **trainer_options: Any,
    ) -> Finetuner:
        """Train on this machine with Hugging Face TRL and a PEFT LoRA adapter
        (``pip install 'finetuner-otel[local]'``); jobs run when started, on a GPU if there
        is one, and write an adapter directory under ``output_dir``."""
        from ._local import LocalProvider

        return cls(LocalProvider(Path(output_dir), **trainer_options), store=store)

    # --- the store ----------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store()
        return self._store

    def _job(self, state: JobState) -> Job:
        """``state`` as a Job of this provider, whose every new state is recorded."""
        return Job(state, self.provider, lambda new: record_state(self.store, new))

    # --- datasets, jobs -----------------------------------------------------------------------

    def upload_dataset(self, dataset: Dataset, *, history_weight: int | None = None) -> str:
        """Validate ``dataset``, export it (recording its snapshot) and upload it for
        supervised fine-tuning; the provider's file id. An invalid dataset is refused with
        the validation report (DatasetInvalidError) and nothing is uploaded."""
        if not isinstance(dataset, Dataset):
            raise ConfigurationError(
                f"upload_dataset() takes a Dataset (store.get_dataset(...)), got {dataset!r}"
            )
        if len(dataset) == 0:
            raise ConfigurationError(f"dataset {dataset.name!r} has no examples to upload")
        report = validate_records(
            [e.to_openai(history_weight) for e in dataset], ids=[e.id for e in dataset]
        )
        if not report.ok:
            raise DatasetInvalidError(
                f"dataset {dataset.name!r} is not valid fine-tuning data; nothing was uploaded. "
                f"Fix or leave out these examples (e.g. store.reject(call_id)):\n"
                f"{report.summary(limit=5)}",
                report,
            )
        with tempfile.TemporaryDirectory(prefix="finetuner-upload-") as tmp:
            name = "".join(c if c.isalnum() or c in "-_" else "_" for c in dataset.name)
            export = dataset.to_jsonl(Path(tmp) / f"{name}.jsonl", history_weight=history_weight)
            file_id = self.provider.upload(export)
        record_upload(
            self.store,
            self.provider.name,
            file_id,
            dataset=dataset.name,
            snapshot=export.sha256,
            kind="openai_chat",
            examples=len(dataset),
        )
        return file_id

    def upload_preferences(self, dataset: str, *, store: Store | None = None) -> str:
        """Export the preference pairs of ``dataset`` (``store.prefer``) in the DPO format,
        validate them by the provider's rules (OpenAI's, Together's or Fireworks'; all three
        for another provider) and upload them; the provider's file id, for ``start_job(...,
        method="dpo")``. Invalid pairs (a tool call as an output, say: these providers train
        DPO on text answers) are refused with the report (DatasetInvalidError), naming the
        calls, and nothing is uploaded."""
        source = store or self.store
        with tempfile.TemporaryDirectory(prefix="finetuner-upload-") as tmp:
            export = source.export_preferences(dataset, Path(tmp) / "preferences.jsonl")
            if export.examples == 0:
                raise ConfigurationError(
                    f"dataset {dataset!r} has no preference pairs; record them with "
                    f"store.prefer(call_id, preferred, non_preferred)"
                )
            self._check_preferences(source, dataset, export)
            file_id = self.provider.upload(export)
        record_upload(
            self.store,
            self.provider.name,
            file_id,
            dataset=dataset,
            snapshot=export.sha256,
            kind="openai_dpo",
            examples=export.examples,
        )
        return file_id

    def _check_preferences(self, store: Store, dataset: str, export: Path) -> None:
        ids = store.sql(
            "SELECT call_id FROM preference_pairs WHERE dataset = ? ORDER BY created_at", [dataset]
        ).rows
        rules = self.provider.name if self.provider.name in PREFERENCE_PROVIDERS else None
        records = [json.loads(line) for line in export.read_text().splitlines() if line]
        report = validate_preference_records(
            records, provider=rules, ids=[str(r[0]) for r in ids][: len(records)]
        )
        if not report.ok:
            names = {"openai": "OpenAI's", "together": "Together's", "fireworks": "Fireworks'"}
            whose = names[rules] if rules else "OpenAI's, Together's and Fireworks'"
            raise DatasetInvalidError(
                f"the preference pairs of {dataset!r} break {whose} DPO rules; nothing was "
                f"uploaded. Fix or leave out these pairs:\n{report.summary(limit=5)}",
                report,
            )

    def start_job(
        self,
        base_model: str,
        training_file: str,
        validation_file: str | None = None,
        *,
        method: str = "supervised",
        suffix: str | None = None,
        seed: int | None = None,
        metadata: Mapping[str, str] | None = None,
        **hyperparameters: Any,
    ) -> Job:
        """Start fine-tuning ``base_model`` on uploaded files (``upload_dataset``).

        ``method``: "supervised" or "dpo"; ``hyperparameters`` as the provider names them
        (OpenAI: n_epochs, batch_size, learning_rate_multiplier, beta for DPO; Together:
        n_epochs, learning_rate, batch_size, lora, lora_r, ...; local: see ``for_local``).
        """
        if method not in METHODS:
            raise ConfigurationError(f"method is 'supervised' or 'dpo', got {method!r}")
        for label, value in (("base_model", base_model), ("training_file", training_file)):
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"{label} must be a non-empty string, got {value!r}")
        state = self.provider.create_job(
            JobRequest(
                base_model,
                training_file,
                validation_file,
                method=method,
                hyperparameters=hyperparameters,
                suffix=suffix,
                seed=seed,
                metadata=metadata,
            )
        )
        if state.method != method:
            state = dataclasses.replace(state, method=method)  # not every provider says
        record_state(self.store, state, suffix=suffix)
        return self._job(state)

    def get_job(self, job_id: str) -> Job:
        """A job by its id, fresh from the provider: to follow again one started earlier."""
        state = self.provider.get_job(job_id)
        record_state(self.store, state)
        return self._job(state)

    def list_jobs(self) -> list[Job]:
        """The jobs of this provider recorded in the store, newest first (as last seen; use
        ``job.refresh()`` or ``job.status`` for news)."""
        return [self._job(state) for state in recorded_states(self.store, self.provider.name)]
