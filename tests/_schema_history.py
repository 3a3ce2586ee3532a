"""The store's migrations as they were before views and macros moved out of them, frozen.

These are the exact texts that stores made by finetuner-otel up to migration 0008 ran (views and
macros included), so tests can build a store at every earlier schema version and check that
today's code upgrades it. Never edit them: they are history.
"""

from __future__ import annotations

# The OpenAI chat fine-tuning format is derived from the recorded GenAI semantic-convention
# content by these macros, in SQL, when it is read: the store keeps one copy of every message (half
# the bytes to write at ingest), the derivation runs in DuckDB rather than in the user's process,
# and a fix to it applies to every call already stored. Users can call them in their own SQL.
# One chat message (not a tool message): content is a string for a single text part, a list of
# parts otherwise, null for an assistant message with nothing, and left out beside tool calls;
# a training weight (0 or 1 on assistant turns, e.g. from an import) is kept. Migration 0004
# added the weight to stores made before it; new ones have it from 0001.
_CHAT_MESSAGE_MACRO = r"""
CREATE OR REPLACE MACRO openai_chat_message(m) AS CAST('{' || concat_ws(',',
    '"role":' || coalesce(CAST(m->'role' AS VARCHAR), 'null'),
    '"refusal":' || to_json(
        [(p->>'content') FOR p IN openai_parts(m) IF (p->>'type') = 'refusal'][-1]),
    '"content":' || CASE
        WHEN len(openai_content(m)) = 1 AND (openai_content(m)[1]->>'type') = 'text'
            THEN to_json((openai_content(m)[1]->>'text'))
        WHEN len(openai_content(m)) > 0 THEN to_json(openai_content(m))
        WHEN (m->>'role') = 'assistant'
            THEN CASE WHEN len(openai_tool_calls(m)) > 0 THEN NULL ELSE 'null' END
        ELSE '""' END,
    '"tool_calls":' || CASE WHEN len(openai_tool_calls(m)) > 0
                            THEN to_json(openai_tool_calls(m)) END,
    '"name":' || CASE WHEN coalesce(m->>'name', '') <> '' THEN CAST(m->'name' AS VARCHAR) END,
    '"weight":' || CASE WHEN json_type(json_extract(m, '$.weight')) IN ('UBIGINT', 'BIGINT')
                        THEN CAST(json_extract(m, '$.weight') AS VARCHAR) END
) || '}' AS JSON);
"""

