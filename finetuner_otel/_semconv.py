"""Attribute names: the OpenTelemetry GenAI semantic conventions, and our own ``finetuner.*``.

Both the instrumentation (which writes them) and the exporter (which reads them, also from spans
made by other GenAI instrumentations) use these names; nothing else spells them.
"""

from __future__ import annotations

# GenAI semantic conventions
OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
LEGACY_SYSTEM = "gen_ai.system"  # older conventions; read, never written
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
REQUEST_TOP_P = "gen_ai.request.top_p"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_FREQUENCY_PENALTY = "gen_ai.request.frequency_penalty"
REQUEST_PRESENCE_PENALTY = "gen_ai.request.presence_penalty"
REQUEST_STOP_SEQUENCES = "gen_ai.request.stop_sequences"
REQUEST_SEED = "gen_ai.request.seed"
REQUEST_CHOICE_COUNT = "gen_ai.request.choice.count"
OUTPUT_TYPE = "gen_ai.output.type"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
TOOL_DEFINITIONS = "gen_ai.tool.definitions"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
HTTP_STATUS_CODE = "http.response.status_code"
OPENAI_API_TYPE = "openai.api.type"  # chat_completions | responses

# finetuner-otel's own
DATASET = "finetuner.dataset"
REQUEST_OPTIONS = "finetuner.request.options"  # JSON: other request parameters that shape output
INCOMPLETE = "finetuner.incomplete"  # a stream that ended before its last event
CAPTURE_ERROR = "finetuner.capture_error"  # our own failure while recording this call
PURPOSE = "finetuner.purpose"  # e.g. "eval": never a training example
CONTENT_OMITTED = "finetuner.content_omitted"  # a content part over the size cap was left out
PROMPT_NAME = "finetuner.prompt.name"  # the Prompt the input messages were rendered from
PROMPT_VERSION = "finetuner.prompt.version"
PROMPT_VARIABLES = "finetuner.prompt.variables"  # JSON: the values it was rendered with
OMITTED_MARKER = "finetuner.omitted"  # key of a content part whose content was left out
SHADOW_OF = "finetuner.shadow.of"  # a shadow's call: the production call's trace+span id (hex)
ROUTED_FROM = "finetuner.routed_from"  # a routed call: the model the app asked for
ROUTE_FALLBACK = "finetuner.route.fallback"  # the original model's call after a routed failure
PURPOSE_SHADOW = "shadow"

OPERATION_CHAT = "chat"

# The instrumentation scope of our own spans (the instrumentation package's module name).
OUR_SCOPE = "finetuner_otel.instrumentation"
