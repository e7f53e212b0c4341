-- candidates.lua: which candidate reserve.lua takes. Prepended to reserve.lua (after
-- common.lua); the same choice, with the same numbers, as proxy/store/ledger/choose.py.
--
-- A candidate is four ARGVs: amounts 'USD=…,TOKENS=…'; condition 'always' | 'never' |
-- 'not_fit' | 'remaining_below:<line, 0-based>:<amount>'; fit '-' or
-- '<prompt_units>,<prompt_tokens>,<output_per_million>,<choices>,<floor>,<ceiling>'; name
-- (the degrade rule, for the audit; may be empty).
--
-- Doubles hold integers exactly below 2^53, so no product here may reach it: every division
-- is idiv() on integers with x + d <= 2^53, and the per-million long division multiplies
-- remainders below 2^43 by 1000 (checks.py keeps output_per_million * choices below 2^43).

local MAX_SPARE = 4503599627370495 -- 2^52 - 1: a larger remaining counts as this much

-- floor(x / d) for integers x >= 0, d >= 1, x + d <= 2^53. Exact: with x = k*d + r, the
-- rounded quotient could only reach k + 1 if (d - r) / d <= ulp(k + 1) / 2 < (k + 1) / 2^53,
-- i.e. if d * (k + 1) = x - r + d > 2^53.
local function idiv(x, d)
  return math.floor(x / d)
end

-- min(cap, floor(x * 10^6 / d)) for 0 <= x < 2^52, 1 <= d < 2^43: long division in base 10^3.
local function per_million_floor(x, d, cap)
  local a = idiv(x, d)
  if a > idiv(cap, 1000000) then return cap end
  local b = x - a * d
  local q1 = idiv(b * 1000, d)
  local q2 = idiv((b * 1000 - q1 * d) * 1000, d)
  return math.min(cap, a * 1000000 + q1 * 1000 + q2)
end

-- ceil(n * p / 10^6) when the result is below 2^52: with n = na*10^6 + nb and
-- p = pa*10^6 + pb it is n*pa + na*pb + ceil(nb*pb / 10^6), each term exact.
local function per_million_ceil(n, p)
  local na, pa = idiv(n, 1000000), idiv(p, 1000000)
  local nb, pb = n - na * 1000000, p - pa * 1000000
  return n * pa + na * pb + idiv(nb * pb + 999999, 1000000)
end

local function parse_candidate(amounts, condition, fit, name)
  local kind, line, below = string.match(condition, '^([%a_]+):?(%d*):?(%d*)$')
  local c = { text = amounts, name = name, amounts = parse_amounts(amounts), kind = kind,
              line = tonumber(line), below = tonumber(below) }
  if fit ~= '-' then
    local v = {}
    for x in string.gmatch(fit, '%d+') do v[#v + 1] = tonumber(x) end
    c.fit = { prompt_units = v[1], prompt_tokens = v[2], opm = v[3], choices = v[4],
              floor = v[5], ceiling = v[6] }
  end
  return c
end

-- Index (1-based) of the first line these amounts do not fit, or nil.
local function misfit(amounts, lines)
  for i, l in ipairs(lines) do
    if (amounts[l.unit] or 0) > l.remaining then return i end
  end
  return nil
end

local function holds(c, lines, asked_fits)
  if c.kind == 'remaining_below' then return lines[c.line + 1].remaining < c.below end
  if c.kind == 'not_fit' then return not asked_fits end
  return c.kind == 'always'
end

-- Completion tokens per choice that still fit one line (-1: not even the prompt does); nil for
-- a unit a fit does not compute.
local function line_tokens(f, unit, remaining)
  if unit == 'USD' then
    local spare = remaining - f.prompt_units
    if spare < 0 then return -1 end
    if f.opm == 0 then return f.ceiling end
    return per_million_floor(math.min(spare, MAX_SPARE), f.opm * f.choices, f.ceiling)
  elseif unit == 'TOKENS' then
    local spare = remaining - f.prompt_tokens
    if spare < 0 then return -1 end
    return math.min(f.ceiling, idiv(math.min(spare, MAX_SPARE), f.choices))
  end
  return nil
end

local function fit_amounts(amounts, f, t)
  local out = {}
  for unit, x in pairs(amounts) do out[unit] = x end
  local generated = t * f.choices
  if out.USD then out.USD = f.prompt_units + per_million_ceil(generated, f.opm) end
  if out.TOKENS then out.TOKENS = f.prompt_tokens + generated end
  return out
end

-- amounts, fitted tokens (fit only), first line missed (1-based, nil when it fits).
local function attempt(c, lines)
  local f = c.fit
  if not f then return c.amounts, nil, misfit(c.amounts, lines) end
  local t, miss = f.ceiling, nil
  for i, l in ipairs(lines) do
    local tokens = line_tokens(f, l.unit, l.remaining)
    if not tokens then
      tokens = ((c.amounts[l.unit] or 0) <= l.remaining) and f.ceiling or -1
    end
    if tokens < f.floor and not miss then miss = i end
    t = math.min(t, tokens)
  end
  if miss then return {}, t, miss end
  return fit_amounts(c.amounts, f, t), t, nil
end

-- Returns the chosen index (0-based, nil when none), its amounts, fitted tokens, and
-- denied_by (0-based line, or nil): see proxy/store/ledger/choose.py.
local function choose(cands, lines)
  local asked = cands[1]
  local asked_miss = misfit(asked.amounts, lines)
  local held_any, held_miss = false, nil
  local function denied()
    local miss = held_miss
    if asked.kind ~= 'never' and asked_miss then miss = asked_miss end
    return miss and (miss - 1)
  end
  for i = 2, #cands do
    local c = cands[i]
    if holds(c, lines, asked_miss == nil) then
      local amounts, fitted, miss = attempt(c, lines)
      if not held_any then held_any, held_miss = true, miss end
      if not miss then return i - 1, amounts, fitted, denied() end
    end
  end
  if not held_any and asked.kind ~= 'never' and not asked_miss then
    return 0, asked.amounts, nil, denied()
  end
  return nil, nil, nil, denied()
end
