-- The gateway's edge checks, run on every request after CORS and before the
-- transcoder. Rendered by identity.gateway (string.Template: $allowed_origins is a
-- Lua table constructor of validated origins). Refusals are local replies with an
-- empty body: local_reply_config writes the google.rpc.Status JSON.

local allowed_origins = $allowed_origins

-- What the server accepts as a request id (identity.api.interceptor): anything else
-- is replaced here, so the gateway, the server's logs and the answer agree.
local function well_formed_id(id)
  return id ~= nil and #id <= 64 and string.find(id, "^[A-Za-z0-9._-]+$") ~= nil
end

local function fresh_id()
  local source = io.open("/dev/urandom", "rb")
  if source == nil then
    return nil
  end
  local bytes = source:read(16)
  source:close()
  return (string.gsub(bytes, ".", function(c) return string.format("%02x", string.byte(c)) end))
end

-- A browser names the page's origin. Allowed: a configured origin, or the gateway's
-- own (a same-origin page). Requests without Origin (curl, peers) are not browsers
-- on another site and pass.
local function origin_allowed(headers)
  local origin = headers:get("origin")
  if origin == nil then
    return true
  end
  origin = string.lower(origin)
  if allowed_origins[origin] then
    return true
  end
  local authority = string.lower(headers:get(":authority") or "")
  return authority ~= "" and (origin == "http://" .. authority or origin == "https://" .. authority)
end

-- A body must be JSON (or native gRPC): a cross-site "simple request" can only send
-- text/plain, form or multipart bodies, so refusing them means no page elsewhere
-- can make the gateway act without a CORS preflight.
local function body_type_allowed(headers)
  local method = headers:get(":method")
  if method ~= "POST" and method ~= "PUT" and method ~= "PATCH" then
    return true
  end
  local kind = string.lower(headers:get("content-type") or "")
  kind = string.match(kind, "^%s*([^;%s]+)") or ""
  return kind == "application/json" or string.find(kind, "^application/grpc") ~= nil
end

-- Marks native gRPC calls for local_reply_config (identity.gateway_replies), which
-- otherwise cannot tell them from transcoded ones; a client's own copy is dropped.
local function mark_native_grpc(headers)
  local kind = string.lower(headers:get("content-type") or "")
  if string.find(kind, "^application/grpc") ~= nil then
    headers:replace("$native_grpc_header", "1")
  else
    headers:remove("$native_grpc_header")
  end
end

function envoy_on_request(request)
  local headers = request:headers()
  mark_native_grpc(headers)
  if not well_formed_id(headers:get("x-request-id")) then
    local id = fresh_id()
    if id ~= nil then
      headers:replace("x-request-id", id)
    else
      headers:remove("x-request-id")
    end
  end
  if not origin_allowed(headers) then
    request:respond({[":status"] = "403"}, "")
  elseif not body_type_allowed(headers) then
    request:respond({[":status"] = "415"}, "")
  end
end
