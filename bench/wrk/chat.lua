-- wrk script: POST a chat request in one client dialect, print a JSON summary in done().
--
--   wrk -t1 -c64 -d10s --latency -s bench/wrk/chat.lua http://HOST:PORT/v1/chat/completions -- MODEL [stream|chat] [KEY] [DIALECT]
--
-- Arguments after "--": the model name (default "bench"), "stream" for a streamed
-- request, the bearer key (default "sk-bench"), and the dialect of the body (default
-- "chat"; the URL names the matching route, see bench/dialects.py):
--   chat             OpenAI Chat Completions       /v1/chat/completions
--   responses        Responses API, store: false   /v1/responses
--   responses+store  Responses API, store: true    /v1/responses
--   messages         Anthropic Messages            /v1/messages
--   ollama           Ollama chat (NDJSON stream)   /api/chat
-- done() prints one line starting with "BENCH_JSON " that bench/overhead.py and
-- bench/dialects.py read: requests, duration, errors and latency percentiles, all in
-- microseconds ("status" counts the non-2xx answers).

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local MESSAGES = '"messages":[{"role":"user","content":"Say hello."}]'

local function body(dialect, model, stream)
  local head = '{"model":"' .. model .. '",'
  local streamed = stream and ',"stream":true' or ''
  if dialect == "chat" then
    return head .. MESSAGES .. ',"max_tokens":32' .. streamed .. '}'
  elseif dialect == "responses" or dialect == "responses+store" then
    local store = dialect == "responses" and 'false' or 'true'
    return head .. '"input":"Say hello.","max_output_tokens":32,"store":' .. store
      .. streamed .. '}'
  elseif dialect == "messages" then
    return head .. MESSAGES .. ',"max_tokens":32' .. streamed .. '}'
  elseif dialect == "ollama" then
    -- Ollama streams unless told not to.
    return head .. MESSAGES .. ',"options":{"num_predict":32},"stream":'
      .. (stream and 'true' or 'false') .. '}'
  end
  error("unknown dialect: " .. tostring(dialect))
end

function init(args)
  wrk.headers["Authorization"] = "Bearer " .. (args[3] or "sk-bench")
  wrk.body = body(args[4] or "chat", args[1] or "bench", args[2] == "stream")
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"mean_us":%.1f,"stdev_us":%.1f,"min_us":%d,"max_us":%d,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.min, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9)))
end
