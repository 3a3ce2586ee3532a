-- The store's views and macros: current code, not migrations.
--
-- finetuner_otel/store/_schema.py applies this whole file with CREATE OR REPLACE whenever its
-- SHA-256 differs from the one the store records (table finetuner_views), in the transaction
-- that runs any pending migration; the migrations hold the tables only. So each object is
-- written out once, and a fix here reaches every store, however old, the first time this
-- version opens it (a Store opened with read_only=True says it needs it instead). Drop an object
-- that leaves this file with a DROP ... IF EXISTS line here.
--
-- The OpenAI chat fine-tuning format is derived from the recorded GenAI semantic-convention
-- content by these macros, in SQL, when it is read: the store keeps one copy of every message
-- (half the bytes to write at ingest), the derivation runs in DuckDB rather than in the user's
-- process, and a fix to it applies to every call already stored. Users can call them in their
-- own SQL.

CREATE OR REPLACE MACRO openai_text(v) AS
    CASE WHEN json_type(v) = 'VARCHAR' THEN (v->>'$') ELSE CAST(v AS VARCHAR) END;

CREATE OR REPLACE MACRO openai_content_part(p) AS CASE
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

CREATE OR REPLACE MACRO openai_tool_call(p) AS CASE
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

CREATE OR REPLACE MACRO openai_tool_response(r) AS CASE
    WHEN json_type(r) = 'VARCHAR' THEN r
    WHEN json_type(r) = 'ARRAY' AND coalesce(list_bool_and(
            [coalesce((p->>'type') = 'text', false)
             FOR p IN CAST(json_extract(r, '$[*]') AS JSON[])]), true)
        THEN to_json([json_object('type', 'text', 'text', coalesce(p->>'content', ''))
                      FOR p IN CAST(json_extract(r, '$[*]') AS JSON[])])
    ELSE to_json(openai_text(r))
END;

CREATE OR REPLACE MACRO openai_parts(m) AS coalesce(CAST(json_extract(m, '$.parts[*]') AS JSON[]), []);

CREATE OR REPLACE MACRO openai_content(m) AS list_filter(
    [openai_content_part(p) FOR p IN openai_parts(m)
     IF coalesce(p->>'type', '') NOT IN ('tool_call', 'refusal', 'reasoning')],
    lambda x: x IS NOT NULL);

CREATE OR REPLACE MACRO openai_tool_calls(m) AS
    [openai_tool_call(p) FOR p IN openai_parts(m) IF (p->>'type') = 'tool_call'];

-- One chat message (not a tool message): content is a string for a single text part, a list of
-- parts otherwise, null for an assistant message with nothing, and left out beside tool calls;
-- a training weight (0 or 1 on assistant turns, e.g. from an import) is kept.
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

-- One semconv message as OpenAI messages: a tool message may carry several results.
CREATE OR REPLACE MACRO openai_message(m) AS CASE
    WHEN (m->>'role') = 'tool' THEN
        [json_object('role', 'tool', 'tool_call_id', (p->'id'),
                     'content', openai_tool_response(p->'response'))
         FOR p IN openai_parts(m) IF (p->>'type') = 'tool_call_response']
    ELSE [openai_chat_message(m)]
END;

CREATE OR REPLACE MACRO openai_system_message(instructions) AS CASE
    WHEN json_array_length(instructions) > 0 THEN json_object(
        'role', 'system',
        'content', array_to_string(
            [coalesce(p->>'content', '')
             FOR p IN CAST(json_extract(instructions, '$[*]') AS JSON[])
             IF json_type(p) = 'OBJECT'],
            chr(10) || chr(10)))
END;

-- The request as OpenAI messages: system instructions first, then the history.
CREATE OR REPLACE MACRO openai_messages(input_messages, system_instructions) AS CASE
    WHEN json_type(input_messages) = 'ARRAY' THEN to_json(list_concat(
        list_filter([openai_system_message(system_instructions)], lambda x: x IS NOT NULL),
        flatten([openai_message(m)
                 FOR m IN CAST(json_extract(input_messages, '$[*]') AS JSON[])
                 IF json_type(m) = 'OBJECT'])))
END;

