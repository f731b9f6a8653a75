-- Argo CD health check for edgetenant.io/InferenceTenant (resource.customizations.health).
-- Argo CD runs it in gopher-lua (Lua 5.1): no goto, no integer division. It reads the status as kstatus
-- (Flux) does: observedGeneration first, then Stalled (unschedulable, invalid spec, planning error, a
-- model that cannot be fetched: nothing changes until the spec or the cluster does), Ready, Reconciling.
local health = {}

local function condition(obj, kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function say(status, message)
  health.status = status
  health.message = message
  return health
end

if obj.spec ~= nil and obj.spec.replicas == 0 then
  return say("Suspended", "Scaled to zero replicas (spec.replicas: 0)")
end
if obj.status == nil then
  return say("Progressing", "Waiting for the edgetenant operator to see this tenant")
end
local generation = obj.metadata.generation or 0
if obj.status.observedGeneration == nil or obj.status.observedGeneration < generation then
  return say("Progressing", "Waiting for the operator to observe generation " .. generation)
end

local stalled = condition(obj, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  return say("Degraded", (stalled.reason or "Stalled") .. ": " .. (stalled.message or ""))
end
local ready = condition(obj, "Ready")
if ready ~= nil and ready.status == "True" then
  return say("Healthy", ready.message or "Ready")
end
local reconciling = condition(obj, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  return say("Progressing", (reconciling.reason or "Reconciling") .. ": " .. (reconciling.message or ""))
end
if ready ~= nil then
  return say("Progressing", (ready.reason or "NotReady") .. ": " .. (ready.message or ""))
end
return say("Progressing", "Waiting for the Ready condition")
