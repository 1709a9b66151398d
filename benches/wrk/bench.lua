-- wrk script of the benchmark harness (see benches/README.md). One script,
-- several modes, chosen by the first script argument:
--
--   wrk -t T -c C -d MAXs -s bench.lua URL -- MODE MARKERS THREADS SECONDS [MODE ARGS]
--
--   health                          GET /health
--   single  PREFIX SERVERS          POST /api/v1/servers/PREFIXnnnn/samples, random server
--   load    PREFIX SERVERS AT       GET /api/v1/servers/PREFIXnnnn/load?at=AT, random server
--   files   DIR COUNT               POST /api/v1/samples with the bodies DIR/00000.json ..
--                                   DIR/(COUNT-1).json, each exactly once; thread k of T
--                                   sends files k, k+T, k+2T, ...
--
-- Each thread works until SECONDS have passed since start-up (in files mode:
-- until its files are all answered, or SECONDS passed). Then it stops
-- sending work; in the POST modes it first waits for the answers to all the
-- work it sent, so that every sample sent is accounted for, and any
-- connection that would otherwise send more work sends a `GET /health`
-- filler (stores nothing, not counted) meanwhile. A thread that is done
-- creates MARKERS.<id>; the thread that finds all THREADS markers present
-- sends SIGINT to wrk, which then ends at once (wrk itself would sleep for
-- its whole -d), so -d is only an upper bound.
--
-- Rates are computed here, not from wrk's own runtime: from the first work
-- request any thread sent to the last work answer any thread received, on
-- CLOCK_MONOTONIC. done() prints one line `BENCH_RESULT {json}` with the
-- counts per status, the rate window and wrk's latency percentiles.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
unsigned long pthread_self(void);
int getpid(void);
int kill(int pid, int sig);
]]

local CLOCK_MONOTONIC = 1
local SIGINT = 2
local ts = ffi.new("bench_timespec")

local function now()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
    return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

-- ------------------------------------------------------------ main state

local threads = {}

