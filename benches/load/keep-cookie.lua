-- wrk script for S1s: keep the sticky cookie the proxy last set and send it on every
-- request, as a browser does (tether re-issues AWSALB on every response; HAProxy,
-- nginx and Caddy set theirs once). One wrk thread: the cookie is shared by its
-- connections, all pinned alike once the first response has set it.
local cookie = nil

request = function()
  if cookie then
    return wrk.format(nil, nil, { ["Cookie"] = cookie })
  end
  return wrk.format()
end

response = function(status, headers, body)
  local set = headers["Set-Cookie"] or headers["set-cookie"]
  if set then
    cookie = set:match("^([^;]+)")
  end
end