-- The training target: the first choice (with n > 1 every choice stays in output_messages).
CREATE OR REPLACE MACRO openai_completion(output_messages) AS CASE
    WHEN json_type(output_messages->0) = 'OBJECT' THEN openai_message(json_merge_patch(
        (output_messages->0),
        json_object('role', coalesce(output_messages->0->>'role', 'assistant'))))[1]
END;

CREATE OR REPLACE MACRO openai_tools(definitions) AS CASE
    WHEN json_array_length(definitions) > 0 THEN to_json([
        CASE WHEN (d->'name') IS NOT NULL
             THEN json_object('type', coalesce(nullif(d->>'type', ''), 'function'),
                              coalesce(nullif(d->>'type', ''), 'function'),
                              json_merge_patch(d, '{"type": null}'))
             ELSE d END
        FOR d IN CAST(json_extract(definitions, '$[*]') AS JSON[]) IF json_type(d) = 'OBJECT'])
END;

-- Chain-of-thought mode (finetuner_otel/_cot.py): a completion's text split into its reasoning
-- and its final answer; (NULL, the text) for text in any other format. The pattern is
-- _cot.PATTERN, put in here when the file is applied, so Python and SQL split alike.
CREATE OR REPLACE MACRO cot_pattern() AS @COT_PATTERN@;

CREATE OR REPLACE MACRO cot_trim(text) AS trim(text, ' ' || chr(9) || chr(10) || chr(13));

CREATE OR REPLACE MACRO cot_split(text) AS CASE
    WHEN regexp_matches(text, cot_pattern()) THEN struct_pack(
        rationale := nullif(cot_trim(regexp_extract(text, cot_pattern(), 1)), ''),
        answer := cot_trim(regexp_extract(text, cot_pattern(), 2)))
    ELSE struct_pack(rationale := CAST(NULL AS VARCHAR), answer := text)
END;

-- Every call, with the same content in OpenAI's chat fine-tuning format (an example is
-- {"messages": messages + [completion], "tools": tools}), the prompt it was rendered from, where
-- it came from (captured | import | synthetic), and a chain-of-thought completion's reasoning
-- and final answer, apart.
CREATE OR REPLACE VIEW calls AS
    SELECT * EXCLUDE (cot), cot.rationale AS rationale, cot.answer AS answer
    FROM (
        SELECT *,
               CASE WHEN attributes->>'finetuner.source' IS NOT NULL
                    THEN attributes->>'finetuner.source'
                    WHEN scope_name = 'finetuner_otel.import' THEN 'import'
                    ELSE 'captured' END AS source,
               cot_split(completion->>'content') AS cot
        FROM (
            SELECT *,
                   openai_messages(input_messages, system_instructions) AS messages,
                   openai_completion(output_messages) AS completion,
                   openai_tools(tool_definitions) AS tools,
                   attributes->>'finetuner.prompt.name' AS prompt_name,
                   attributes->>'finetuner.prompt.version' AS prompt_version,
                   CAST(attributes->>'finetuner.prompt.variables' AS JSON) AS prompt_variables
            FROM recorded_calls
        )
    );

-- What people said about each call: the latest verdict and the latest correction count.
CREATE OR REPLACE VIEW call_feedback AS
    SELECT call_id,
           arg_max(kind, created_at) FILTER (WHERE kind <> 'correct') AS verdict,
           arg_max(completion, created_at) FILTER (WHERE kind = 'correct') AS correction
    FROM feedback GROUP BY call_id;

-- A call is a training example when it is trainable, or was corrected (and succeeded), and was
-- not rejected; a correction is its training target.
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

-- One OpenAI preference fine-tuning (DPO) record per pair, in `example`.
CREATE OR REPLACE VIEW preference_pairs AS
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

-- What trained on what: each job with the dataset and snapshots of its files.
CREATE OR REPLACE VIEW finetune_lineage AS
    SELECT j.provider, j.job_id, j.base_model, j.method, j.status, j.fine_tuned_model,
           t.dataset, t.snapshot_id AS training_snapshot, t.examples AS training_examples,
           v.snapshot_id AS validation_snapshot, v.examples AS validation_examples,
           j.hyperparameters, j.created_at, j.finished_at
    FROM finetune_jobs j
    LEFT JOIN finetune_uploads t
        ON t.provider = j.provider AND t.file_id = j.training_file
    LEFT JOIN finetune_uploads v
        ON v.provider = j.provider AND v.file_id = j.validation_file;
