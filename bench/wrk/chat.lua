-- wrk script: POST an OpenAI chat completion, print a JSON summary in done().
--
--   wrk -t1 -c64 -d10s --latency -s bench/wrk/chat.lua http://HOST:PORT/v1/chat/completions -- MODEL [stream|chat] [KEY]
--
-- Arguments after "--": the model name (default "bench"), "stream" for a streamed
-- request, and the bearer key (default "sk-bench"). done() prints one line starting with "BENCH_JSON " that bench/overhead.py
-- reads: requests, duration, errors and latency percentiles, all in microseconds.

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function init(args)
  local model = args[1] or "bench"
  local stream = args[2] == "stream"
  wrk.headers["Authorization"] = "Bearer " .. (args[3] or "sk-bench")
  wrk.body = '{"model":"' .. model .. '","messages":[{"role":"user","content":"Say hello."}],'
    .. '"max_tokens":32' .. (stream and ',"stream":true' or '') .. '}'
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
