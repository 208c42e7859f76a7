-- The mixed Proxy load of bench/load, for wrk. Arguments (after wrk's `--`): the fixture written by
-- `harden-bench seed`, this run's index (0-based) and the number of runs.
--
-- The mix, per request drawn at random, as a random user of the fixture:
--   70.0%  GET  /v1/kv/kv-N                      read and decrypt one of the user's values
--   20.0%  PUT  /v1/kv/kv-N                      encrypt and write a new version of one
--    2.5%  POST /v1/kv/sh-N/shares               share a record with another user (a new pair)
--    2.5%  GET  /v1/kv/shared/{shareId}           a recipient reads a value shared with them
--    5.0%  GET  /v1/kv?limit=100                 list the user's keys
--
-- A share creation needs a (record, recipient) pair never shared before (a second open share of
-- one record to one recipient is a 409); the fixture lists such pairs, and each wrk thread of each
-- run takes its own slice of them. Should a slice run out, the request is a read instead, counted
-- as `slotsExhausted` (bench/load then fails: seed more with LOAD_SHARE_SLOTS).
--
-- Every answer that is not a 2xx is counted by status in response(); done() prints one JSON line
-- with wrk's figures and those counts.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local fx, run, runs, slot, slot_stride

function init(args)
  fx = dofile(args[1])
  run = tonumber(args[2]) or 0
  runs = tonumber(args[3]) or 1
  nthreads = tonumber(args[4]) or 1
  -- Slots i (1-based) with (i - 1) % (runs * threads) == run * threads + id belong to this thread.
  slot_stride = runs * nthreads
  slot = run * nthreads + id + 1
  math.randomseed(os.time() + 7919 * id + 104729 * run)
  statuses = {}
  samples = {}
  ops = { get = 0, put = 0, share = 0, shared = 0, list = 0 }
  exhausted = 0
end

local function user_headers(user)
  return { ["X-Api-Key"] = user.key, ["X-User-Secret"] = user.secret }
end

local function get_value(user)
  ops.get = ops.get + 1
  return wrk.format("GET", "/v1/kv/kv-" .. math.random(0, fx.keys - 1), user_headers(user))
end

function request()
  local user = fx.users[math.random(#fx.users)]
  local r = math.random(1000)
  if r <= 700 then
    return get_value(user)
  elseif r <= 900 then
    ops.put = ops.put + 1
    local headers = user_headers(user)
    headers["Content-Type"] = "application/json"
    return wrk.format("PUT", "/v1/kv/kv-" .. math.random(0, fx.keys - 1), headers,
      '{"valueB64":"' .. fx.value .. '"}')
  elseif r <= 925 then
    local pair = fx.slots[slot]
    if pair == nil then
      exhausted = exhausted + 1
      return get_value(user)
    end
    slot = slot + slot_stride
    ops.share = ops.share + 1
    local owner = fx.users[pair.owner]
    local headers = user_headers(owner)
    headers["Content-Type"] = "application/json"
    return wrk.format("POST", "/v1/kv/" .. pair.record .. "/shares", headers,
      '{"recipientUserId":"' .. pair.recipient .. '","permission":"read","alias":"' .. pair.record .. '"}')
  elseif r <= 950 then
    ops.shared = ops.shared + 1
    local s = fx.shared[math.random(#fx.shared)]
    return wrk.format("GET", "/v1/kv/shared/" .. s.share, user_headers(fx.users[s.user]))
  else
    ops.list = ops.list + 1
    return wrk.format("GET", "/v1/kv?limit=100", { ["X-Api-Key"] = user.key })
  end
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    statuses[tostring(status)] = (statuses[tostring(status)] or 0) + 1
    if #samples < 5 then
      table.insert(samples, tostring(status) .. " " .. string.sub(body or "", 1, 200))
    end
  end
end

local function json_string(s)
  return '"' .. string.gsub(s, '[%c"\\]', function(c) return string.format("\\u%04x", string.byte(c)) end) .. '"'
end

function done(summary, latency, requests)
  local non2xx, by_status, all_samples, exhausted_total = 0, {}, {}, 0
  local all_ops = { get = 0, put = 0, share = 0, shared = 0, list = 0 }
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      by_status[status] = (by_status[status] or 0) + n
      non2xx = non2xx + n
    end
    for _, s in ipairs(thread:get("samples")) do
      if #all_samples < 5 then table.insert(all_samples, s) end
    end
    for op, n in pairs(thread:get("ops")) do all_ops[op] = all_ops[op] + n end
    exhausted_total = exhausted_total + thread:get("exhausted")
  end
  local parts = {}
  for status, n in pairs(by_status) do table.insert(parts, json_string(status) .. ":" .. n) end
  local quoted = {}
  for _, s in ipairs(all_samples) do table.insert(quoted, json_string(s)) end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%.2f,"p99_ms":%.2f,"max_ms":%.2f,' ..
    '"non2xx":%d,"byStatus":{%s},"socketErrors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},' ..
    '"ops":{"get":%d,"put":%d,"share":%d,"shared":%d,"list":%d},"slotsExhausted":%d,"samples":[%s]}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    non2xx, table.concat(parts, ","), e.connect, e.read, e.write, e.timeout,
    all_ops.get, all_ops.put, all_ops.share, all_ops.shared, all_ops.list, exhausted_total,
    table.concat(quoted, ",")))
end
