"""Fine-tuning: from a dataset to a fine-tuned model, on more than one provider.

::

    from finetuner_otel.finetune import Finetuner

    ft = Finetuner.for_openai()          # or for_together(), for_fireworks(), for_local()
    train_id = ft.upload_dataset(train)  # validated first; an invalid dataset is refused
    job = ft.start_job("gpt-4o-mini-2024-07-18", train_id, ft.upload_dataset(val), n_epochs=3)
    job.wait()                           # the provider's events as they come
    job.fine_tuned_model

    server = job.serve()                 # a local job: its adapter on an OpenAI-compatible URL
    Eval(server.client()).run(server.model, val)
"""

from ._finetuner import DatasetInvalidError, Finetuner
from ._fireworks import FireworksProvider
from ._job import Job, JobFailedError
from ._openai import OpenAIProvider
from ._serve import AdapterServer, ServeStats, VLLMServer, serve
from ._together import TogetherProvider
from ._types import FINAL, Event, JobRequest, JobState, Provider, ProviderError

__all__ = [
    "FINAL",
    "AdapterServer",
    "DatasetInvalidError",
    "Event",
    "Finetuner",
    "FireworksProvider",
    "Job",
    "JobFailedError",
    "JobRequest",
    "JobState",
    "OpenAIProvider",
    "Provider",
    "ProviderError",
    "ServeStats",
    "TogetherProvider",
    "VLLMServer",
    "serve",
]