function setup(thread)
    thread:set("id", #threads)
    table.insert(threads, thread)
end

-- ------------------------------------------------------------ per thread

-- Set by init().
local mode, markers, nthreads, deadline, init_thread
local make_work, work_left
local filler

-- Results, read by done() through thread:get().
sent = 0          -- work requests sent
answered = 0      -- answers to work requests
statuses = {}     -- status -> count, work answers only
fillers = 0       -- filler answers
first_sent = -1   -- CLOCK_MONOTONIC of the first work request
last_answer = -1  -- CLOCK_MONOTONIC of the last work answer
finished = false

local draining = false

function init(argv)
    -- wrk puts the URL at argv[0] and the arguments after `--` from argv[1].
    local args = {}
    local first = (argv[0] and argv[0]:find("://", 1, true)) and 1 or 0
    for i = first, #argv do table.insert(args, argv[i]) end
    mode = args[1]
    markers = args[2]
    nthreads = tonumber(args[3])
    deadline = now() + tonumber(args[4])
    init_thread = ffi.C.pthread_self()
    filler = wrk.format("GET", "/health")
    math.randomseed(7919 * (id + 1))

    if mode == "health" then
        make_work = function() return filler end
    elseif mode == "single" then
        local prefix, servers = args[5], tonumber(args[6])
        local headers = { ["Content-Type"] = "application/json" }
        make_work = function()
            local path = string.format("/api/v1/servers/%s%04d/samples",
                prefix, math.random(0, servers - 1))
            local body = string.format('{"cpu":%.2f,"ram":%.2f}',
                math.random(0, 10000) / 100, math.random(0, 10000) / 100)
            return wrk.format("POST", path, headers, body)
        end
    elseif mode == "load" then
        local prefix, servers, at = args[5], tonumber(args[6]), args[7]
        make_work = function()
            return wrk.format("GET", string.format("/api/v1/servers/%s%04d/load?at=%s",
                prefix, math.random(0, servers - 1), at))
        end
    elseif mode == "files" then
        local dir, count = args[5], tonumber(args[6])
        local headers = { ["Content-Type"] = "application/json" }
        local next_file = id
        work_left = function() return next_file < count end
        make_work = function()
            local path = string.format("%s/%05d.json", dir, next_file)
            local file = assert(io.open(path, "rb"))
            local body = file:read("*a")
            file:close()
            next_file = next_file + nthreads
            return wrk.format("POST", "/api/v1/samples", headers, body)
        end
    else
        error("unknown mode " .. tostring(mode))
    end
    if not work_left then
        work_left = function() return true end
    end
end

local function finish()
    if finished then return end
    finished = true
    wrk.thread:stop()
    local mine = io.open(markers .. "." .. id, "w")
    if mine then mine:close() end
    for other = 0, nthreads - 1 do
        local marker = io.open(markers .. "." .. other, "r")
        if not marker then return end
        marker:close()
    end
    ffi.C.kill(ffi.C.getpid(), SIGINT)
end

function request()
    -- wrk calls request() once on the start-up thread for thread 0, only to
    -- check the request parses; that one is never sent.
    if init_thread == nil or ffi.C.pthread_self() == init_thread then
        return wrk.format("GET", "/health")
    end
    if draining or not work_left() or now() >= deadline then
        draining = true
        return filler
    end
    local t = now()
    if first_sent < 0 then first_sent = t end
    sent = sent + 1
    return make_work()
end

local function is_filler(body)
    -- Only fillers are answered with {"status": ...}; the POST modes' work is
    -- answered 204 without a body or with {"error": ...}.
    return draining and body:find('"status"', 1, true) ~= nil
end

function response(status, headers, body)
    if mode ~= "health" and mode ~= "load" and is_filler(body) then
        fillers = fillers + 1
    else
        answered = answered + 1
        last_answer = now()
        local key = tostring(status)
        statuses[key] = (statuses[key] or 0) + 1
    end
    if mode == "load" or mode == "health" then
        -- Reads: answers still in flight at the deadline do not matter.
        if now() >= deadline then finish() end
    elseif (draining or not work_left() or now() >= deadline) and answered >= sent then
        finish()
    end
end

-- ------------------------------------------------------------ main state

local function json(value)
    local kind = type(value)
    if kind == "table" and #value > 0 then
        local parts = {}
        for i = 1, #value do
            table.insert(parts, json(value[i]))
        end
        return "[" .. table.concat(parts, ",") .. "]"
    elseif kind == "table" then
        local parts = {}
        for k, v in pairs(value) do
            table.insert(parts, string.format("%q:%s", tostring(k), json(v)))
        end
        return "{" .. table.concat(parts, ",") .. "}"
    elseif kind == "number" then
        return string.format("%.17g", value)
    elseif kind == "boolean" then
        return tostring(value)
    elseif kind == "nil" then
        return "null"
    end
    return string.format("%q", tostring(value))
end

function done(summary, latency, requests)
    local total = {
        sent = 0, answered = 0, fillers = 0, statuses = {},
        threads = #threads, threads_finished = 0,
    }
    local first, last = nil, nil
    total.per_thread = {}
    for _, thread in ipairs(threads) do
        table.insert(total.per_thread, { id = thread:get("id"), sent = thread:get("sent"),
            answered = thread:get("answered") })
        total.sent = total.sent + thread:get("sent")
        total.answered = total.answered + thread:get("answered")
        total.fillers = total.fillers + thread:get("fillers")
        if thread:get("finished") then
            total.threads_finished = total.threads_finished + 1
        end
        for status, count in pairs(thread:get("statuses")) do
            total.statuses[status] = (total.statuses[status] or 0) + count
        end
        local f, l = thread:get("first_sent"), thread:get("last_answer")
        if f >= 0 and (first == nil or f < first) then first = f end
        if l >= 0 and (last == nil or l > last) then last = l end
    end
    total.window_s = (first and last and last > first) and (last - first) or 0
    total.wrk_duration_s = summary.duration / 1e6
    total.wrk_requests = summary.requests
    total.socket_errors = {
        connect = summary.errors.connect, read = summary.errors.read,
        write = summary.errors.write, timeout = summary.errors.timeout,
    }
    total.latency_us = {
        mean = latency.mean, max = latency.max,
        p50 = latency:percentile(50), p90 = latency:percentile(90),
        p99 = latency:percentile(99), p999 = latency:percentile(99.9),
    }
    io.write("BENCH_RESULT ", json(total), "\n")
end
