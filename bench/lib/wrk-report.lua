-- wrk `done` hook: print one machine-readable line with the summary, latency
-- percentiles and wrk's own CPU time (utime+stime of the whole wrk process,
-- all threads, read from /proc/self/stat at the end of the run).
done = function(summary, latency, requests)
  local ut, st = -1, -1
  local f = io.open("/proc/self/stat", "r")
  if f then
    local text = f:read("*a")
    f:close()
    local rest = text:match("^.*%) (.*)$")
    if rest then
      local fields = {}
      for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
      ut, st = tonumber(fields[12]) or -1, tonumber(fields[13]) or -1
    end
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%.0f,"bytes":%.0f,"durationUs":%.0f,' ..
    '"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f,' ..
    '"p50Us":%.0f,"p99Us":%.0f,"maxUs":%.0f,"meanUs":%.3f,"utimeTicks":%.0f,"stimeTicks":%.0f}\n',
    summary.requests, summary.bytes, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, latency.mean, ut, st))
end