_OPENAI_MACROS = (
    r"""
CREATE MACRO openai_text(v) AS
    CASE WHEN json_type(v) = 'VARCHAR' THEN (v->>'$') ELSE CAST(v AS VARCHAR) END;

CREATE MACRO openai_content_part(p) AS CASE
    WHEN (p->>'type') = 'text' THEN json_object('type', 'text', 'text', coalesce(p->>'content', ''))
    WHEN (p->>'type') IN ('uri', 'blob') AND (p->>'modality') = 'image' THEN json_object(
        'type', 'image_url',
        'image_url', json_merge_patch(
            json_object('url', CASE WHEN (p->>'type') = 'uri' THEN (p->>'uri')
                                    ELSE 'data:' || coalesce(p->>'mime_type', 'image/png')
                                         || ';base64,' || coalesce(p->>'content', '') END),
            json_object('detail', nullif(p->>'detail', ''))))
    WHEN (p->>'type') = 'blob' AND (p->>'modality') = 'audio' THEN json_object(
        'type', 'input_audio',
        'input_audio', json_object(
            'data', (p->'content'),
            'format', string_split(coalesce(p->>'mime_type', 'audio/wav'), '/')[-1]))
    WHEN (p->>'type') = 'file' THEN json_object(
        'type', 'file',
        'file', json_merge_patch('{}', json_object(
            'file_id', (p->'file_id'), 'filename', (p->'filename'), 'file_data', (p->'file_data'))))
    WHEN json_type(p->'openai') = 'OBJECT' THEN (p->'openai')
END;

CREATE MACRO openai_tool_call(p) AS CASE
    WHEN (p->>'tool_type') = 'custom' THEN json_object(
        'id', (p->'id'), 'type', 'custom',
        'custom', json_object('name', (p->'name'), 'input', openai_text(p->'arguments')))
    ELSE json_object(
        'id', (p->'id'), 'type', 'function',
        'function', json_object(
            'name', (p->'name'),
            'arguments', CASE WHEN coalesce(json_type(p->'arguments'), 'NULL') = 'NULL' THEN ''
                              ELSE openai_text(p->'arguments') END))
END;

CREATE MACRO openai_tool_response(r) AS CASE
    WHEN json_type(r) = 'VARCHAR' THEN r
    WHEN json_type(r) = 'ARRAY' AND coalesce(list_bool_and(
            [coalesce((p->>'type') = 'text', false)
             FOR p IN CAST(json_extract(r, '$[*]') AS JSON[])]), true)
        THEN to_json([json_object('type', 'text', 'text', coalesce(p->>'content', ''))
                      FOR p IN CAST(json_extract(r, '$[*]') AS JSON[])])
    ELSE to_json(openai_text(r))
END;

CREATE MACRO openai_parts(m) AS coalesce(CAST(json_extract(m, '$.parts[*]') AS JSON[]), []);

CREATE MACRO openai_content(m) AS list_filter(
    [openai_content_part(p) FOR p IN openai_parts(m)
     IF coalesce(p->>'type', '') NOT IN ('tool_call', 'refusal', 'reasoning')],
    lambda x: x IS NOT NULL);

CREATE MACRO openai_tool_calls(m) AS
    [openai_tool_call(p) FOR p IN openai_parts(m) IF (p->>'type') = 'tool_call'];

"""
    + _CHAT_MESSAGE_MACRO
    + r"""
-- One semconv message as OpenAI messages: a tool message may carry several results.
CREATE MACRO openai_message(m) AS CASE
    WHEN (m->>'role') = 'tool' THEN
        [json_object('role', 'tool', 'tool_call_id', (p->'id'),
                     'content', openai_tool_response(p->'response'))
         FOR p IN openai_parts(m) IF (p->>'type') = 'tool_call_response']
    ELSE [openai_chat_message(m)]
END;

CREATE MACRO openai_system_message(instructions) AS CASE
    WHEN json_array_length(instructions) > 0 THEN json_object(
        'role', 'system',
        'content', array_to_string(
            [coalesce(p->>'content', '')
             FOR p IN CAST(json_extract(instructions, '$[*]') AS JSON[])
             IF json_type(p) = 'OBJECT'],
            chr(10) || chr(10)))
END;

-- The request as OpenAI messages: system instructions first, then the history.
CREATE MACRO openai_messages(input_messages, system_instructions) AS CASE
    WHEN json_type(input_messages) = 'ARRAY' THEN to_json(list_concat(
        list_filter([openai_system_message(system_instructions)], lambda x: x IS NOT NULL),
        flatten([openai_message(m)
                 FOR m IN CAST(json_extract(input_messages, '$[*]') AS JSON[])
                 IF json_type(m) = 'OBJECT'])))
END;

-- The training target: the first choice (with n > 1 every choice stays in output_messages).
CREATE MACRO openai_completion(output_messages) AS CASE
    WHEN json_type(output_messages->0) = 'OBJECT' THEN openai_message(json_merge_patch(
        (output_messages->0),
        json_object('role', coalesce(output_messages->0->>'role', 'assistant'))))[1]
END;

CREATE MACRO openai_tools(definitions) AS CASE
    WHEN json_array_length(definitions) > 0 THEN to_json([
        CASE WHEN (d->'name') IS NOT NULL
             THEN json_object('type', coalesce(nullif(d->>'type', ''), 'function'),
                              coalesce(nullif(d->>'type', ''), 'function'),
                              json_merge_patch(d, '{"type": null}'))
             ELSE d END
        FOR d IN CAST(json_extract(definitions, '$[*]') AS JSON[]) IF json_type(d) = 'OBJECT'])
END;
"""
)

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_calls",
        """
        -- One row per GenAI span, as recorded. Read it through the calls view.
        CREATE TABLE recorded_calls (
            -- trace_id || span_id || start time in ns (hex): re-ingesting a spool file is a no-op
            id VARCHAR PRIMARY KEY,
            trace_id VARCHAR NOT NULL,
            span_id VARCHAR NOT NULL,
            parent_span_id VARCHAR,
            dataset VARCHAR NOT NULL,
            operation VARCHAR,               -- gen_ai.operation.name: chat, ...
            provider VARCHAR,                -- gen_ai.provider.name: openai, azure.ai.openai, ...
            request_model VARCHAR,
            response_model VARCHAR,
            response_id VARCHAR,
            started_at TIMESTAMPTZ NOT NULL,
            ended_at TIMESTAMPTZ NOT NULL,
            duration_ms DOUBLE NOT NULL,
            -- ok | error | incomplete (a stream that ended before its last event)
            status VARCHAR NOT NULL,
            error_type VARCHAR,
            error_message VARCHAR,
            finish_reasons VARCHAR[],
            input_tokens BIGINT,
            output_tokens BIGINT,
            request_options JSON,            -- temperature, response_format, tool_choice, ...
            -- the call as the GenAI semantic conventions record it (parts format)
            input_messages JSON,
            output_messages JSON,
            system_instructions JSON,
            tool_definitions JSON,
            -- false for errors, incomplete streams, eval calls, cut-off or empty completions
            trainable BOOLEAN NOT NULL,
            untrainable_reason VARCHAR,
            service_name VARCHAR,
            scope_name VARCHAR,              -- the instrumentation that made the span
            attributes JSON,                 -- every other span attribute
            ingested_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );
        """
        + _OPENAI_MACROS
        + """
        -- Every call, with the same content in OpenAI's chat fine-tuning format: an example is
        -- {"messages": messages + [completion], "tools": tools}.
        CREATE VIEW calls AS
            SELECT *,
                   openai_messages(input_messages, system_instructions) AS messages,
                   openai_completion(output_messages) AS completion,
                   openai_tools(tool_definitions) AS tools
            FROM recorded_calls;
        CREATE VIEW examples AS
            SELECT id, dataset, started_at, request_model, response_model,
                   messages, completion, tools,
                   CASE WHEN tools IS NULL
                        THEN json_object('messages', json_insert(messages, '$[#]', completion))
                        ELSE json_object('messages', json_insert(messages, '$[#]', completion),
                                         'tools', tools)
                   END AS example
            FROM calls WHERE trainable;
        CREATE VIEW datasets AS
            SELECT dataset AS name,
                   count(*) FILTER (WHERE trainable) AS examples,
                   count(*) AS calls,
                   count(*) FILTER (WHERE status = 'error') AS errors,
                   min(started_at) AS first_call_at,
                   max(started_at) AS last_call_at
            FROM recorded_calls GROUP BY dataset;
        """,
    ),
    (
        "0002_feedback",
        """
        -- What people said about calls: accept, reject, or correct (with the completion to
        -- train on instead). The latest verdict and the latest correction of a call count.
        CREATE TABLE feedback (
            call_id VARCHAR NOT NULL,        -- calls.id
            kind VARCHAR NOT NULL CHECK (kind IN ('accept', 'reject', 'correct')),
            completion JSON,                 -- correct: the assistant message to train on
            note VARCHAR,
            created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );
        CREATE VIEW call_feedback AS
            SELECT call_id,
                   arg_max(kind, created_at) FILTER (WHERE kind <> 'correct') AS verdict,
                   arg_max(completion, created_at) FILTER (WHERE kind = 'correct')
                       AS correction
            FROM feedback GROUP BY call_id;
        -- A call is a training example when it is trainable, or was corrected (and succeeded),
        -- and was not rejected; a correction is its training target.
        CREATE OR REPLACE VIEW examples AS
            SELECT *,
                   CASE WHEN tools IS NULL
                        THEN json_object('messages', json_insert(messages, '$[#]', completion))
                        ELSE json_object('messages', json_insert(messages, '$[#]', completion),
                                         'tools', tools)
                   END AS example
            FROM (
                SELECT c.id, c.dataset, c.started_at, c.request_model, c.response_model,
                       c.messages, coalesce(f.correction, c.completion) AS completion, c.tools,
                       f.verdict, f.correction IS NOT NULL AS corrected
                FROM calls c LEFT JOIN call_feedback f ON f.call_id = c.id
                WHERE (c.trainable OR (f.correction IS NOT NULL AND c.status = 'ok'))
                  AND f.verdict IS DISTINCT FROM 'reject'
            );
        CREATE OR REPLACE VIEW datasets AS
            SELECT r.dataset AS name,
                   (SELECT count(*) FROM examples e WHERE e.dataset = r.dataset) AS examples,
                   count(*) AS calls,
                   count(*) FILTER (WHERE r.status = 'error') AS errors,
                   min(r.started_at) AS first_call_at,
                   max(r.started_at) AS last_call_at
            FROM recorded_calls r GROUP BY r.dataset;
        """,
    ),
    (
        "0003_preferences",
        """
        -- Preference pairs for DPO: for a call's input, the preferred and the non-preferred
        -- assistant message.
        CREATE TABLE preferences (
            call_id VARCHAR NOT NULL,        -- calls.id: the input both answers reply to
            preferred JSON NOT NULL,
            non_preferred JSON NOT NULL,
            note VARCHAR,
            created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );
        -- One OpenAI preference fine-tuning (DPO) record per pair, in `example`.
        CREATE VIEW preference_pairs AS
            SELECT c.id AS call_id, c.dataset, c.started_at, p.created_at, p.note,
                   c.messages, c.tools, p.preferred, p.non_preferred,
                   json_object(
                       'input', CASE WHEN c.tools IS NULL
                                     THEN json_object('messages', c.messages)
                                     ELSE json_object('messages', c.messages, 'tools', c.tools)
                                END,
                       'preferred_output', json_array(p.preferred),
                       'non_preferred_output', json_array(p.non_preferred)
                   ) AS example
            FROM preferences p JOIN calls c ON c.id = p.call_id;
        """,
    ),
    (
        "0004_snapshots",
        """
        -- Every export, content-addressed: the file's SHA-256, and which calls went in, in order.
        CREATE TABLE snapshots (
            id VARCHAR PRIMARY KEY,          -- SHA-256 of the exported file
            dataset VARCHAR NOT NULL,
            format VARCHAR NOT NULL,         -- openai_chat | openai_dpo | parquet | csv
            examples BIGINT NOT NULL,
            path VARCHAR,                    -- where it was written (first time)
            created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );
        CREATE TABLE snapshot_calls (
            snapshot_id VARCHAR NOT NULL,    -- snapshots.id
            position BIGINT NOT NULL,        -- the example's line (or row), from 0
            call_id VARCHAR NOT NULL,        -- calls.id
            PRIMARY KEY (snapshot_id, position)
        );
        """
        + _CHAT_MESSAGE_MACRO,
    ),
    (
        "0005_prompts",
        """
        -- Calls whose messages were rendered from a Prompt say which prompt, version and values.
        CREATE OR REPLACE VIEW calls AS
            SELECT *,
                   openai_messages(input_messages, system_instructions) AS messages,
                   openai_completion(output_messages) AS completion,
                   openai_tools(tool_definitions) AS tools,
                   attributes->>'finetuner.prompt.name' AS prompt_name,
                   attributes->>'finetuner.prompt.version' AS prompt_version,
                   CAST(attributes->>'finetuner.prompt.variables' AS JSON) AS prompt_variables
            FROM recorded_calls;
        """,
    ),
    (
        "0006_finetune",
        """
        -- Training files uploaded to a fine-tuning provider, and the export (snapshot) in each.
        CREATE TABLE finetune_uploads (
            provider VARCHAR NOT NULL,       -- openai, together, local, or a server's host
            file_id VARCHAR NOT NULL,        -- the provider's id of the file
            dataset VARCHAR,
            snapshot_id VARCHAR,             -- snapshots.id: the file's SHA-256
            format VARCHAR,                  -- openai_chat | openai_dpo
            examples BIGINT,
            uploaded_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (provider, file_id)
        );
        -- Every fine-tuning job started or followed, as last seen.
        CREATE TABLE finetune_jobs (
            provider VARCHAR NOT NULL,
            job_id VARCHAR NOT NULL,
            base_model VARCHAR,
            method VARCHAR,                  -- supervised | dpo
            training_file VARCHAR,           -- finetune_uploads.file_id
            validation_file VARCHAR,
            hyperparameters JSON,
            suffix VARCHAR,
            -- queued | running | succeeded | failed | cancelled; provider_status is the
            -- provider's own word (validating_files, compressing, ...)
            status VARCHAR,
            provider_status VARCHAR,
            fine_tuned_model VARCHAR,
            error VARCHAR,
            trained_tokens BIGINT,
            created_at TIMESTAMPTZ,
            finished_at TIMESTAMPTZ,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (provider, job_id)
        );
        -- Each status a job was seen in, when first seen.
        CREATE TABLE finetune_job_history (
            provider VARCHAR NOT NULL,
            job_id VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            provider_status VARCHAR NOT NULL,
            observed_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );
        -- What trained on what: each job with the dataset and snapshots of its files.
        CREATE VIEW finetune_lineage AS
            SELECT j.provider, j.job_id, j.base_model, j.method, j.status, j.fine_tuned_model,
                   t.dataset, t.snapshot_id AS training_snapshot, t.examples AS training_examples,
                   v.snapshot_id AS validation_snapshot, v.examples AS validation_examples,
                   j.hyperparameters, j.created_at, j.finished_at
            FROM finetune_jobs j
            LEFT JOIN finetune_uploads t
                ON t.provider = j.provider AND t.file_id = j.training_file
            LEFT JOIN finetune_uploads v
                ON v.provider = j.provider AND v.file_id = j.validation_file;
        """,
    ),
    (
        "0007_evals",
        """
        -- Every eval run, and each example's row in it. Scores are in [0, 1]; accuracy is their
        -- mean over the scored examples (errors are counted apart).
        CREATE TABLE eval_runs (
            id VARCHAR PRIMARY KEY,
            eval VARCHAR NOT NULL,           -- the Eval's name (its class, by default)
            model VARCHAR NOT NULL,
            dataset VARCHAR,
            params JSON,                     -- temperature, ...
            examples BIGINT NOT NULL,
            scored BIGINT NOT NULL,
            errors BIGINT NOT NULL,          -- calls or comparisons that failed
            accuracy DOUBLE,
            ci_low DOUBLE,                   -- Wilson 95% interval of the accuracy
            ci_high DOUBLE,
            calls BIGINT,                    -- model calls made (retries included)
            retries BIGINT,
            cached BIGINT,                   -- answers taken from eval_cache
            started_at TIMESTAMPTZ NOT NULL,
            finished_at TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE eval_results (
            run_id VARCHAR NOT NULL,         -- eval_runs.id
            position BIGINT NOT NULL,
            call_id VARCHAR,                 -- calls.id of the example
            messages JSON,                   -- the input the model was given
            target JSON,
            prediction JSON,
            score DOUBLE,                    -- null when status is error
            reason VARCHAR,
            status VARCHAR NOT NULL,         -- ok | error
            error VARCHAR,
            cached BOOLEAN,
            latency_ms DOUBLE,
            PRIMARY KEY (run_id, position)
        );
        -- Answers by model, messages and parameters, so a run calls only what changed.
        CREATE TABLE eval_cache (
            key VARCHAR PRIMARY KEY,         -- SHA-256 of [model, messages, parameters]
            model VARCHAR NOT NULL,
            answer JSON NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );
        """,
    ),
    (
        "0008_sources_and_rationale",
        """
        -- Where a call came from (captured | import | synthetic), and a chain-of-thought
        -- completion's reasoning and final answer, apart.
        CREATE OR REPLACE VIEW calls AS
            SELECT *,
                   CASE WHEN attributes->>'finetuner.source' IS NOT NULL
                        THEN attributes->>'finetuner.source'
                        WHEN scope_name = 'finetuner_otel.import' THEN 'import'
                        ELSE 'captured' END AS source,
                   nullif(trim(regexp_extract(completion->>'content',
                       '^\\s*<reasoning>(.*?)</reasoning>\\s*<answer>(.*?)</answer>\\s*$', 1, 's'),
                       ' ' || chr(9) || chr(10) || chr(13)), '') AS rationale,
                   CASE WHEN regexp_matches(completion->>'content',
                       '^\\s*<reasoning>(.*?)</reasoning>\\s*<answer>(.*?)</answer>\\s*$', 's')
                        THEN trim(regexp_extract(completion->>'content',
                            '^\\s*<reasoning>(.*?)</reasoning>\\s*<answer>(.*?)</answer>\\s*$',
                            2, 's'), ' ' || chr(9) || chr(10) || chr(13))
                        ELSE completion->>'content' END AS answer
            FROM (
                SELECT *,
                       openai_messages(input_messages, system_instructions) AS messages,
                       openai_completion(output_messages) AS completion,
                       openai_tools(tool_definitions) AS tools,
                       attributes->>'finetuner.prompt.name' AS prompt_name,
                       attributes->>'finetuner.prompt.version' AS prompt_version,
                       CAST(attributes->>'finetuner.prompt.variables' AS JSON) AS prompt_variables
                FROM recorded_calls
            );
        """,
    ),
]
